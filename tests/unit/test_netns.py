"""tierkit/netns.py: which network namespace a set of hosts needs."""

from __future__ import annotations

import pytest

from tierkit import netns
from tierkit.errors import TierkitError
from tierkit.hosts import Host


def test_hosts_in_different_namespaces_are_refused():
    a = Host(name="a", address="10.0.0.1", key_path="/k", netns="x")
    b = Host(name="b", address="10.0.0.2", key_path="/k", netns="y")
    assert netns.for_hosts([a]) == "x"
    assert netns.for_hosts([]) is None
    with pytest.raises(TierkitError, match="different network namespaces"):
        netns.for_hosts([a, b])
