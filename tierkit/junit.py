"""JUnit XML, the test-report format that Jenkins, GitLab and GitHub's test reporters read.

A `Suite` holds `Case`s; `write(path, suites)` writes one `<testsuites>` document with the
standard library's ElementTree. The element and attribute names follow the schema Jenkins'
JUnit plugin reads (docs/ci.md "JUnit XML"): `testsuite` carries `name`, `tests`, `failures`,
`errors`, `skipped`, `time` and `timestamp`; a `testcase` carries `name`, `classname` and `time`
and at most one `failure` (a verdict that went the wrong way) or `error` (the step could not run),
whose `message` is one line and whose text holds the detail.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree as ET

Outcome = Literal["passed", "failure", "error", "skipped"]


@dataclass(frozen=True)
class Case:
    """One test case: a gate of the smoke test, or a step of `tierkit up`."""

    name: str
    classname: str
    time_s: float = 0.0
    outcome: Outcome = "passed"
    message: str = ""  # one line: the failure's reason (measured vs required, or the step's error)
    detail: str = ""  # the failure's body: figures, a log's path
    output: str = ""  # system-out: what the case measured, pass or fail


@dataclass
class Suite:
    """A suite of cases; its time is the run's wall time when given, else the sum of its cases'."""

    name: str
    cases: list[Case] = field(default_factory=list)
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    wall_s: float | None = None
    output: str = ""  # the suite's system-out: what holds for the whole run

    def count(self, outcome: Outcome) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)

    @property
    def time_s(self) -> float:
        return self.wall_s if self.wall_s is not None else sum(c.time_s for c in self.cases)


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _case_element(case: Case) -> ET.Element:
    element = ET.Element("testcase", name=case.name, classname=case.classname, time=_seconds(case.time_s))
    if case.outcome in ("failure", "error"):
        verdict = ET.SubElement(element, case.outcome, message=case.message, type=case.outcome)
        verdict.text = case.detail or case.message
    elif case.outcome == "skipped":
        ET.SubElement(element, "skipped", message=case.message)
    if case.output:
        ET.SubElement(element, "system-out").text = case.output
    return element


def document(suites: list[Suite]) -> ET.ElementTree:
    """The `<testsuites>` document for these suites."""
    root = ET.Element("testsuites", name="tierkit")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for suite in suites:
        counts = {"tests": len(suite.cases), "failures": suite.count("failure"), "errors": suite.count("error"),
                  "skipped": suite.count("skipped")}
        element = ET.SubElement(
            root, "testsuite", name=suite.name, **{k: str(v) for k, v in counts.items()},
            time=_seconds(suite.time_s), timestamp=suite.timestamp.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        element.extend(_case_element(c) for c in suite.cases)
        if suite.output:
            ET.SubElement(element, "system-out").text = suite.output
        for key, value in counts.items():
            totals[key] += value
        total_time += suite.time_s
    # The Jenkins schema gives <testsuites> no `skipped` attribute: it is counted per suite only.
    root.attrib.update({k: str(v) for k, v in totals.items() if k != "skipped"} | {"time": _seconds(total_time)})
    ET.indent(root)
    return ET.ElementTree(root)


def write(path: Path, suites: list[Suite]) -> None:
    """Write the document to `path` atomically (a reader never sees half a report)."""
    tree = document(suites)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            tree.write(out, encoding="utf-8", xml_declaration=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
