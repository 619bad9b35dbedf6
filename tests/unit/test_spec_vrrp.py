"""failover.advert_int: VRRPv3's interval, seconds in whole centiseconds (RFC 5798's 12-bit field),
in step with the failover role's default."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tierkit.spec import ADVERT_INT_DEFAULT_S, FailoverSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("given", "read"), [(0.25, 0.25), (0.2, 0.2), (1, 1.0), (0.01, 0.01), (40.95, 40.95), (0.1 + 0.2, 0.3)])
def test_whole_centiseconds_are_accepted(given: float, read: float) -> None:
    assert FailoverSpec(virtual_ip="10.77.40.100", advert_int=given).advert_int == read


@pytest.mark.parametrize(("given", "why"), [
    (0.123, "whole number of centiseconds"), (0, "greater than or equal to 0.01"), (41, "less than or equal to 40.95"),
    (True, "valid number"), ("0.25", "valid number"), (float("nan"), "finite"),
])
def test_other_intervals_are_refused(given: object, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        FailoverSpec(virtual_ip="10.77.40.100", advert_int=given)


def test_the_default_is_the_roles() -> None:
    defaults = yaml.safe_load((ROOT / "roles/failover/defaults/main.yml").read_text())
    assert FailoverSpec(virtual_ip="10.77.40.100").advert_int == ADVERT_INT_DEFAULT_S == defaults["failover_advert_int"]
