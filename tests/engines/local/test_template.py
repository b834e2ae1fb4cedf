"""Any GGUF's own chat template renders the prompt: ChatML (shipped) and Gemma-style turns."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from openbrace.engines.base import GenerationRequest
from openbrace.engines.local import LocalEngine, default_model_path
from tests.support.gguf import GEMMA_TEMPLATE, with_chat_template

pytestmark = pytest.mark.model

CHAT = [
    {"role": "system", "content": "Classify the ticket."},
    {"role": "user", "content": "I was charged twice."},
]
SCHEMA = {
    "type": "object",
    "properties": {"intent": {"type": "string", "enum": ["billing", "technical"]}},
    "required": ["intent"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def gemma_styled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped weights with a Gemma-style chat template written into the GGUF."""
    target = tmp_path_factory.mktemp("gguf") / "smol-gemma-template.gguf"
    return with_chat_template(default_model_path(), target, GEMMA_TEMPLATE)


async def _run(engine: LocalEngine) -> tuple[str, object]:
    await engine.load()
    rendered = engine._loaded().model.render(CHAT)
    request = GenerationRequest(
        model=engine.model_id, messages=CHAT, schema=SCHEMA, temperature=0, max_tokens=20
    )
    parts = [part async for part in engine.generate(request)]
    await engine.aclose()
    return rendered, json.loads("".join(str(p) for p in parts[:-1]))


def test_a_second_template_family_renders_and_generates(gemma_styled: Path) -> None:
    """The same weights follow whichever template their GGUF carries, and still answer."""
    rendered, document = anyio.run(_run, LocalEngine(gemma_styled, n_threads=1))
    assert rendered.count("<start_of_turn>user\n") == 2  # Gemma folds system into user turns
    assert rendered.endswith("<start_of_turn>model\n")
    assert "<|im_end|>" not in rendered  # (SmolLM2's BOS token is <|im_start|>)
    assert document["intent"] in ("billing", "technical")


def test_the_shipped_model_keeps_its_chatml_template(local_engine: LocalEngine) -> None:
    """The control: the shipped GGUF's own template is ChatML."""
    rendered = local_engine._loaded().model.render(CHAT)
    assert rendered.startswith("<|im_start|>system\nClassify the ticket.<|im_end|>")
    assert "<start_of_turn>" not in rendered
