"""The rehearsal runner on tiny Pulumi programs whose local.Command resources touch files.

Each test writes a throwaway project (Pulumi.yaml + stacks/Pulumi.<stack>.yaml) in tmp_path and
runs `rehearsal.up` / `rehearsal.down` on it with a program defined here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pytest
from pulumi_command import local

from tierkit.rehearsal import engine as rehearsal
from tierkit.rehearsal import sealed
from tierkit.rehearsal.record import record_path
from tierkit.errors import TierkitError

STACK = "t"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the record's key, outside the project
    (tmp_path / "Pulumi.yaml").write_text("name: demo\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / f"Pulumi.{STACK}.yaml").write_text(
        "config:\n"
        "  tierkit:tier: {tier: single-gpu}\n"
        "  greeting: hello\n"
        "  tierkit:apiKey:\n"
        "    secure: AAABAJ0xg==\n"
    )
    return tmp_path


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


def stamp(path: Path, name: str, seconds: float = 0.0) -> str:
    """A shell command that records its start and end times in PATH/NAME.start/.end."""
    return (
        f"python3 -c 'import time; print(time.time())' > {path}/{name}.start && sleep {seconds} && "
        f"python3 -c 'import time; print(time.time())' > {path}/{name}.end && echo {name}-out"
    )


def read_time(path: Path) -> float:
    return float(path.read_text())


class Pair(pulumi.ComponentResource):
    def __init__(self, name: str, work: Path, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("demo:test:Pair", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.a = local.Command("a", create=stamp(work, "a", 0.6), delete=f"rm -f {work}/a.start {work}/a.end", opts=child)
        self.b = local.Command("b", create=stamp(work, "b", 0.6), delete=f"rm -f {work}/b.start {work}/b.end", opts=child)
        self.register_outputs({})


def test_dependency_order_parallelism_and_components(project: Path) -> None:
    work = project / "work"
    work.mkdir()

    def program() -> None:
        pair = Pair("pair", work)
        c = local.Command(
            "c",
            create=pulumi.Output.concat(stamp(work, "c"), " && cat > ", str(work), "/c.stdin"),
            stdin=pulumi.Output.concat(pair.a.stdout, "+", pair.b.stdout),
            delete=f"rm -f {work}/c.start {work}/c.end {work}/c.stdin",
            opts=pulumi.ResourceOptions(parent=pair),
        )
        pulumi.export("c", c.stdout)
        pulumi.export("greeting", pulumi.Config().get("greeting"))

    log = Lines()
    result = rehearsal.up(program, project, STACK, {}, log)
    a0, a1 = read_time(work / "a.start"), read_time(work / "a.end")
    b0, b1 = read_time(work / "b.start"), read_time(work / "b.end")
    c0 = read_time(work / "c.start")
    assert b0 < a1 and a0 < b1, "independent commands a and b should overlap"
    assert c0 >= max(a1, b1), "c depends on a and b (through stdin) and must start after both"
    assert (work / "c.stdin").read_text() == "a-out+b-out"
    assert result.exports["c"].value == "c-out"
    assert result.exports["greeting"].value == "hello"  # project-namespaced plain config
    assert any(line.startswith("plan: 3 commands") for line in log.lines)

    record = json.loads(record_path(project, STACK).read_text())
    assert "Not a Pulumi state" in record["about"]
    by_name = {c["name"]: c for c in record["commands"]}
    assert set(by_name) == {"a", "b", "c"}
    assert set(by_name["c"]["dependencies"]) == {by_name["a"]["urn"], by_name["b"]["urn"]}
    assert "Pair$command:local:Command::a" in by_name["a"]["urn"]  # a child of the component

    down = rehearsal.down(project, STACK, log)
    assert down.deleted.index("c") < min(down.deleted.index("a"), down.deleted.index("b"))
    assert not any(work.iterdir()), "every delete ran"
    assert not (project / ".tierkit").exists(), "down leaves no record and no stack directory"


def test_refuses_cloud_resources_before_running_anything(project: Path) -> None:
    marker = project / "ran"

    def program() -> None:
        local.Command("prep", create=f"touch {marker}")
        aws.ec2.Instance("gpu", ami="ami-123", instance_type="g6e.xlarge")

    with pytest.raises(TierkitError) as info:
        rehearsal.up(program, project, STACK, {}, Lines())
    assert info.value.problems == [
        "resource aws:ec2/instance:Instance needs the Pulumi CLI; rehearsal runs lab and baremetal stacks"
    ]
    assert not marker.exists()
    assert not record_path(project, STACK).exists()


def test_failed_command_stops_dependents_and_down_undoes_the_rest(project: Path) -> None:
    work = project / "work"
    work.mkdir()

    def program() -> None:
        ok = local.Command("ok", create=f"sleep 0.3 && touch {work}/ok", delete=f"rm {work}/ok")
        bad = local.Command("bad", create="echo 'gate failed: 3 tok/s < 10' >&2; exit 1", delete="true")
        local.Command("after", create=f"touch {work}/after", opts=pulumi.ResourceOptions(depends_on=[bad, ok]))

    with pytest.raises(TierkitError) as info:
        rehearsal.up(program, project, STACK, {}, Lines())
    assert info.value.exit_code == 1
    assert info.value.problems == ["bad: command failed with exit 1"]
    assert (work / "ok").exists(), "the independent command finished"
    assert not (work / "after").exists(), "the dependent command never ran"
    recorded = [c["name"] for c in json.loads(record_path(project, STACK).read_text())["commands"]]
    assert recorded == ["ok"]
    rehearsal.down(project, STACK, Lines())
    assert not (work / "ok").exists()


def test_secrets_reach_the_command_but_not_the_record_or_the_log(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_KEY", "s3cret-value")
    out = project / "seen"

    def program() -> None:
        key = pulumi.Config("tierkit").require_secret("apiKey")
        cmd = local.Command(
            "uses-key",
            create=f"printf %s \"$API_KEY\" > {out} && echo \"key=$API_KEY\"",
            environment={"API_KEY": key, "PLAIN": "visible"},
            logging=local.Logging.STDERR,
            opts=pulumi.ResourceOptions(additional_secret_outputs=["stdout"]),
        )
        pulumi.export("stdout", cmd.stdout)
        pulumi.export("env", cmd.environment)

    log = Lines()
    result = rehearsal.up(program, project, STACK, {"tierkit:apiKey": "DEMO_KEY"}, log)
    assert out.read_text() == "s3cret-value"
    assert result.exports["stdout"].secret and result.exports["env"].secret
    assert not any("s3cret" in line for line in log.lines), "logging=stderr keeps stdout out of the log"
    assert "tierkit:apiKey: `secure:` value skipped" in " ".join(log.lines)
    assert "tierkit:apiKey: from $DEMO_KEY, as a secret" in " ".join(log.lines)
    text = record_path(project, STACK).read_text()
    assert "s3cret" not in text
    entry = json.loads(text)["commands"][0]
    assert entry["environment"] == {} or "API_KEY" not in entry["environment"]
    assert "API_KEY" in entry["secret_environment"]
    assert entry["stdout"].startswith("fernet:"), "a secret output is kept encrypted"
    assert sealed.open_text(entry["stdout"]) == "key=s3cret-value"
    assert sealed.key_path() == project / "state" / "tierkit" / "rehearsal.key"
    assert os.stat(sealed.key_path()).st_mode & 0o077 == 0
    assert os.stat(record_path(project, STACK)).st_mode & 0o077 == 0


def test_program_errors_register_nothing(project: Path) -> None:
    def program() -> None:
        raise TierkitError("tierkit:tier.gpu.count: single-gpu means exactly 1 GPU per server, got 2; use tier multi-gpu")

    with pytest.raises(TierkitError) as info:
        rehearsal.up(program, project, STACK, {}, Lines())
    assert info.value.problems[0].startswith("tierkit:tier.gpu.count:")
    assert not (project / ".tierkit").exists()


def test_delete_sees_the_previous_stdout(project: Path) -> None:
    seen = project / "seen"

    def program() -> None:
        local.Command("emit", create="echo hosts-json", delete=f"printf %s \"$PULUMI_COMMAND_STDOUT\" > {seen}")

    rehearsal.up(program, project, STACK, {}, Lines())
    rehearsal.down(project, STACK, Lines())
    assert seen.read_text() == "hosts-json"


def test_down_without_a_record_does_nothing(project: Path) -> None:
    log = Lines()
    assert rehearsal.down(project, STACK, log).deleted == []
    assert "nothing to delete" in log.lines[0]


def test_second_up_leaves_unchanged_commands_alone(project: Path) -> None:
    count = project / "count"

    def program() -> None:
        tick = local.Command("tick", create=f"echo x >> {count} && echo ticked", delete=f"rm -f {count}")
        pulumi.export("out", tick.stdout)

    for _ in range(2):
        result = rehearsal.up(program, project, STACK, {}, Lines())
        assert result.exports["out"].value == "ticked", "the recorded output answers for the command"
    assert count.read_text() == "x\n", "ran once: its inputs did not change"
    assert result.unchanged == ["tick"] and result.ran == []
    assert len(json.loads(record_path(project, STACK).read_text())["commands"]) == 1


def replacing(project: Path, *, delete_before_replace: bool) -> tuple[Path, Lines]:
    """Two ups of a command whose files live at a fixed path; the second changes its trigger."""
    report = project / "run" / "report"

    def program(generation: str) -> None:
        local.Command("report", create=f"mkdir -p {report.parent} && echo {generation} > {report}",
                      delete=f"rm -rf {report.parent}", triggers=[generation],
                      opts=pulumi.ResourceOptions(delete_before_replace=delete_before_replace))

    rehearsal.up(lambda: program("1"), project, STACK, {}, Lines())
    log = Lines()
    rehearsal.up(lambda: program("2"), project, STACK, {}, log)
    return report, log


def test_replacement_creates_then_deletes_the_old_one(project: Path) -> None:
    """Pulumi's default order, which is why fleet's commands ask for delete-before-replace: the
    old delete runs after the new create, and at a shared path it eats the new run's files."""
    report, log = replacing(project, delete_before_replace=False)
    assert not report.exists()
    assert [line for line in log.lines if line.startswith(("+ report", "- report"))] == [
        "+ report: running", "- report: replaced; deleting the old one", "- report: deleting"]


def test_delete_before_replace_keeps_the_new_run_files(project: Path) -> None:
    report, log = replacing(project, delete_before_replace=True)
    assert report.read_text() == "2\n"
    assert [line for line in log.lines if line.startswith(("+ report", "- report"))] == [
        "- report: inputs changed; deleting the old one before creating (delete_before_replace)",
        "- report: deleting", "+ report: running"]


def test_a_command_the_program_drops_is_deleted(project: Path) -> None:
    gone = project / "gone"

    def program(both: bool) -> None:
        local.Command("keep", create="true")
        if both:
            local.Command("drop", create=f"touch {gone}", delete=f"rm -f {gone}")

    rehearsal.up(lambda: program(True), project, STACK, {}, Lines())
    assert gone.exists()
    rehearsal.up(lambda: program(False), project, STACK, {}, Lines())
    assert not gone.exists()
    assert [c["name"] for c in json.loads(record_path(project, STACK).read_text())["commands"]] == ["keep"]


def test_secret_outputs_without_their_key_stop_the_up(project: Path) -> None:
    """As Pulumi without the stack's passphrase: nothing runs again to re-trust what was sealed."""
    count = project / "count"

    def program() -> None:
        local.Command("pins", create=f"echo x >> {count} && echo pinned-keys",
                      opts=pulumi.ResourceOptions(additional_secret_outputs=["stdout"]))

    rehearsal.up(program, project, STACK, {}, Lines())
    sealed.key_path().unlink()
    with pytest.raises(TierkitError) as info:
        rehearsal.up(program, project, STACK, {}, Lines())
    assert count.read_text() == "x\n"
    assert info.value.exit_code == 1 and info.value.problems == [
        f"pins: its recorded secret outputs do not open with {sealed.key_path()} (not the key that sealed them); put "
        f"that key there (or point $XDG_STATE_HOME at it), as Pulumi needs the stack's passphrase"]


def test_refresh_runs_unchanged_commands_again_in_place(project: Path) -> None:
    """--refresh: the record's outputs do not answer; each create runs again, nothing is deleted."""
    count = project / "count"

    def program() -> None:
        local.Command("tick", create=f"echo x >> {count} && echo ticked", delete=f"rm -f {count}",
                      opts=pulumi.ResourceOptions(delete_before_replace=True))

    rehearsal.up(program, project, STACK, {}, Lines())
    log = Lines()
    result = rehearsal.up(program, project, STACK, {}, log, refresh=True)
    assert count.read_text() == "x\nx\n", "ran again, and its delete never ran"
    assert [name for name, _ in result.ran] == ["tick"] and result.unchanged == []
    assert "+ tick: unchanged; --refresh runs it again (it checks the servers and repairs drift)" in log.lines


def test_a_record_without_inputs_hashes_runs_again_in_place(project: Path) -> None:
    """A record from before the hashes: its commands run again, none is deleted as a replacement."""
    count = project / "count"

    def program() -> None:
        local.Command("tick", create=f"echo x >> {count}", delete=f"rm -f {count}")

    rehearsal.up(program, project, STACK, {}, Lines())
    path = record_path(project, STACK)
    doc = json.loads(path.read_text())
    for entry in doc["commands"]:
        entry.pop("inputs_hash")
    path.write_text(json.dumps(doc))
    rehearsal.up(program, project, STACK, {}, Lines())
    assert count.read_text() == "x\nx\n", "ran again, and the old one's delete never ran"
    assert json.loads(path.read_text())["commands"][0]["inputs_hash"], "hashed from now on"
