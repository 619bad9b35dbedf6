"""Prompts of an exact token count, distinct per request, and the streaming request bodies.

On vLLM the server's own tokenizer decides: random tokens from the server's vocabulary (drawn
from a fixed word list) are detokenized by `/detokenize`, re-counted by `/tokenize` (with the chat
template for `--api chat`) and lengthened or trimmed until the count is `--input-len`, as
`vllm bench serve` aligns its random prompts. Every request gets its own prompt and every run its
own prompts (a fresh seed per run unless one is given), so vLLM's prefix cache cannot flatter TTFT;
only a `--duration` run reuses its prompts, in turn. A server without `/tokenize` gets word
prompts of about the right length, and the report says so (its `usage` still gives the real input
token count).
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass

from tierkit.smoke.server import ServerApi

WORDS = (
    "the of and to in is was that for on are with as his they be at one have this from or had by "
    "word but what some we can out other were all there when up use your how said an each she which "
    "do their time if will way about many then them write would like so these her long make thing see "
    "him two has look more day could go come did number sound no most people my over know water than "
    "call first who may down side been now find any new work part take get place made live where after "
    "back little only round man year came show every good me give our under name very through just form "
    "sentence great think say help low line differ turn cause much mean before move right boy old too "
    "same tell does set three want air well also play small end put home read hand port large spell add "
    "even land here must big high such follow act why ask men change went light kind off need house "
    "picture try us again animal point mother world near build self earth father head stand own page"
).split()

CALIBRATION_TRIES = 6
CALIBRATION_PARALLEL = 8


@dataclass(frozen=True)
class PromptSet:
    texts: list[str]
    lengths: list[int]  # prompt tokens as the server counts them (estimates when not exact)
    exact: bool  # every length was confirmed by the server's tokenizer
    note: str | None  # what the report should say about prompt lengths, if anything


async def build_prompts(
    api: ServerApi, model: str, chat: bool, count: int, input_len: int, seed: int
) -> PromptSet:
    """`count` distinct prompts of `input_len` tokens each (as exact as the server allows)."""
    vocab_ids = await api.tokenize(model, " ".join(WORDS), chat=False, special=False)
    if vocab_ids is None:
        rngs = [random.Random(seed * 1_000_003 + i) for i in range(count)]
        texts = [" ".join(r.choice(WORDS) for _ in range(input_len)) for r in rngs]
        note = (
            f"the server has no /tokenize: prompts are {input_len} words, not exactly {input_len} tokens "
            "(total_input_tokens is the server's count when it reports usage)"
        )
        return PromptSet(texts, [input_len] * count, exact=False, note=note)
    vocab = sorted(set(vocab_ids))
    overhead = len(await api.tokenize(model, "", chat=chat) or [])
    gate = asyncio.Semaphore(CALIBRATION_PARALLEL)

    async def one(index: int) -> tuple[str, int]:
        async with gate:
            return await _calibrate(api, model, chat, input_len, overhead, vocab, random.Random(seed * 1_000_003 + index))

    built = await asyncio.gather(*(one(i) for i in range(count)))
    off = sum(1 for _, n in built if n != input_len)
    note = None
    if off:
        note = f"{off} of {count} prompts could not be made exactly {input_len} tokens on this tokenizer"
    return PromptSet([t for t, _ in built], [n for _, n in built], exact=off == 0, note=note)


async def _calibrate(
    api: ServerApi, model: str, chat: bool, want: int, overhead: int, vocab: list[int], rng: random.Random
) -> tuple[str, int]:
    ids = [rng.choice(vocab) for _ in range(max(1, want - overhead))]
    best: tuple[str, int] | None = None
    for _ in range(CALIBRATION_TRIES):
        text = await api.detokenize(model, ids)
        got = len(await api.tokenize(model, text, chat=chat) or [])
        if best is None or abs(got - want) < abs(best[1] - want):
            best = (text, got)
        if got == want:
            break
        diff = want - got
        if diff > 0:
            ids += [rng.choice(vocab) for _ in range(diff)]
        elif len(ids) + diff >= 1:
            ids = ids[: len(ids) + diff]
        else:
            break
    assert best is not None
    return best


def request_body(model: str, text: str, chat: bool, output_len: int, ignore_eos: bool) -> bytes:
    """A streaming completions or chat-completions body asking for usage in the last chunk."""
    body: dict[str, object] = {"model": model}
    if chat:
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    body.update(max_tokens=output_len, stream=True, stream_options={"include_usage": True})
    if ignore_eos:
        body["ignore_eos"] = True
    return json.dumps(body, separators=(",", ":")).encode()
