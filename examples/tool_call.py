"""Start a tool's work on its first argument, before the model has finished the call.

The model calls `lookup_order(order_id, shipping, note)`. The arguments stream as
patch ops in the tool's schema order, so `order_id` lands first: the lookup starts
right then, and runs while the model is still writing `shipping` and `note`. When
the call is complete, its result is already (nearly) there. The elapsed times show
the head start.

    python examples/tool_call.py
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Literal

from pydantic import BaseModel, Field

import openbrace

MODEL = os.environ.get("OPENBRACE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")

REQUEST = "My order A-1742 has not arrived and I want it shipped express. Look it up."


class lookup_order(BaseModel):  # a tool is named like the function it calls
    """Look up an order: where it is and how it ships."""

    order_id: str = Field(pattern=r"^[A-Z]-[0-9]{3,5}$")
    shipping: Literal["standard", "express"]
    note: str = Field(max_length=60)


async def fetch_order(order_id: str, started: float) -> dict[str, str]:
    """Stands in for a database or API call (a slow one)."""
    print(f"{_ms(started):7.0f} ms  lookup of {order_id} started", flush=True)
    await asyncio.sleep(0.3)
    print(f"{_ms(started):7.0f} ms  lookup of {order_id} finished", flush=True)
    return {"order_id": order_id, "status": "in transit", "carrier": "DHL"}


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def main() -> None:
    lookup: asyncio.Task[dict[str, str]] | None = None
    started_at = 0.0
    async with openbrace.AsyncClient() as client:
        start = time.perf_counter()
        async for event in client.stream(
            model=MODEL,
            input=REQUEST,
            tools=[lookup_order],
            tool_choice=lookup_order,
            max_tokens=120,
        ):
            if event.field.endswith("/name"):
                print(f"{_ms(start):7.0f} ms  call {event.call}: {event.tool}(...)", flush=True)
            elif event.argument == "order_id":  # the first argument: act on it now
                print(f"{_ms(start):7.0f} ms  order_id={event.value}", flush=True)
                started_at = _ms(start)
                lookup = asyncio.create_task(fetch_order(event.value, start))
            elif event.argument:
                print(f"{_ms(start):7.0f} ms  {event.argument}={event.value!r}", flush=True)
        complete = _ms(start)
        print(f"{complete:7.0f} ms  call complete", flush=True)
        if lookup is not None:
            order = await lookup
            print(f"{_ms(start):7.0f} ms  result: {order}")
            print(f"the lookup started {complete - started_at:.0f} ms before the call was complete")


if __name__ == "__main__":
    asyncio.run(main())
