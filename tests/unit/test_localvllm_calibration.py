"""The lab's calibrated smoke floor, against the in-test OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smoke_fake_server import FakeServer
from tierkit.errors import TierkitError
from tierkit.localvllm.calibration import PROBE_REQUESTS, calibrate, floor
from tierkit.spec import plan_for_spec
from tierkit.smoke.gates import PLAN_FRACTION
from tierkit.spec import TierSpec, parse_spec

ROOT = Path(__file__).resolve().parents[2]


def lab_spec(stack: str, served: str) -> TierSpec:
    data = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]["tierkit:tier"]
    data["serving"]["served_model_name"] = served
    return parse_spec(data)


def test_floor_is_the_plan_rule_with_a_measured_single_stream(fake: FakeServer) -> None:
    spec = lab_spec("single-gpu", "slow")  # 200 ms to first token, 20 ms per token
    c = calibrate(fake.url, spec, None)
    per_request_s = 0.2 + 0.02 * spec.smoke.output_len
    assert c.single_stream_tok_s == pytest.approx(spec.smoke.output_len / per_request_s, rel=0.25)
    assert c.min_output_tok_s == pytest.approx(PLAN_FRACTION * c.single_stream_tok_s, rel=0.01)
    assert c.replicas == 1 and c.probe_requests == PROBE_REQUESTS and fake.seen.peak == 1  # one at a time
    assert c.plan_expected_tok_s == plan_for_spec(spec).expected_tok_s
    assert "These figures come from a CPU rehearsal" in c.statement
    assert f"{c.min_output_tok_s:.1f} tok/s" in c.statement and "not the gate here" in c.statement


def test_failover_counts_both_replicas() -> None:
    assert floor(100.0, 2) == pytest.approx(2 * PLAN_FRACTION * 100.0)
    assert lab_spec("failover", "ok").server_count == 2 and lab_spec("failover", "ok").replicas == 2


def test_a_split_model_is_one_replica() -> None:
    spec = lab_spec("multi-server", "ok")
    assert spec.server_count == 2 and spec.replicas == 1


@pytest.mark.parametrize("scenario", ["http-500", "empty-text"])
def test_a_broken_endpoint_fails_the_probe(fake: FakeServer, scenario: str) -> None:
    with pytest.raises(TierkitError) as info:
        calibrate(fake.url, lab_spec("single-gpu", scenario), None)
    assert info.value.exit_code == 1
    assert info.value.problems[0].startswith(f"calibrate: the probe of {fake.url} failed (")
