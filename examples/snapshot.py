"""Watch the document grow: print `event.snapshot` after every op.

Each snapshot is an independent copy of the document as it stood right after
its op, so events can be stashed and compared later: ops that arrive afterwards
never change them.

    python examples/snapshot.py
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Annotated

from pydantic import BaseModel, Field

import openbrace

MODEL = os.environ.get("OPENBRACE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")


class Ingredient(BaseModel):
    item: str = Field(max_length=24, pattern=r"^[a-z][a-z ]+$")
    quantity: str = Field(pattern=r"^[1-9][0-9]{0,2} (g|ml|cups?|tbsp|tsp|pieces?)$")


class Recipe(BaseModel):
    name: str = Field(max_length=40)
    servings: int = Field(ge=1, le=12)
    vegetarian: bool
    ingredients: Annotated[list[Ingredient], Field(min_length=2, max_length=4)]


async def main() -> None:
    stash: list[tuple[openbrace.PatchEvent, str]] = []
    async with openbrace.AsyncClient() as client:
        start = time.perf_counter()
        async for event in client.stream(
            model=MODEL,
            input="Give a simple recipe for pancakes. Ingredients: flour, milk, eggs and sugar.",
            response_format=Recipe,
            max_tokens=320,
            seed=1,  # repeatable: the docs show this run's output
        ):
            ms = (time.perf_counter() - start) * 1000
            printed = json.dumps(event.snapshot)
            print(f"{ms:7.0f} ms  add {event.path or '(root)'} {json.dumps(event.value)}")
            print(f"            {printed}", flush=True)
            stash.append((event, printed))

    changed = [e.path for e, printed in stash if json.dumps(e.snapshot) != printed]
    print(f"checked {len(stash)} stashed snapshots: {len(changed)} changed by later ops")
    recipe = Recipe.model_validate(stash[-1][0].snapshot)
    print(f"final: {recipe.model_dump_json()}")


if __name__ == "__main__":
    asyncio.run(main())
