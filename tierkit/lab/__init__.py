"""The lab: simulated GPU servers on this machine (`Lab`), and the caches its hosts use.

`from tierkit.lab import Lab` loads the lab machinery on first use, so importing a cache module
(tierkit.lab.cache, .wheelhouse, ...) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tierkit.lab.lab import Lab

__all__ = ["Lab"]


def __getattr__(name: str) -> Any:
    if name == "Lab":
        from tierkit.lab.lab import Lab

        return Lab
    raise AttributeError(f"module 'tierkit.lab' has no attribute {name!r}")
