"""What the embedded engine did: counters for tests, benchmarks and the curious."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["EngineStats"]


@dataclass
class EngineStats:
    """Counters of what the engine did since it was created (never reset).

    Attributes:
        decode_calls: llama.cpp decode batches run (prefill chunks and steps).
        prompt_tokens_evaluated: prompt tokens run through the model.
        prompt_tokens_reused: prompt tokens served from the KV cache of an earlier request.
        sampled_tokens: tokens chosen by sampling.
        forced_tokens: tokens the grammar forced, appended without sampling.
        schemas_compiled: distinct schemas compiled (a cache miss each).
        steps: per sampled step, `(step seconds, mask seconds)`: the wall time of the
            whole step (mask, sampling, decode) and of its grammar mask (compute and
            unpack; None for free text); the last 10 000 steps.
        busy_sequences: sequences running in the batch context (`parallel` > 1).
        prefix_copies: prompts started from another sequence's cached prefix.
        batches: per batched step, `(tokens, sequences)` in its llama_batch; the
            last 10 000 steps.
    """

    decode_calls: int = 0
    prompt_tokens_evaluated: int = 0
    prompt_tokens_reused: int = 0
    sampled_tokens: int = 0
    forced_tokens: int = 0
    schemas_compiled: int = 0
    steps: deque[tuple[float, float | None]] = field(default_factory=lambda: deque(maxlen=10_000))
    busy_sequences: int = 0
    prefix_copies: int = 0
    batches: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=10_000))
