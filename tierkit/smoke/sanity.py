"""A sanity check on generated text: a server returning garbage at full speed must not pass.

Flagged: completed requests with empty (or whitespace-only) text, identical text across all
completed requests (their prompts all differ, so a real model does not answer them alike), and a
run with no completed request at all (nothing shows the server can generate).
"""

from __future__ import annotations

from tierkit.smoke.stream import RequestResult


def text_problems(results: list[RequestResult]) -> list[str]:
    ok = [r for r in results if r.success]
    if not ok:
        return ["no completed request returned text"]
    problems: list[str] = []
    empty = sum(1 for r in ok if not r.text.strip())
    if empty:
        problems.append(f"{empty} of {len(ok)} completed requests returned empty text")
    texts = {r.text for r in ok}
    if len(ok) >= 2 and len(texts) == 1 and next(iter(texts)).strip():
        problems.append(f"all {len(ok)} completed requests returned identical text")
    return problems
