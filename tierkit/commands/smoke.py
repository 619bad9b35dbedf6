"""`tierkit smoke`: stream load at an OpenAI-compatible endpoint and gate on what it delivers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError

from tierkit import stackfiles
from tierkit.commands.options import FileOpt, StackOpt
from tierkit.console import console, err_console
from tierkit.errors import TierkitError
from tierkit.outputs import check_output_file
from tierkit.safe_yaml import excerpt
from tierkit.smoke import defaults
from tierkit.smoke.endpoint import CLIENT_API_KEY_ENV, load_api_key, parse_endpoint
from tierkit.smoke.from_spec import smoke_settings
from tierkit.smoke.report import LiveProgress, show, write_json, write_junit
from tierkit.smoke.run import SmokeSettings, smoke

# Settings fields whose flag is not simply --field-name.
FLAGS = {"duration_s": "--duration", "timeout_s": "--timeout", "api_key": "--api-key-file",
         "per_stream_tok_s": "--expect-stream-tok-s", "expected": "--expect-stream-tok-s"}


def _flag(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "options"
    name = str(loc[-1])
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _settings(given: dict[str, Any], stack: str | None, file: Path | None) -> SmokeSettings:
    """CLI flags over the stack's smoke section over the defaults, validated in one go."""
    spec = stackfiles.load(stack, file) if stack is not None or file is not None else None
    try:
        return smoke_settings(spec, given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            got = f" (got {excerpt(err['input'])})" if err["loc"] and not isinstance(err["input"], dict) else ""
            problems.append(f"{_flag(err['loc'])}: {err['msg'].removeprefix('Value error, ')}{got}; see tierkit smoke --help")
        raise TierkitError(*problems) from None


def smoke_command(
    endpoint: Annotated[str, typer.Option("--endpoint", help="The server's base URL, e.g. http://10.0.0.5:8000 (no /v1).")],
    model: Annotated[Optional[str], typer.Option("--model", help="Model name to request. Default: the first one /v1/models lists (with --stack: the spec's served name).")] = None,
    api: Annotated[str, typer.Option("--api", help="completions (/v1/completions) or chat (/v1/chat/completions).")] = "completions",
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help=f"Requests in flight at most. Default {defaults.CONCURRENCY}.")] = None,
    requests: Annotated[Optional[int], typer.Option("--requests", help=f"Requests to measure (after warmup). Default {defaults.REQUESTS}.")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", help="Instead of --requests: start requests for this many seconds, then wait for them.")] = None,
    request_rate: Annotated[Optional[float], typer.Option("--request-rate", help="Poisson arrivals at this many requests/s (capped by --concurrency). Default: all at once (inf).")] = None,
    input_len: Annotated[Optional[int], typer.Option("--input-len", help=f"Prompt tokens per request, as the server's tokenizer counts them. Default {defaults.INPUT_LEN}.")] = None,
    output_len: Annotated[Optional[int], typer.Option("--output-len", help=f"Output tokens per request (ignore_eos is sent to vLLM). Default {defaults.OUTPUT_LEN}.")] = None,
    warmup: Annotated[Optional[int], typer.Option("--warmup", help=f"Requests sent first and left out of the figures. Default {defaults.WARMUP}.")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help=f"Seconds one request may take before it counts as failed. Default {defaults.TIMEOUT_S:g}.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for prompts and arrival times, to repeat a run exactly. Default: a fresh one per run (in --json), so a re-run against the same server never finds its prompts in vLLM's prefix cache.")] = None,
    min_output_tok_s: Annotated[Optional[float], typer.Option("--min-output-tok-s", help="Gate: output_throughput (output tokens/s) at least this.")] = None,
    max_p99_ttft_ms: Annotated[Optional[float], typer.Option("--max-p99-ttft-ms", help="Gate: p99 time to first token at most this (ms).")] = None,
    max_p99_tpot_ms: Annotated[Optional[float], typer.Option("--max-p99-tpot-ms", help="Gate: p99 time per output token at most this (ms).")] = None,
    max_failed: Annotated[Optional[int], typer.Option("--max-failed", help=f"Gate: failed requests at most this. Default {defaults.MAX_FAILED}.")] = None,
    stack: StackOpt = None,
    file: FileOpt = None,
    api_key_file: Annotated[Optional[Path], typer.Option("--api-key-file", help=f"File holding the API key (first line). Default: ${CLIENT_API_KEY_ENV}. The key is never printed or written.")] = None,
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Also write the results to FILE as JSON: vllm bench serve's key names plus gates and passed.")] = None,
    junit_file: Annotated[Optional[Path], typer.Option("--junit", help="Also write FILE as JUnit XML for a CI test reporter: one test case per gate, a failed gate's message carrying measured and required values.")] = None,
    expect_stream_tok_s: Annotated[Optional[float], typer.Option("--expect-stream-tok-s", help="The plan's single-stream decode tok/s: the report shows it next to the measured per-stream rate (1000 / mean TPOT) with the error in percent. --stack fills it from the plan.")] = None,
    expect_source: Annotated[str, typer.Option("--expect-source", help="Where --expect-stream-tok-s comes from, named in the report.")] = "the command line",
) -> None:
    """Stream load at an OpenAI-compatible endpoint, measure it as `vllm bench serve` does, and gate.

    Figures: output_throughput, total_token_throughput, request_throughput, and mean/median/p90/p99 of TTFT, TPOT, ITL and E2EL, computed as vLLM's benchmark computes them.

    With --stack (or --file), load and gates come from the spec's smoke section (and the plan for 'derive'), and the model from its served name; flags override.

    Gates: the thresholds below (or the spec's), failed requests (default 0), and a text check (empty output, or identical output for every prompt, fails).

    Exit codes: 0 every gate passed; 1 a gate failed; 2 unusable arguments, or no request could be sent.

    Example: tierkit smoke --endpoint http://127.0.0.1:8000 --concurrency 16 --requests 200 --min-output-tok-s 500
    """
    if api not in ("completions", "chat"):
        raise TierkitError(f"--api: {api!r} is not an API; use completions or chat")
    for flag, path in (("--json", json_file), ("--junit", junit_file)):
        if path is not None:
            check_output_file(flag, path)  # before the run, not after it
    given = {
        "endpoint": parse_endpoint(endpoint), "model": model, "api": api, "concurrency": concurrency,
        "requests": requests, "duration_s": duration, "request_rate": request_rate, "input_len": input_len,
        "output_len": output_len, "warmup": warmup, "timeout_s": timeout, "seed": seed,
        "api_key": load_api_key(str(api_key_file) if api_key_file else None),
        "min_output_tok_s": min_output_tok_s, "max_p99_ttft_ms": max_p99_ttft_ms,
        "max_p99_tpot_ms": max_p99_tpot_ms, "max_failed": max_failed,
        "expected": None if expect_stream_tok_s is None else {"per_stream_tok_s": expect_stream_tok_s,
                                                              "source": expect_source},
    }
    settings = _settings(given, stack, file)
    try:
        if err_console.is_terminal:  # live progress only where someone can watch it
            with LiveProgress(err_console, settings.shape.requests) as live:
                report = smoke(settings, on_result=live.on_result, on_phase=live.phase)
        else:
            report = smoke(settings)
    except KeyboardInterrupt:
        raise typer.Abort() from None
    show(console, report)
    if json_file is not None:
        try:
            write_json(json_file, report)
        except OSError as exc:
            raise TierkitError(f"--json: cannot write {json_file} ({exc.strerror}); the run's figures are above") from None
    if junit_file is not None:
        try:
            write_junit(junit_file, report)
        except OSError as exc:
            raise TierkitError(f"--junit: cannot write {junit_file} ({exc.strerror}); the run's figures are above") from None
    if not report.reached_server:
        reason = next(iter(report.failures), "nothing was sent")
        raise TierkitError(f"--endpoint: no request reached {settings.endpoint.url} ({reason}); check that the server is up")
    if not report.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("smoke")(smoke_command)
