"""Start one task per plan step the moment the step arrives.

`steps/0` starts its work while the model is still writing `steps/1`; the
timeline at the end shows the overlap, and the total against what waiting for
the whole answer first would cost (generation time plus the slowest task).

    python examples/fanout.py
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Annotated

from pydantic import BaseModel, Field

import openbrace

MODEL = os.environ.get("OPENBRACE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
# How long each step's task takes (a tool call, a sub-agent, ...). Here the first steps
# are the slow ones, as a backup would be: fanning out hides them behind the generation.
WORK_SECONDS = (0.9, 0.6, 0.4, 0.3)


# "1. Back up ...": numbered, and no JSON-ish debris a 135M model likes to write.
Step = Annotated[str, Field(max_length=50, pattern=r'^[1-9]\. [A-Z][^{}\[\]"_=`0-9]+$')]


class Plan(BaseModel):
    goal: str = Field(max_length=60)
    steps: list[Step] = Field(min_length=3, max_length=4)


async def work(index: int, step: str, clock: dict[str, float], start: float) -> None:
    """Stands in for the real work a step triggers."""
    clock[f"started {index}"] = _ms(start)
    print(f"{_ms(start):7.0f} ms  step {index} started: {step!r}", flush=True)
    await asyncio.sleep(WORK_SECONDS[index % len(WORK_SECONDS)])
    clock[f"finished {index}"] = _ms(start)
    print(f"{_ms(start):7.0f} ms  step {index} finished", flush=True)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


async def main() -> None:
    clock: dict[str, float] = {}
    tasks: list[asyncio.Task[None]] = []
    async with openbrace.AsyncClient() as client:
        start = time.perf_counter()
        async for event in client.stream(
            model=MODEL,
            input="Plan the migration of a small web app from SQLite to PostgreSQL in three "
            "or four short steps, such as: 1. Back up the SQLite database.",
            response_format=Plan,
            max_tokens=320,
        ):
            if len(event.keys) == 2 and event.keys[0] == "steps":  # steps/0, steps/1, ...
                index = int(event.keys[1])
                clock[f"arrived {index}"] = _ms(start)
                tasks.append(asyncio.create_task(work(index, event.value, clock, start)))
        generated = _ms(start)
        print(f"{generated:7.0f} ms  generation ended ({len(tasks)} steps)", flush=True)
        await asyncio.gather(*tasks)
    total = _ms(start)

    print("\ntimeline        arrived   started  finished   (ms)")
    for i in range(len(tasks)):
        row = [clock[f"{what} {i}"] for what in ("arrived", "started", "finished")]
        print(f"  steps/{i}     " + "".join(f"{t:10.0f}" for t in row))
    durations = [clock[f"finished {i}"] - clock[f"started {i}"] for i in range(len(tasks))]
    print(f"generation ended at {generated:.0f} ms")
    print(
        f"total {total:.0f} ms with fan-out, against {generated:.0f} + {max(durations):.0f} = "
        f"{generated + max(durations):.0f} ms when waiting for the whole plan first "
        f"({generated + sum(durations):.0f} ms one step after another)"
    )


if __name__ == "__main__":
    asyncio.run(main())
