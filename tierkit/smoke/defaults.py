"""The smoke test's defaults, each written once: the spec's `smoke:` section, `tierkit smoke`'s
flags and the runner's settings all take them from here."""

CONCURRENCY = 8  # requests in flight at most
REQUESTS = 64  # measured requests, when neither a count nor a duration is given
INPUT_LEN = 128  # prompt tokens per request
OUTPUT_LEN = 128  # output tokens per request
WARMUP = 2  # requests sent first and left out of the figures
TIMEOUT_S = 300.0  # seconds one request may take before it counts as failed
MAX_FAILED = 0  # failed requests a run may have and pass
