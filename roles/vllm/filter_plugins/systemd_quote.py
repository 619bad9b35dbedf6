"""Quoting for systemd unit and environment files: every value the role writes into one goes
through these filters, which refuse control characters (a newline would start a new directive,
e.g. `ExecStartPre=+...`, run as root) and quote the rest.

- `systemd_exec_arg`: one `ExecStart=` word: double-quoted, `\\` and `"` escaped, `$` as `$$`
  (else an environment variable is substituted) and `%` as `%%` (else a specifier is).
- `systemd_env_value`: the value of an `Environment="NAME=VALUE"` assignment: `\\`, `"` escaped,
  `%` as `%%` (specifiers are expanded there; `$` is not special).
- `env_file_value`: the value of a `NAME=VALUE` line of an `EnvironmentFile=`: double-quoted,
  `\\` and `"` escaped (neither specifiers nor variables are expanded there).
Source: systemd.service(5) "Command lines" and systemd.exec(5) `Environment=`/`EnvironmentFile=`.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError


def _text(value: Any, what: str) -> str:
    text = str(value)
    bad = next((c for c in text if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise AnsibleFilterError(f"{what}: a value holds the control character {bad!r}; refusing to write it")
    return text


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def systemd_exec_arg(value: Any) -> str:
    return '"' + _escape(_text(value, "systemd_exec_arg")).replace("$", "$$").replace("%", "%%") + '"'


def systemd_env_value(value: Any) -> str:
    return _escape(_text(value, "systemd_env_value")).replace("%", "%%")


def env_file_value(value: Any) -> str:
    return '"' + _escape(_text(value, "env_file_value")) + '"'


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "systemd_exec_arg": systemd_exec_arg,
            "systemd_env_value": systemd_env_value,
            "env_file_value": env_file_value,
        }
