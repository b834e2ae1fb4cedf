"""Route a support ticket the moment its `intent` lands, while `reply` is still being written.

The schema puts `intent` and `urgency` before `reply`, so the model writes them
first, and each arrives as its own op. Routing starts on `intent` (and a
`critical` urgency pages the on-call engineer) long before the reply is complete:
the elapsed times show the gap.

    python examples/early_routing.py
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Literal

from pydantic import BaseModel, Field

import openbrace

MODEL = os.environ.get("OPENBRACE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")

TICKET = (
    "Classify this support ticket and write a short, polite reply.\n\n"
    "Ticket from Jane: I was charged twice for my March invoice and now my card is "
    "over its limit. Please refund the duplicate charge today!"
)

QUEUES = {
    "billing": "finance desk",
    "technical": "engineering support",
    "account": "account team",
    "cancellation": "retention team",
    "other": "front desk",
}


class Ticket(BaseModel):
    intent: Literal["billing", "technical", "account", "cancellation", "other"]
    urgency: Literal["low", "medium", "high", "critical"]
    reply: str = Field(max_length=200)


async def notify(team: str, started: float) -> None:
    """Stands in for a call to your ticketing or paging system."""
    await asyncio.sleep(0.05)
    print(f"{_ms(started):7.0f} ms  {team} acknowledged", flush=True)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def main() -> None:
    tasks: list[asyncio.Task[None]] = []
    routed_at = reply_at = 0.0
    async with openbrace.AsyncClient() as client:
        start = time.perf_counter()
        async for event in client.stream(
            model=MODEL, input=TICKET, response_format=Ticket, max_tokens=320
        ):
            if event.field == "intent":
                routed_at = _ms(start)
                team = QUEUES[event.value]
                print(f"{routed_at:7.0f} ms  intent={event.value}: routing to {team}", flush=True)
                tasks.append(asyncio.create_task(notify(team, start)))
            elif event.field == "urgency":
                print(f"{_ms(start):7.0f} ms  urgency={event.value}", flush=True)
                if event.value == "critical":
                    tasks.append(asyncio.create_task(notify("on-call engineer", start)))
            elif event.field == "reply":
                reply_at = _ms(start)
                print(f"{reply_at:7.0f} ms  reply complete: {event.value!r}", flush=True)
        await asyncio.gather(*tasks)
    print(f"routing started {reply_at - routed_at:.0f} ms before the reply was complete")


if __name__ == "__main__":
    asyncio.run(main())
