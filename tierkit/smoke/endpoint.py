"""Where the smoke test sends requests, and with which API key.

The key comes from a file (`--api-key-file`) or from `$OPENAI_API_KEY` (the variable OpenAI
clients and `vllm bench serve` read). It is held as a `SecretStr`: it goes into request headers
and nowhere else (not into errors, reports, JSON or reprs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from tierkit.errors import TierkitError
from tierkit.safe_yaml import excerpt
from tierkit.textrules import host_address_problem

# The key this client sends (OpenAI clients and `vllm bench serve` read the same variable); not
# the key the roles give vLLM to require (tierkit.inventory.VLLM_API_KEY_ENV).
CLIENT_API_KEY_ENV = "OPENAI_API_KEY"
_USERINFO = re.compile(r"//[^/?#]*@")


class Endpoint(BaseModel):
    """An OpenAI-compatible server's base URL, split into what the HTTP client needs."""

    model_config = ConfigDict(frozen=True)

    url: str  # as given, without a trailing slash
    host: str
    port: int
    prefix: str  # path before /v1/..., "" for most servers

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"


def redacted(url: str) -> str:
    """`url` for an error line: any user:password@ replaced by ***@, escaped, cut short."""
    return excerpt(_USERINFO.sub("//***@", url), 120)


def parse_endpoint(given: str) -> Endpoint:
    """`http://HOST[:PORT][/PREFIX]`, or one-line errors naming the fix (never echoing credentials)."""
    fix = "give the server's base URL, e.g. http://10.0.0.5:8000"
    url = redacted(given)
    try:
        parts = urlsplit(given.strip())
        port = parts.port
    except ValueError:
        raise TierkitError(f"--endpoint: {url} is not a URL (bad host or port); {fix}") from None
    if parts.username is not None or parts.password is not None:
        raise TierkitError(f"--endpoint: {url} carries credentials, which would be echoed and logged; drop them from "
                           f"the URL and pass the API key with --api-key-file or ${CLIENT_API_KEY_ENV}")
    if port == 0:
        raise TierkitError(f"--endpoint: {url} names port 0, which no server listens on; {fix}")
    if any(not c.isprintable() or c.isspace() for c in given.strip()):
        raise TierkitError(f"--endpoint: {url} contains spaces or control characters; {fix}")
    if parts.scheme == "https":
        raise TierkitError(
            f"--endpoint: {url} is https, which the smoke client does not speak; "
            "point it at the server's plain-http address (vLLM serves http on its port)"
        )
    if parts.scheme != "http" or not parts.hostname:
        raise TierkitError(f"--endpoint: {url} is not an http:// URL with a host; {fix}")
    if host_address_problem(parts.hostname):
        raise TierkitError(f"--endpoint: {url} names no valid host (an IP address or DNS name); {fix}")
    if parts.query or parts.fragment:
        raise TierkitError(f"--endpoint: {url} has a query or fragment; {fix}")
    prefix = parts.path.rstrip("/")
    if "v1" in prefix.split("/"):
        raise TierkitError(f"--endpoint: {url} includes the API path; {fix} (without /v1)")
    return Endpoint(url=given.strip().rstrip("/"), host=parts.hostname, port=80 if port is None else port, prefix=prefix)


def load_api_key(path: str | None) -> SecretStr | None:
    """The key from `path` (first line, stripped), else from $OPENAI_API_KEY, else None."""
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise TierkitError(f"--api-key-file: cannot read {path} ({exc.strerror}); pass a readable file") from None
        key = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not key:
            raise TierkitError(f"--api-key-file: {path} is empty; put the API key on its first line")
        return SecretStr(key)
    key = os.environ.get(CLIENT_API_KEY_ENV, "").strip()
    return SecretStr(key) if key else None
