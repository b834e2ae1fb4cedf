"""Ask a human to approve a risky action before the reply is used.

The schema puts `action` before `reply`, so the decision arrives first. A
high-risk action waits for a human (on stdin, or `--yes` / `--no` for scripted
runs). Declining stops the stream there: the generation is cancelled and the
reply is never sent.

    python examples/approval.py          # asks on stdin
    python examples/approval.py --no     # decline without asking
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Literal

from pydantic import BaseModel, Field

import openbrace

MODEL = os.environ.get("OPENBRACE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
HIGH_RISK = {"refund", "cancel_subscription"}
# A fixed seed makes the demo repeatable: the same decision every run. (A 135M model
# reads this request as a refund most of the time, not every time.)
SEED = 1

REQUEST = (
    "Decide what to do about this customer request and write the reply to the customer.\n\n"
    "Customer: I was billed for a year I never used. Refund me the full amount now."
)


class Decision(BaseModel):
    action: Literal["refund", "cancel_subscription", "send_docs", "escalate"]
    reason: str = Field(max_length=100)
    reply: str = Field(max_length=160)


async def ask(question: str, preset: bool | None) -> bool:
    if preset is not None:
        print(f"{question} [y/N] {'y' if preset else 'n'} (from the command line)", flush=True)
        return preset
    # input() blocks, so run it in a thread: the event loop keeps serving the stream.
    try:
        answer = await asyncio.to_thread(input, f"{question} [y/N] ")
    except EOFError:  # stdin closed or empty (`< /dev/null`): no answer is the default, N
        print("n (no answer on stdin)", flush=True)
        return False
    return answer.strip().lower() in {"y", "yes"}


def send(reply: str) -> None:
    """Stands in for emailing the customer."""
    print(f"sent reply: {reply!r}", flush=True)


async def main(preset: bool | None) -> None:
    async with openbrace.AsyncClient() as client:
        start = time.perf_counter()
        async with client.stream(
            model=MODEL,
            input=REQUEST,
            response_format=Decision,
            max_tokens=320,
            seed=SEED,
        ) as events:
            async for event in events:
                ms = (time.perf_counter() - start) * 1000
                if event.field == "action":
                    risky = event.value in HIGH_RISK
                    print(f"{ms:7.0f} ms  action={event.value} ({'high' if risky else 'low'} risk)")
                    if risky and not await ask(f"approve {event.value!r}?", preset):
                        # Leaving the stream closes it: the model stops writing the reply.
                        print("declined: generation stopped, no reply sent")
                        return
                elif event.field == "reason":
                    print(f"{ms:7.0f} ms  reason: {event.value!r}")
                elif event.field == "reply":
                    print(f"{ms:7.0f} ms  reply ready")
                    send(event.value)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--yes", dest="preset", action="store_true", default=None, help="approve without asking"
    )
    choice.add_argument("--no", dest="preset", action="store_false", help="decline without asking")
    asyncio.run(main(parser.parse_args().preset))
