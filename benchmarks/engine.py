"""The embedded engine's figures (issue 3): speed of constrained decoding, and quality.

```
python -m benchmarks.engine            # speed (5 runs each) and quality (8 tickets x 3 seeds)
python -m benchmarks.engine --smoke    # one run each, 2 tickets: checks that it all works
```

Speed, on one prompt and one schema (a support ticket: intent, urgency, reply),
greedy, warm KV cache (the same prompt ran before, so prefill is one token):

- tokens/s unconstrained (same prompt, free text) and constrained, and their ratio.
  Forced tokens count as produced tokens: they are output the model did not have
  to sample, which is the point of forcing them.
- the grammar mask per sampled step (llguidance compute + numpy apply), mean and
  p99, as a share of the mean step time.
- time to the first field and to the full document, through the patch pipeline.
- the peer: llama-cpp-python's own JSON-Schema grammar (GBNF, `response_format`
  with a `schema`) on the same model file, prompt and settings.

Quality: the optional system instruction (`instruct=True`: fields named in order,
enum values listed) against none (the default), and against naming the fields only.

Importing this module runs nothing; `main(argv)` and `run(out_dir)` do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PROMPT", "SCHEMA", "TICKETS", "main", "measure_quality", "measure_speed", "run"]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["billing", "technical", "account", "other"]},
        "urgency": {"type": "string", "enum": ["low", "medium", "high"]},
        "reply": {"type": "string", "maxLength": 300},
    },
    "required": ["intent", "urgency", "reply"],
    "additionalProperties": False,
}
PROMPT = "I was charged twice for my subscription this month. Please refund the extra charge."

# (ticket, expected intent): obvious cases, so agreement measures following the schema.
TICKETS: list[tuple[str, str]] = [
    (PROMPT, "billing"),
    ("The app crashes every time I open the settings page.", "technical"),
    ("How do I change the email address on my account?", "account"),
    ("My invoice shows the wrong VAT number, please correct it.", "billing"),
    ("I get error 500 when I upload a file larger than 10 MB.", "technical"),
    ("Please delete my account and all my data.", "account"),
    ("I forgot my password and the reset link never arrives.", "account"),
    ("Your payment page took my money but my plan is still free.", "billing"),
]
MAX_TOKENS = 200


def _messages(prompt: str, system: str | None) -> list[dict[str, str]]:
    chat = [{"role": "user", "content": prompt}]
    return [{"role": "system", "content": system}, *chat] if system else chat


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def _ours(
    engine: Any, schema: Any, system: str, *, prompt: str = PROMPT, max_tokens: int = MAX_TOKENS
) -> dict[str, float]:
    """One greedy generation through the patch pipeline: timings and token counts."""
    from openbrace.engines.base import GenerationRequest
    from openbrace.engines.local import DEFAULT_MODEL_ID
    from openbrace.streaming import patch_records

    request = GenerationRequest(
        model=DEFAULT_MODEL_ID,
        messages=_messages(prompt, system),
        schema=schema,
        temperature=0,
        max_tokens=max_tokens,
        extra={"instruct": False},
    )
    start = time.perf_counter()
    first_field = None
    tokens = 0
    if schema is None:  # free text: no ops, count the deltas' tokens via usage
        async for item in engine.generate(request):
            if not isinstance(item, str):
                tokens = item.usage.completion_tokens
        return {"tokens": tokens, "seconds": time.perf_counter() - start}
    async for record in patch_records(engine, request):
        if first_field is None and record.get("path"):
            first_field = time.perf_counter() - start
        if "done" in record:
            tokens = record["done"]["usage"]["completion_tokens"]
        elif "error" in record:
            raise RuntimeError(f"constrained run failed: {record}")
    total = time.perf_counter() - start
    return {"tokens": tokens, "seconds": total, "first_field": first_field or total}


def _peer_model(engine: Any) -> Any:
    """llama-cpp-python on the same GGUF, with the context and threads of `engine`."""
    import llama_cpp

    from openbrace.engines.local import default_model_path

    return llama_cpp.Llama(
        model_path=str(default_model_path()),
        n_ctx=engine.n_ctx,
        n_threads=engine.n_threads,
        n_threads_batch=engine.n_threads,
        verbose=False,
    )


def _peer(
    llm: Any, schema: Any, system: str, *, prompt: str = PROMPT, max_tokens: int = MAX_TOKENS
) -> dict[str, float]:
    """llama-cpp-python's own schema grammar, same prompt and greedy settings."""
    from openbrace.emitter import PatchEmitter

    kwargs: dict[str, Any] = {}
    if schema is not None:
        kwargs["response_format"] = {"type": "json_object", "schema": schema}
    start = time.perf_counter()
    emitter = PatchEmitter() if schema is not None else None
    first_field = None
    text = ""
    for chunk in llm.create_chat_completion(
        messages=_messages(prompt, system),
        temperature=0,
        max_tokens=max_tokens,
        stream=True,
        **kwargs,
    ):
        delta = chunk["choices"][0]["delta"].get("content") or ""
        text += delta
        ops = emitter.feed(delta) if emitter is not None and delta else []
        if first_field is None and any(op["path"] for op in ops):
            first_field = time.perf_counter() - start
    total = time.perf_counter() - start
    # Streaming chunks carry no usage: count the text's tokens (plus the final EOS).
    tokens = len(llm.tokenize(text.encode(), add_bos=False, special=False)) + 1
    result = {"tokens": tokens, "seconds": total, "text": text}
    if schema is not None:
        json.loads(text)  # the peer must produce JSON too, or the comparison is void
        result["first_field"] = first_field or total
    return result


def measure_speed(runs: int = 5) -> dict[str, Any]:
    """Tokens/s, mask share and latencies for ours and the peer (median of `runs`)."""
    import anyio

    from openbrace.engines.local import LocalEngine, instruction

    system = instruction(SCHEMA) or ""
    engine = LocalEngine()
    anyio.run(engine.load)
    peer = _peer_model(engine)
    out: dict[str, Any] = {"runs": runs, "n_threads": engine.n_threads}
    configs = {
        "ours_unconstrained": lambda: anyio.run(_ours, engine, None, system),
        "ours_constrained": lambda: anyio.run(_ours, engine, SCHEMA, system),
        "peer_unconstrained": lambda: _peer(peer, None, system),
        "peer_constrained": lambda: _peer(peer, SCHEMA, system),
    }
    for measure in configs.values():  # warm-up: compiles, fills each KV cache
        measure()
    engine.stats.steps.clear()
    forced_before = engine.stats.forced_tokens
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    # Interleaved, so a change in the machine's load hits every configuration alike.
    for _ in range(runs):
        for name, measure in configs.items():
            samples[name].append(measure())
    for name, taken in samples.items():
        out[name] = _summary(taken)
    # Only constrained runs compute masks; unconstrained steps are kept out of the share.
    masked = [(step, mask) for step, mask in engine.stats.steps if mask is not None]
    masks = [mask for _, mask in masked]
    steps = [step for step, _ in masked]
    step_mean = statistics.fmean(steps)
    out["mask"] = {
        "mean_ms": statistics.fmean(masks) * 1e3,
        "p99_ms": _p99(masks) * 1e3,
        "step_mean_ms": step_mean * 1e3,
        "mean_share": statistics.fmean(masks) / step_mean,
        "p99_share": _p99(masks) / step_mean,
        "forced_share": (engine.stats.forced_tokens - forced_before)
        / sum(s["tokens"] for s in samples["ours_constrained"]),
    }
    for who in ("ours", "peer"):
        out[f"{who}_ratio"] = (
            out[f"{who}_constrained"]["tokens_per_s"] / out[f"{who}_unconstrained"]["tokens_per_s"]
        )
    peer.close()
    anyio.run(engine.aclose)
    return out


def _summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [s["tokens"] / s["seconds"] for s in samples]
    summary = {
        "tokens_per_s": statistics.median(rates),
        "tokens": statistics.median(s["tokens"] for s in samples),
        "seconds": statistics.median(s["seconds"] for s in samples),
    }
    if "first_field" in samples[0]:
        summary["first_field_s"] = statistics.median(s["first_field"] for s in samples)
    return summary


def _good_reply(reply: str) -> bool:
    """A reply a person could use: some words, mostly not repeated, not just digits."""
    words = reply.lower().split()
    return (
        len(words) >= 3 and len(set(words)) / len(words) >= 0.5 and any(c.isalpha() for c in reply)
    )


async def _quality_run(engine: Any, ticket: str, seed: int, variant: str) -> dict[str, Any]:
    from openbrace.engines.base import GenerationRequest
    from openbrace.engines.local import DEFAULT_MODEL_ID

    names_only = "Answer in JSON with the fields intent, urgency, reply."
    system = names_only if variant == "names only" else None
    request = GenerationRequest(
        model=DEFAULT_MODEL_ID,
        messages=_messages(ticket, system),
        schema=SCHEMA,
        seed=seed,
        max_tokens=MAX_TOKENS,
        extra={"instruct": variant == VARIANTS[2]},
    )
    parts = [p async for p in engine.generate(request)]
    finish = parts.pop()
    text = "".join(parts)  # type: ignore[arg-type]
    if finish.reason != "stop":  # type: ignore[union-attr]
        return {"complete": False, "intent": None, "good_reply": False}
    document = json.loads(text)
    return {
        "complete": True,
        "intent": document["intent"],
        "good_reply": _good_reply(document["reply"]),
    }


VARIANTS = ("none (the default)", "names only", "instruct=True (fields + enum values)")


def measure_quality(
    tickets: Sequence[tuple[str, str]] = TICKETS, seeds: Sequence[int] = (1, 2, 3)
) -> dict[str, dict[str, float]]:
    """Per instruction variant: share of complete answers, right intents, good replies."""
    import anyio

    from openbrace.engines.local import LocalEngine

    engine = LocalEngine()
    anyio.run(engine.load)
    results: dict[str, dict[str, float]] = {}
    for variant in VARIANTS:
        rows = []
        for ticket, expected in tickets:
            for seed in seeds:
                row = anyio.run(_quality_run, engine, ticket, seed, variant)
                rows.append({**row, "right_intent": row["intent"] == expected})
        results[variant] = {
            key: sum(r[key] for r in rows) / len(rows)
            for key in ("complete", "right_intent", "good_reply")
        }
        results[variant]["n"] = len(rows)
    anyio.run(engine.aclose)
    return results


def report(speed: dict[str, Any], quality: dict[str, dict[str, float]]) -> str:
    """The figures as markdown."""
    from .harness import md_table

    def row(label: str, s: dict[str, Any]) -> list[str]:
        first = f"{s['first_field_s'] * 1e3:.0f} ms" if "first_field_s" in s else "-"
        return [
            label,
            f"{s['tokens_per_s']:.1f}",
            f"{s['tokens']:.0f}",
            first,
            f"{s['seconds'] * 1e3:.0f} ms",
        ]

    mask = speed["mask"]
    lines = [
        f"Same prompt and schema (support ticket, reply maxLength 300), greedy, "
        f"max_tokens {MAX_TOKENS}, warm KV cache, {speed['n_threads']} llama.cpp thread(s), "
        f"median of {speed['runs']} runs. Forced tokens count as produced tokens.",
        "",
        md_table(
            ["run", "tokens/s", "tokens", "first field", "full document"],
            [
                row("openbrace, unconstrained", speed["ours_unconstrained"]),
                row("openbrace, constrained (llguidance)", speed["ours_constrained"]),
                row("llama-cpp-python, unconstrained", speed["peer_unconstrained"]),
                row("llama-cpp-python, JSON-Schema grammar", speed["peer_constrained"]),
            ],
        ),
        "",
        f"- constrained / unconstrained tokens/s: openbrace **{speed['ours_ratio']:.2f}** "
        f"(goal >= 1.0), llama-cpp-python grammar {speed['peer_ratio']:.2f}; "
        f"{mask['forced_share']:.0%} of openbrace's constrained tokens were forced.",
        f"- grammar mask per sampled step: mean {mask['mean_ms']:.3f} ms = "
        f"**{mask['mean_share']:.2%}** of a {mask['step_mean_ms']:.1f} ms step, "
        f"p99 {mask['p99_ms']:.3f} ms = **{mask['p99_share']:.2%}** (goal <= 2%).",
        "",
        "Quality of the optional system instruction (8 obvious tickets x 3 seeds, "
        "temperature 0.3): complete = closed within max_tokens; right intent = the "
        "obvious enum value; good reply = >= 3 words, >= 50% distinct, has letters.",
        "",
        md_table(
            ["instruction", "complete", "right intent", "good reply"],
            [
                [v, f"{q['complete']:.0%}", f"{q['right_intent']:.0%}", f"{q['good_reply']:.0%}"]
                for v, q in quality.items()
            ],
        ),
    ]
    return "\n".join(lines)


def run(out_dir: Path, *, smoke: bool = False) -> Any:
    """The suite's entry point: a `harness.Section` with the figures."""
    from .harness import Section

    del out_dir  # no plots
    speed = measure_speed(1 if smoke else 5)
    quality = measure_quality(TICKETS[:2] if smoke else TICKETS, (1,) if smoke else (1, 2, 3))
    mask = speed["mask"]
    instructed = quality[VARIANTS[2]]
    summary = [
        (
            "constrained/unconstrained tokens/s >= 1.0",
            f"{speed['ours_ratio']:.2f}",
            "met" if speed["ours_ratio"] >= 1 else "missed",
        ),
        (
            "mask p99 <= 2% of a step",
            f"{mask['p99_share']:.2%}",
            "met" if mask["p99_share"] <= 0.02 else "missed",
        ),
        (
            "instruction helps intent",
            f"{instructed['right_intent']:.0%} vs {quality[VARIANTS[0]]['right_intent']:.0%}",
            "yes" if instructed["right_intent"] > quality[VARIANTS[0]]["right_intent"] else "no",
        ),
    ]
    return Section("The embedded engine", report(speed, quality), summary=summary)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the engine benchmark and print its markdown."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="one run each, two tickets")
    args = parser.parse_args(argv)
    section = run(Path("."), smoke=args.smoke)
    print(f"## {section.title}\n\n{section.body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
