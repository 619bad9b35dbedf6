"""Control-plane calls before a run: which model is served, is it vLLM, and its tokenizer.

Failures here mean no request could be sent: they raise `TierkitError` (the CLI exits 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from tierkit.errors import TierkitError
from tierkit.smoke.endpoint import Endpoint
from tierkit.smoke.http import ConnectionPool, build_request, error_message


class _Collect:
    __slots__ = ("status", "chunks")

    def __init__(self) -> None:
        self.status = 0
        self.chunks: list[bytes] = []

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status

    def on_body(self, data: bytes, now: float) -> None:
        self.chunks.append(data)


@dataclass(frozen=True)
class ServedModel:
    name: str
    is_vllm: bool  # vLLM lists its models with owned_by "vllm"; only vLLM takes ignore_eos


class ServerApi:
    """JSON calls on the pool the run will use (no API key ever leaves through an error)."""

    def __init__(self, endpoint: Endpoint, pool: ConnectionPool, api_key: SecretStr | None) -> None:
        self.endpoint = endpoint
        self.pool = pool
        self.api_key = api_key

    async def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or None); transport failures raise TierkitError."""
        body = None if payload is None else json.dumps(payload).encode()
        sink = _Collect()
        reason = await self.pool.exchange(build_request(method, self.endpoint, path, body, self.api_key), sink)
        if reason is not None:
            raise TierkitError(
                f"--endpoint: {method} {self.endpoint.url}{path} failed: {reason}; "
                "check the URL and that the server is up (run the smoke test where the server is reachable)"
            )
        raw = b"".join(sink.chunks)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if sink.status in (401, 403):
            raise TierkitError(
                f"--api-key-file: the server refused the API key ({error_message(sink.status, raw)}); "
                "pass the server's key with --api-key-file or $OPENAI_API_KEY"
            )
        return sink.status, data if sink.status == 200 else raw

    async def served_model(self, wanted: str | None) -> ServedModel:
        """The model to request: `wanted`, or the first one `/v1/models` lists."""
        status, data = await self.call("GET", "/v1/models")
        models = data.get("data") if status == 200 and isinstance(data, dict) else None
        entries = [m for m in models if isinstance(m, dict) and m.get("id")] if isinstance(models, list) else []
        if wanted is None:
            if not entries:
                what = error_message(status, data) if status != 200 else "an empty model list"
                raise TierkitError(f"--model: {self.endpoint.url}/v1/models gave {what}; pass --model NAME")
            entry = entries[0]
        else:
            match = next((m for m in entries if m["id"] == wanted), None)
            if entries and match is None:
                served = ", ".join(str(m["id"]) for m in entries)
                raise TierkitError(f"--model: {wanted!r} is not served at {self.endpoint.url} (it serves {served})")
            entry = match or {"id": wanted}
        return ServedModel(name=str(entry["id"]), is_vllm=entry.get("owned_by") == "vllm")

    async def tokenize(self, model: str, text: str, chat: bool, special: bool = True) -> list[int] | None:
        """vLLM's /tokenize: the token ids the server sees for this prompt, or None without it."""
        if chat:
            payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
        else:
            payload = {"model": model, "prompt": text, "add_special_tokens": special}
        status, data = await self.call("POST", "/tokenize", payload)
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            return None
        return data["tokens"]

    async def detokenize(self, model: str, tokens: list[int]) -> str:
        status, data = await self.call("POST", "/detokenize", {"model": model, "tokens": tokens})
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
            what = error_message(status, data) if status != 200 else "no prompt"
            raise TierkitError(
                f"--endpoint: {self.endpoint.url}/detokenize gave {what}; "
                "the server's tokenizer endpoints are inconsistent (use --api completions, or report it)"
            )
        return data["prompt"]
