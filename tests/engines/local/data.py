"""A schema and prompt shared by the embedded engine's tests."""

from __future__ import annotations

from typing import Any

__all__ = ["TICKET", "TICKET_PROMPT"]

TICKET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"enum": ["billing", "technical", "account", "other"]},
        "urgency": {"enum": ["low", "medium", "high"]},
        "reply": {"type": "string", "maxLength": 80},
    },
    "required": ["intent", "urgency", "reply"],
}
TICKET_PROMPT = "I was charged twice for my subscription this month. Please refund me!"
