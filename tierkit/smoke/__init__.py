"""The smoke test: an async streaming load generator for OpenAI-compatible servers, metrics as
vLLM's `vllm bench serve` defines them, and gates that decide whether a deploy counts.

Modules, one job each:
  endpoint  the base URL and the API key (read, never printed)
  http      a lean HTTP/1.1 client on asyncio protocols (the hot path) and its connection pool
  sse       incremental server-sent-events parsing
  stream    one streamed request: events -> timings, tokens, text, or a failure reason
  server    control-plane calls: /v1/models, /tokenize, /detokenize
  prompts   prompts whose token count the server confirms, and the request bodies
  load      arrivals (closed loop or Poisson), workers, warmup, duration
  metrics   the figures (vLLM key names) from per-request timelines
  sanity    the generated-text check (empty or identical output)
  gates     thresholds and their verdicts
  defaults  each setting's default, written once
  from_spec a tier spec -> smoke settings (load and gates): the one mapping
  expected  the plan's predicted figure held against the measured one
  run       one smoke run end to end
  report    the rich table, live progress, verdict line, JSON file and JUnit XML

It knows nothing of Pulumi: the Pulumi program's Smoke step runs `tierkit smoke --stack NAME`.
"""
