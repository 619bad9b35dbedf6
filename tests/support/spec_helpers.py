"""Spec data for the tests that feed specs to tierkit (tests/unit, tests/cli): a valid base spec,
dotted-path changes to it, and a stack file's text."""

from __future__ import annotations

import yaml

BASE = {
    "tier": "single-gpu",
    "provider": {"kind": "lab", "name": "t"},
    "gpu": {"model": "rtx-pro-6000", "count": 1},
    "model": {"key": "llama-3.1-8b", "quantization": "bf16"},
}


def stack_text(spec: object, **config: object) -> str:
    return yaml.safe_dump({"config": {"tierkit:tier": spec, **config}}, sort_keys=False)


def changed(base: dict | None = None, **changes: object) -> dict:
    """`base` (default BASE) with `a__b=value` changes; a value of None deletes the key."""
    spec = yaml.safe_load(yaml.safe_dump(base or BASE))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = spec
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return spec
