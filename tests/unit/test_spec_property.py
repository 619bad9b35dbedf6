"""Property: whatever spec `validate` is given, it answers `ok:` (exit 0) or `error:` lines only
(exit 2), never a traceback, within a time and memory bound.

Hypothesis starts from valid specs of each tier and provider and replaces, deletes or adds
fields with values drawn from hostile leaves (huge and negative numbers, nan and inf, bools,
control characters, option-like and shell-like text, nested lists and mappings), or corrupts
the file's bytes.
"""

from __future__ import annotations

import copy
import tracemalloc
from pathlib import Path
from typing import Any

import yaml
from hostile_support import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAX_EXAMPLES = 100
MAX_SECONDS = 3.0  # per validate, on a busy 2-core machine (typical: 0.05 s)
MAX_PEAK_BYTES = 64 << 20  # Python allocations of one validate
TRACE_EVERY = 10  # tracemalloc slows every allocation several times over: measure a sample

TEMPLATES: list[dict[str, Any]] = [
    {"tier": "single-gpu", "provider": {"kind": "lab", "name": "t"}, "gpu": {"model": "rtx-pro-6000", "count": 1},
     "model": {"key": "llama-3.1-8b", "quantization": "bf16"}, "serving": {"port": 8000, "extra_args": ["--enable-prefix-caching"]},
     "smoke": {"concurrency": 8, "requests": 64, "min_output_tok_s": "derive"}},
    {"tier": "multi-gpu", "provider": {"kind": "lab", "name": "m", "topology": "nvlink", "faults": []},
     "gpu": {"model": "h100-sxm", "count": 4, "interconnect": "nvlink"}, "model": {"key": "tiny-llama", "max_context": 512},
     "serving": {"tensor_parallel": 4, "pipeline_parallel": 1, "served_model_name": "tiny"}},
    {"tier": "failover", "provider": {"kind": "lab", "name": "ha", "subnet": "10.77.40.0/24"},
     "gpu": {"model": "rtx-pro-6000", "count": 1}, "model": {"key": "tiny-llama"},
     "failover": {"virtual_ip": "10.77.40.100", "router_id": 51, "advert_int": 1}},
    {"tier": "failover", "provider": {"kind": "baremetal", "hosts": [
        {"name": "a", "address": "192.0.2.10", "user": "ubuntu", "port": 22, "key_path": "/etc/hostname"},
        {"name": "b", "address": "192.0.2.11", "user": "ubuntu", "port": 22, "key_path": "/etc/hostname"}]},
     "gpu": {"model": "l40s", "count": 1}, "model": {"key": "llama-3.1-8b", "quantization": "fp8"},
     "failover": {"virtual_ip": "192.0.2.100"}},
    {"tier": "single-gpu", "provider": {"kind": "lab", "name": "c"}, "gpu": {"model": "l40s", "count": 1},
     "model": {"params_b": 7.0, "layers": 32, "attention_heads": 32, "kv_heads": 8, "head_dim": 128, "path": "/srv/m"}},
]

WORDS = ["single-gpu", "multi-gpu", "failover", "lab", "baremetal", "aws", "rtx-pro-6000", "h100-sxm", "tiny-llama",
         "llama-3.1-8b", "10.77.40.100", "10.77.40.0/24", "10.77.40.0/30", "derive", "--port", "--api-key=x", "-tp",
         "-oProxyCommand=x", "root; id", "$(id)", "%n", "a\nb", "awq", "nvlink", "999.1.1.1", "::1", "", " ", "\x00",
         "\u202e", "é" * 3, "x" * 300, "~/.ssh/id", "/dev/zero", "inactive-link=0:1", "api_key", "secure"]
KEYS = ["tier", "provider", "gpu", "model", "serving", "smoke", "failover", "servers", "users", "kind", "name", "hosts",
        "address", "user", "port", "key_path", "count", "key", "path", "hf_id", "extra_args", "virtual_ip", "subnet",
        "topology", "faults", "api_key", "token", "<<"]

leaves = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-2, max_value=70_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=40),
    st.sampled_from(WORDS),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into `node` (mapping keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths(v, (*prefix, i))
    return found


def apply(spec: dict[str, Any], path: tuple[Any, ...], action: str, value: Any, key: str) -> None:
    parent = spec
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent[last], dict):
        parent[last][key] = value
    else:
        parent[last] = value


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec = copy.deepcopy(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(min_value=0, max_value=4))):  # 0: a valid template as it is
        candidates = paths(spec)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        apply(spec, path, draw(st.sampled_from(["replace", "delete", "add"])), draw(values), draw(st.sampled_from(KEYS)))
    return spec


@st.composite
def files(draw: st.DrawFn) -> bytes:
    text = yaml.safe_dump({"config": {"tierkit:tier": draw(specs())}}, allow_unicode=True).encode()
    if draw(st.integers(min_value=0, max_value=4)) == 0:  # now and then, corrupt the bytes
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
    return text


def check(content: bytes, f: Path, trace: bool) -> int:
    """Validate `content` as a stack file; assert the property; return the exit code."""
    f.write_bytes(content)
    peak = 0
    if trace:
        tracemalloc.start()
    try:
        outcome = run_cli("validate", "--file", str(f))
        if trace:
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.rc in (0, 2), (outcome.rc, outcome.stderr[-3000:])
    assert "Traceback" not in outcome.stdout + outcome.stderr
    if outcome.rc == 0:
        assert outcome.stdout.startswith("ok: ") and not outcome.stderr
    else:
        lines = outcome.errors
        assert lines and all(line.startswith("error: ") and len(line) <= 400 for line in lines), lines
    assert outcome.seconds < MAX_SECONDS, outcome.seconds
    assert peak < MAX_PEAK_BYTES, peak
    return outcome.rc


def test_validate_answers_ok_or_error_lines(tmp_path: Path) -> None:
    seen: list[int] = []

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(content=files())
    def prop(content: bytes) -> None:
        seen.append(check(content, tmp_path / "Pulumi.prop.yaml", trace=len(seen) % TRACE_EVERY == 0))

    prop()
    assert len(seen) >= MAX_EXAMPLES  # the count the closing note reports
    assert {0, 2} <= set(seen), sorted(set(seen))  # the generator reaches both answers
