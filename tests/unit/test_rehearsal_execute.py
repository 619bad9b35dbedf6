"""Running one command as pulumi-command's local provider does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierkit.rehearsal.execute import CommandFailed, execute


def run(command: str, log: list[str], **kw: object) -> object:
    args: dict = {"interpreter": None, "directory": None, "environment": {}, "stdin": None,
                  "logging": "stdoutAndStderr", "log": log.append}
    args.update(kw)
    return execute("demo", command, **args)


def test_captures_both_streams_with_dir_env_and_stdin(tmp_path: Path) -> None:
    log: list[str] = []
    result = run('pwd; echo "$GREETING"; cat; echo oops >&2', log, directory=str(tmp_path),
                 environment={"GREETING": "hi"}, stdin="from-stdin")
    assert result.stdout == f"{tmp_path}\nhi\nfrom-stdin"  # trailing newline trimmed
    assert result.stderr == "oops"
    assert "  demo | hi" in log and "  demo | oops" in log


@pytest.mark.parametrize(("logging", "shown"), [("stdout", {"out"}), ("stderr", {"err"}), ("none", set())])
def test_logging_decides_what_is_shown(logging: str, shown: set[str]) -> None:
    log: list[str] = []
    run("echo out; echo err >&2", log, logging=logging)
    assert {line.removeprefix("  demo | ") for line in log} == shown


def test_interpreter(tmp_path: Path) -> None:
    result = run("print(6 * 7)", [], interpreter=["python3", "-c"])
    assert result.stdout == "42"


def test_failure_carries_the_stderr_tail_only_when_it_was_not_shown() -> None:
    with pytest.raises(CommandFailed) as hidden:
        run("echo why >&2; exit 3", [], logging="stdout")
    assert (hidden.value.name, hidden.value.code, hidden.value.tail) == ("demo", 3, "why")
    with pytest.raises(CommandFailed) as shown:
        run("echo why >&2; exit 3", [])
    assert shown.value.tail == ""
