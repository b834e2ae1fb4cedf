"""Print every field of a structured answer the moment it is complete.

Nothing is buffered: each line appears while the model is still writing the
fields after it. Runs on the embedded model (no server, no key); set
`OPENBRACE_BASE_URL` (and `OPENBRACE_MODEL` if the server has another model) to
use a server instead.

    python examples/print_fields.py
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Literal

from pydantic import BaseModel, Field

import openbrace

MODEL = os.environ.get("OPENBRACE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")


class Movie(BaseModel):
    title: str = Field(max_length=60)
    year: int = Field(ge=1900, le=2030)
    genre: Literal["action", "comedy", "drama", "horror", "science fiction", "animation"]
    rating: int = Field(ge=1, le=5, description="stars out of 5")
    summary: str = Field(max_length=200)


async def main() -> None:
    async with openbrace.AsyncClient() as client:
        start = time.perf_counter()
        last = None
        async for event in client.stream(
            model=MODEL,
            input="Describe the film The Matrix (1999).",
            response_format=Movie,
            max_tokens=320,
            seed=1,  # repeatable: the docs show this run's output
        ):
            if event.is_leaf:  # skip the root seed `{}`: print values, not containers
                ms = (time.perf_counter() - start) * 1000
                print(f"{ms:7.0f} ms  {event.field:<8} {json.dumps(event.value)}", flush=True)
            last = event
        total = (time.perf_counter() - start) * 1000
    movie = Movie.model_validate(last.snapshot)
    print(f"{total:7.0f} ms  done: {movie.model_dump_json()}")


if __name__ == "__main__":
    asyncio.run(main())
