"""tierkit/smoke/from_spec.py: the one mapping from a tier spec to smoke settings, and the one
default of each setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierkit.smoke import defaults
from tierkit.smoke.endpoint import parse_endpoint
from tierkit.smoke.from_spec import LOAD_FIELDS, gates_from_spec, smoke_settings
from tierkit.smoke.gates import Gates
from tierkit.smoke.run import SmokeSettings
from tierkit.spec import SmokeSpec, load_stack

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = parse_endpoint("http://127.0.0.1:8000")


def test_the_spec_and_the_runner_share_each_default():
    spec, runner = SmokeSpec(), SmokeSettings(endpoint=ENDPOINT)
    for field in LOAD_FIELDS:
        assert getattr(spec, field) == getattr(runner, field), field
    assert (spec.concurrency, spec.requests, spec.warmup) == (defaults.CONCURRENCY, defaults.REQUESTS, defaults.WARMUP)
    assert runner.timeout_s == defaults.TIMEOUT_S and spec.max_failed == Gates().max_failed == defaults.MAX_FAILED


def test_settings_come_from_the_spec():
    spec = load_stack("multi-gpu", ROOT)
    s = smoke_settings(spec, {"endpoint": ENDPOINT})
    assert {f: getattr(s, f) for f in LOAD_FIELDS} == {f: getattr(spec.smoke, f) for f in LOAD_FIELDS}
    assert s.model == spec.served_model_name
    assert s.gates == gates_from_spec(spec)


def test_flags_override_the_spec_and_say_so():
    spec = load_stack("single-gpu", ROOT)
    s = smoke_settings(spec, {"endpoint": ENDPOINT, "concurrency": 3, "min_output_tok_s": 5.0, "model": "m"})
    assert s.concurrency == 3 and s.model == "m" and s.gates.min_output_tok_s == 5.0
    assert s.gates.source.endswith("with command-line overrides")
    timed = smoke_settings(spec, {"endpoint": ENDPOINT, "duration_s": 2.0})
    assert timed.requests is None and timed.duration_s == 2.0


def test_given_gates_replace_the_specs():
    spec = load_stack("single-gpu", ROOT)
    probe = Gates(source="probe")
    assert smoke_settings(spec, {"endpoint": ENDPOINT, "concurrency": 1}, gates=probe).gates == probe


def test_without_a_spec_the_defaults_hold():
    s = smoke_settings(None, {"endpoint": ENDPOINT, "concurrency": None})
    assert s.concurrency == defaults.CONCURRENCY and s.requests == defaults.REQUESTS and s.gates == Gates()


def test_bad_values_raise_for_the_cli_to_name_the_flag():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        smoke_settings(None, {"endpoint": ENDPOINT, "concurrency": 0})
