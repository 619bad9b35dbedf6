"""tierkit/junit.py: the documents it writes are valid JUnit XML (checked against the schema in
tests/support/junit.xsd) and carry each case's verdict."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import xmlschema

from tierkit import junit

SCHEMA = xmlschema.XMLSchema(Path(__file__).resolve().parents[1] / "support" / "junit.xsd")


def test_counts_verdicts_and_validates(tmp_path: Path) -> None:
    suite = junit.Suite("deploy", [
        junit.Case("servers", "tierkit.up", 1.5),
        junit.Case("configure", "tierkit.up", 30.25, "failure", "vllm: task failed", "log: /x/logs/site.log"),
        junit.Case("smoke", "tierkit.up", 0.0, "skipped", "an earlier step failed"),
        junit.Case("ready", "tierkit.up", 2.0, "error", "no SSH <&> \"quoted\"", output="tried 3 times"),
    ], output="plan vs measured: ...")
    out = tmp_path / "r.xml"
    junit.write(out, [suite])
    SCHEMA.validate(out)
    root = ET.parse(out).getroot()
    assert {k: root.attrib[k] for k in ("tests", "failures", "errors", "time")} == {
        "tests": "4", "failures": "1", "errors": "1", "time": "33.750"}
    ts = root.find("testsuite")
    assert ts is not None and ts.attrib["skipped"] == "1"
    failure = root.find("testsuite/testcase[@name='configure']/failure")
    assert failure is not None and failure.attrib["message"] == "vllm: task failed"
    assert failure.text == "log: /x/logs/site.log"
    error = root.find("testsuite/testcase[@name='ready']/error")
    assert error is not None and error.attrib["message"] == 'no SSH <&> "quoted"'


def test_the_schema_rejects_what_is_not_junit(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites name="x" tests="1" failures="0" errors="0" time="1"><testsuite name="s"/></testsuites>')
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        SCHEMA.validate(bad)


def test_suite_time_is_the_wall_time_when_given() -> None:
    suite = junit.Suite("s", [junit.Case("a", "c", 1.0)], wall_s=7.0)
    assert junit.document([suite]).getroot().find("testsuite").attrib["time"] == "7.000"  # type: ignore[union-attr]


def test_write_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "r.xml"
    out.write_text("old")
    junit.write(out, [junit.Suite("s")])
    assert out.read_text().startswith("<?xml") and [p.name for p in tmp_path.iterdir()] == ["r.xml"]
