"""tierkit/deploy_report.py: one up's steps, plays, gates and smoke gates as JUnit, and its line
in the history."""

from __future__ import annotations

import os
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import xmlschema

from tierkit import junit
from tierkit.ansible import GateOutcome, PlayOutcome, RunResult, TaskFailure
from tierkit.deploy_report import Step, history_run, read_fresh, suites

SCHEMA = xmlschema.XMLSchema(Path(__file__).resolve().parents[1] / "support" / "junit.xsd")
PLANNED = ["lab", "wait-ssh", "configure", "calibrate", "smoke"]
FAILED_GATE = TaskFailure(host="h1", task="Check the GPU topology matches the tier", message="GPU1-GPU3: PHB, need NVLink")


def configure_failed() -> RunResult:
    return RunResult(playbook="site.yml", log="/s/logs/site.log", rc=2, status="failed", elapsed_s=40.0,
                     failures=[FAILED_GATE],
                     plays=[PlayOutcome(name="Drivers", seconds=30.0), PlayOutcome(name="Topology", seconds=10.0, failures=[FAILED_GATE])],
                     gates=[GateOutcome(play="Drivers", task="Check the driver", host="h1", passed=True, message="All assertions passed"),
                            GateOutcome(play="Topology", task=FAILED_GATE.task, host="h1", passed=False, message=FAILED_GATE.message)])


def test_a_failed_configure_names_reason_and_log(tmp_path: Path) -> None:
    ran = [Step("lab", 20.0), Step("wait-ssh", 3.0), Step("configure", 41.0, "command failed with exit 1")]
    out = tmp_path / "up.xml"
    junit.write(out, suites("multi-gpu", ran, PLANNED, configure_failed(), None, "the output of tierkit up"))
    SCHEMA.validate(out)
    root = ET.parse(out).getroot()
    steps = {c.attrib["name"]: c for c in root.find("testsuite").iter("testcase")}  # type: ignore[union-attr]
    assert list(steps) == ["servers", "readiness", "configure", "calibrate", "smoke"]
    failure = steps["configure"].find("failure")
    assert failure is not None and failure.attrib["message"] == "configure: command failed with exit 1"
    assert "log: /s/logs/site.log" in (failure.text or "")
    assert steps["smoke"].find("skipped") is not None and steps["configure"].attrib["time"] == "41.000"
    gate = next(c for c in root.iter("testcase") if c.attrib["name"].startswith("gate: Check the GPU topology"))
    assert gate.find("failure").attrib["message"] == "GPU1-GPU3: PHB, need NVLink"  # type: ignore[union-attr]
    assert root.attrib["failures"] == "3"  # the step, its play, its gate


def test_smoke_gates_and_history() -> None:
    report = {"passed": False, "duration": 12.5, "output_throughput": 40.0, "p99_ttft_ms": 300.0,
              "gates": [{"name": "output_throughput", "measured": 40.0, "op": ">=", "required": 50.0, "unit": "tok/s",
                         "passed": False}],
              "plan_vs_measured": [{"name": "per_stream_decode", "unit": "tok/s", "predicted": 30.0, "measured": 27.0, "error_pct": -10.0,
                                    "source": "the plan"}]}
    ran = [Step("lab", 1.0), Step("wait-ssh", 1.0), Step("configure", 5.0), Step("smoke", 14.0, "command failed with exit 1")]
    (steps, smoke) = suites("s", ran, PLANNED[:3] + ["smoke"], None, report, "log")
    case = smoke.cases[0]
    assert case.outcome == "failure" and case.message == "output_throughput 40 tok/s, required >= 50 tok/s"
    assert "predicted 30.0 tok/s, measured 27.0 tok/s (-10.0%)" in smoke.output
    run = history_run("rehearsal", 21.0, ran, PLANNED, report, "smoke: command failed with exit 1")
    assert not run.ok and [s.name for s in run.steps] == ["servers", "readiness", "configure", "smoke"]
    assert run.smoke is not None and (run.smoke.predicted_stream_tok_s, run.smoke.error_pct) == (30.0, -10.0)


def test_reports_from_an_earlier_run_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "smoke.json"
    path.write_text('{"passed": true}')
    os.utime(path, (time.time() - 100, time.time() - 100))
    assert read_fresh(path, time.time() - 10) is None
    assert read_fresh(path, time.time() - 1000) == {"passed": True}


def test_steps_from_the_pulumi_engine_events() -> None:
    from tierkit.deploy_report import EngineEvents

    urn = "urn:pulumi:staging::tierkit::tierkit:fleet:Configure$command:local:Command::configure"
    meta = {"type": "command:local:Command", "urn": urn}
    events = EngineEvents()
    for event in (
        {"timestamp": 100, "resourcePreEvent": {"metadata": {**meta, "urn": urn.replace("configure", "wait-ssh")}}},
        {"timestamp": 104, "resOutputsEvent": {"metadata": {**meta, "urn": urn.replace("configure", "wait-ssh")}}},
        {"timestamp": 104, "resourcePreEvent": {"metadata": meta}},
        {"timestamp": 160, "diagnosticEvent": {"urn": urn, "severity": "error", "message": "exit status 1:\n vllm failed"}},
        {"timestamp": 161, "resOpFailedEvent": {"metadata": meta, "status": 1, "steps": 1}},
        {"timestamp": 1, "resourcePreEvent": {"metadata": {"type": "aws:ec2/instance:Instance", "urn": "x::i"}}},
    ):
        events(event)
    assert events.planned == ["wait-ssh", "configure"]
    assert events.ran == [Step("wait-ssh", 4.0), Step("configure", 57.0, "exit status 1: vllm failed")]
