"""`tierkit up --stack failover` end to end on the lab (the rehearsal), as a platform team's CI
runs it: the deploy's JUnit report (one case per step, per play, per verification gate, per
smoke gate), then `tierkit status` as a cron job runs it: it names the VIP holder and exits 0;
with the other host cut off the switch it still answers within 15 s, and exits 1 naming the host."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import xmlschema

from up_support import ROOT, Up, deployed, lab_name, tierkit

pytestmark = pytest.mark.lab

STACK = "failover"
ENV = {"TIERKIT_API_KEY": "tk-e2e-fo-81b2"}
STATUS_BOUND_S = 15.0


@pytest.fixture(scope="module")
def junit_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports") / "up.xml"


@pytest.fixture(scope="module")
def first(junit_file: Path) -> Iterator[Up]:
    yield from deployed(STACK, ENV, "--junit", str(junit_file))


def status() -> tuple[int, dict, float]:
    started = time.monotonic()
    proc = tierkit("status", "--stack", STACK, "--json", env={"OPENAI_API_KEY": ENV["TIERKIT_API_KEY"]}, timeout=60)
    return proc.returncode, json.loads(proc.stdout or "{}"), time.monotonic() - started


def test_up_passes_and_reports_every_step_as_junit(first: Up, junit_file: Path) -> None:
    assert first.proc.returncode == 0, first.log[-3000:]
    xmlschema.XMLSchema(ROOT / "tests/support/junit.xsd").validate(junit_file)
    root = ET.parse(junit_file).getroot()
    assert root.attrib["failures"] == "0" and root.attrib["errors"] == "0"
    suites = {s.attrib["name"]: [c.attrib["name"] for c in s.iter("testcase")] for s in root.iter("testsuite")}
    steps = suites[f"tierkit up {STACK}: steps"]
    assert steps[:3] == ["servers", "readiness", "configure"] and steps[-1] == "smoke"
    assert any(name.startswith("play: ") for name in suites[f"tierkit up {STACK}: configure"])
    assert any(name.startswith("gate: ") for name in suites[f"tierkit up {STACK}: configure"])
    assert {"output_throughput", "failed", "text"} <= set(suites[f"tierkit up {STACK}: smoke"])


def test_status_names_the_vip_holder(first: Up) -> None:
    assert first.proc.returncode == 0
    rc, report, seconds = status()
    assert rc == 0, report.get("problems")
    assert len(report["vip_holders"]) == 1
    assert all(h["vllm_version"] and h["models"] == ["tiny-llama"] for h in report["probe"]["hosts"])
    assert report["last_smoke"]["passed"] is True and report["runs"][-1]["ok"] is True
    print(f"status: {seconds:.1f} s, holder {report['vip_holders'][0]}")


def test_status_with_a_host_cut_answers_in_bound_and_fails(first: Up) -> None:
    assert first.proc.returncode == 0
    _, report, _ = status()
    other = next(h["name"] for h in report["probe"]["hosts"] if h["name"] not in report["vip_holders"])
    cut = tierkit("lab", "fault", other, "--cut-link", timeout=60)
    assert cut.returncode == 0, cut.stderr
    try:
        rc, report, seconds = status()
        assert rc == 1 and seconds < STATUS_BOUND_S, (rc, seconds)
        assert any(p.startswith(f"{other}: ") for p in report["problems"]), report["problems"]
        print(f"status with {other} cut: {seconds:.1f} s, exit {rc}")
    finally:
        assert tierkit("lab", "fault", other, "--restore", timeout=60).returncode == 0
    assert lab_name(STACK)
