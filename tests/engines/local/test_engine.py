"""`LocalEngine`'s front, without the model: refusals before any work, lazy imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import openbrace
from openbrace.engines.base import EngineRequestError, GenerationRequest
from openbrace.engines.local import DEFAULT_MODEL_ID, EngineStats, LocalEngine

pytestmark = pytest.mark.anyio


async def test_bad_requests_refused_before_generation() -> None:
    engine = LocalEngine()
    base = {"model": DEFAULT_MODEL_ID, "messages": [{"role": "user", "content": "hi"}]}
    cases = [
        (GenerationRequest(**{**base, "model": "gpt-9"}), 404, "gpt-9"),
        (GenerationRequest(**base, extra={"logprobs": True, "n": 2}), 400, "logprobs, n"),
        (GenerationRequest(**base, temperature=-1), 400, "temperature"),
        (GenerationRequest(**base, top_p=0), 400, "top_p"),
        (GenerationRequest(**base, max_tokens=0), 400, "max_tokens"),
        (GenerationRequest(**base, stop=[""]), 400, "stop"),
        (GenerationRequest(**base, extra={"instruct": "yes"}), 400, "instruct"),
    ]
    for request, status, named in cases:
        with pytest.raises(EngineRequestError) as caught:
            await engine.generate(request).__anext__()
        assert caught.value.status == status
        assert named in caught.value.message
    assert engine._model is None, "a refused request must not even load the model"
    assert engine.stats == EngineStats()


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_importing_openbrace_does_not_load_the_engine() -> None:
    modules = _imported_after("import openbrace, openbrace.engines")
    heavy = {"llama_cpp", "llguidance", "openbrace.engines.local"} & modules
    assert not heavy, heavy


def test_importing_the_engine_loads_neither_llama_cpp_nor_llguidance() -> None:
    # The server imports `default_engine` at start-up, with or without the local extra.
    modules = _imported_after("from openbrace.engines.local import LocalEngine, default_engine")
    assert "openbrace.engines.local.engine" in modules
    assert not {"llama_cpp", "llguidance"} & modules


def test_only_the_llama_cpp_wrapper_imports_llama_cpp() -> None:
    source = Path(openbrace.__file__).parent
    importers = set()
    for path in source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(name.split(".")[0] == "llama_cpp" for name in names):
                importers.add(path.relative_to(source).as_posix())
    assert importers == {"engines/local/llamacpp.py"}


def test_the_batch_engine_defaults_to_bf16_and_flash_attention() -> None:
    """Batched: the shipped model's BF16 copy, flash attention (as llama-server's
    `auto`); one at a time: the file as it is, plain attention; both overridable."""
    solo, batched = LocalEngine(), LocalEngine(parallel=4)
    assert (solo.weights, solo.flash_attn) == ("file", False)
    assert (batched.weights, batched.flash_attn) == ("bf16", True)
    exact = LocalEngine(parallel=4, weights="file", flash_attn=False)
    assert (exact.weights, exact.flash_attn) == ("file", False)
    assert LocalEngine("other.gguf", parallel=4).weights == "file"
