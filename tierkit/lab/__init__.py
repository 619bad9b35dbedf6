"""The lab: simulated GPU servers on this machine (`Lab`): hosts, network, image, simulators.

`from tierkit.lab import Lab` loads the lab machinery on first use, so importing a small module
of the package (tierkit.lab.network, tierkit.lab.sim, ...) stays light. The vLLM runtime the
hosts serve is tierkit/localvllm/; the rest of tierkit reaches the lab through its provider,
tierkit/providers/lab.py.
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
