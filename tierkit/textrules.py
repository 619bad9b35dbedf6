"""Rules for spec strings, by what each becomes on the servers.

A value that reaches a file, a systemd unit, an inventory or a command line is checked for what
it becomes there: a host address becomes `ansible_host`, an SSH argument, a HAProxy `server`
line and a keepalived peer (an IP literal or a DNS name, never something that starts with `-`);
a user becomes an SSH login (a POSIX user name); the served model name, the model path and each
extra vLLM argument become `ExecStart=` words in a systemd unit (printable text, no control
characters, quoted and escaped there by the role). Each `*_problem` function returns None for a
good value or the reason and fix for a bad one; `tierkit.spec` turns them into pydantic errors.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from tierkit.safe_yaml import excerpt

# RFC 1123 host names: labels of letters, digits and hyphens, not starting or ending with a
# hyphen, at most 63 characters each and 253 in all.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# POSIX portable user names (IEEE Std 1003.1, 3.437) as Debian's adduser accepts them: lower
# case first, at most 32 characters.
_POSIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Hugging Face repository ids: `owner/name`, letters, digits, `-`, `_`, `.` (huggingface_hub's
# REPO_ID_REGEX), at most 96 characters.
_HF_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# A served model name: what clients put in `model`; tierkit allows what model ids use.
_SERVED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}")
# An absolute directory on the servers, in the characters model directories use.
_SERVER_PATH = re.compile(r"/[A-Za-z0-9._/+@-]{0,1023}")
MAX_ARG_CHARS = 4096

# vLLM flags tierkit sets itself (from the plan, the firewall, the secrets and a multi-node group), their short
# forms, and `--config` (a file that can set any of them). vLLM's parser accepts `_` for `-`
# and any unambiguous prefix of a long flag (argparse's allow_abbrev), so both are matched.
RESERVED_FLAGS = (
    "--model", "--host", "--port", "--uds", "--api-key", "--served-model-name",
    "--tensor-parallel-size", "--pipeline-parallel-size", "--gpu-memory-utilization",
    "--quantization", "--dtype", "--max-model-len", "--max-num-seqs", "--config",
    "--nnodes", "--node-rank", "--master-addr", "--master-port", "--headless", "--data-parallel-size",
)
# vLLM 0.32.0's short forms of those (engine/arg_utils.py): -dp also prefixes the other
# data-parallel layout flags (-dpl, -dpa, ...), which tierkit's layout owns too.
RESERVED_SHORT = ("-tp", "-pp", "-dp", "-q", "-n", "-r")
SECRET_FLAGS = ("--api-key",)


def _printable_problem(value: str) -> str | None:
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        return f"contains the control character {bad!r}; remove it"
    return None


def host_address_problem(value: str) -> str | None:
    """An IP literal or an RFC 1123 DNS name (what SSH, HAProxy and keepalived are given)."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    fix = "give an IP address (e.g. 192.0.2.10) or a DNS name (e.g. gpu-a.example.com)"
    if not value or len(value) > 253:
        return f"{excerpt(value)} is not an IP address or DNS name; {fix}"
    labels = value.removesuffix(".").split(".")
    if all(label.isdigit() for label in labels) or (len(labels) > 1 and labels[-1].isdigit()):
        return f"{excerpt(value)} is not a valid IP address; {fix}"
    if not all(_LABEL.fullmatch(label) for label in labels):
        return f"{excerpt(value)} is not an IP address or DNS name; {fix}"
    return None


def posix_user_problem(value: str) -> str | None:
    if _POSIX_USER.fullmatch(value):
        return None
    return f"{excerpt(value)} is not a POSIX user name; use lower-case letters, digits, '_' and '-' (e.g. root, ubuntu)"


def hf_id_problem(value: str) -> str | None:
    if _HF_ID.fullmatch(value) and ".." not in value:
        return None
    return f"{excerpt(value)} is not a Hugging Face model id; use owner/name, e.g. meta-llama/Llama-3.1-8B-Instruct"


def served_name_problem(value: str) -> str | None:
    if _SERVED_NAME.fullmatch(value):
        return None
    return (f"{excerpt(value)} is not a usable model name; use up to 128 letters, digits and . _ : / + - "
            f"(starting with a letter or digit)")


def server_path_problem(value: str) -> str | None:
    if _SERVER_PATH.fullmatch(value) and "/../" not in value + "/":
        return None
    return f"{excerpt(value)} is not an absolute directory on the servers; use /path/to/model (letters, digits, . _ / + @ -)"


def flag_name(arg: str) -> str:
    """The flag an argument names as vLLM's parser reads it: before `=`, `_` as `-`."""
    key = arg.split("=", 1)[0]
    return "--" + key[2:].split(".", 1)[0].replace("_", "-") if key.startswith("--") else key


def extra_arg_problem(arg: str) -> str | None:
    """An extra vLLM argument: printable text, and never a flag tierkit sets itself."""
    if len(arg) > MAX_ARG_CHARS:
        return f"{excerpt(arg)} is longer than {MAX_ARG_CHARS} characters; shorten it"
    problem = _printable_problem(arg)
    if problem:
        return f"{excerpt(arg)} {problem}"
    name = flag_name(arg)
    if name.startswith("--") and len(name) > 2:
        for flag in RESERVED_FLAGS:
            if flag.startswith(name):
                if flag in SECRET_FLAGS:
                    return (f"{excerpt(arg)} would put the API key on vLLM's command line; remove it and set "
                            f"the key as a secret: pulumi config set --secret tierkit:apiKey")
                return f"{excerpt(arg)} sets {flag}, which tierkit sets from the spec; remove it and set the spec's field"
    elif any(name.startswith(short) for short in RESERVED_SHORT):
        return f"{excerpt(arg)} sets a flag tierkit sets from the spec ({', '.join(RESERVED_SHORT)}); remove it and set the spec's field"
    return None


def _rule(check: Callable[[str], str | None]) -> AfterValidator:
    """A pydantic validator from a check above (None: good; else the reason and fix)."""

    def validate(value: str) -> str:
        problem = check(value)
        if problem:
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


# The checks as pydantic types, for the spec and the host records.
HostAddress = Annotated[str, _rule(host_address_problem)]
HostName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]
PosixUser = Annotated[str, _rule(posix_user_problem)]
HfId = Annotated[str, _rule(hf_id_problem)]
ServedName = Annotated[str, _rule(served_name_problem)]
ServerPath = Annotated[str, _rule(server_path_problem)]
ExtraArg = Annotated[str, _rule(extra_arg_problem)]


class StrictModel(BaseModel):
    """A spec section: unknown keys refused; no coercion (a bool is no count, a float no port,
    "8000" no int); every float finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _text_only(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {excerpt(value)}; quote the address")
    return value


# Local file paths (keys, topology captures) are read by tierkit itself, never written anywhere.
LocalPath = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f\x7f]+$")]
IPv4Text = Annotated[ipaddress.IPv4Address, BeforeValidator(_text_only), Field(strict=False)]
IPv4NetText = Annotated[ipaddress.IPv4Network, BeforeValidator(_text_only), Field(strict=False)]
Port = Annotated[int, Field(ge=1, le=65535)]


def vip_problem(vip: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address | None,
                hosts: list[ipaddress.IPv4Address]) -> str | None:
    """Why `vip` cannot be a virtual IP on `subnet` (None: it can)."""
    if vip.is_loopback or vip.is_multicast or vip.is_unspecified or vip.is_link_local or vip.is_reserved:
        return f"{vip} is not a unicast address a host can take"
    if vip not in subnet:
        return f"{vip} is outside the hosts' subnet {subnet}"
    if vip == subnet.network_address:
        return f"{vip} is the subnet's network address"
    if vip == subnet.broadcast_address:
        return f"{vip} is the subnet's broadcast address"
    if vip == gateway:
        return f"{vip} is the subnet's gateway (the switch)"
    if vip in hosts:
        return f"{vip} is a host's own address"
    return None
