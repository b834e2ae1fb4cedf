"""The chat as the model's template sees it: roles, text, and the optional instruction.

Rendering the template and tokenizing belong to the model (`llamacpp.py`); this
module only decides what the messages say, so it runs without one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["chat", "content_text", "instruction"]


def instruction(schema: dict[str, Any] | None) -> str | None:
    """The system instruction added by `instruct=True`: JSON, fields named in order.

    None for free text. For an object schema it lists the properties in schema
    order with their allowed values when they are an enum, e.g. `Answer in JSON
    with the fields intent (one of: billing, bug), reply.`
    """
    if schema is None:
        return None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return "Answer in JSON."
    fields = ", ".join(_describe(name, sub) for name, sub in properties.items())
    return f"Answer in JSON with the fields {fields}."


def chat(messages: list[dict[str, Any]], system: str | None = None) -> list[dict[str, str]]:
    """OpenAI chat messages as `{"role", "content"}` strings for a chat template.

    `system` (the instruction) joins the first system message, or becomes one.
    """
    turns = [
        {"role": _role(m.get("role")), "content": content_text(m.get("content"))} for m in messages
    ]
    if system:
        if turns and turns[0]["role"] == "system":
            turns[0] = {"role": "system", "content": f"{turns[0]['content']}\n\n{system}"}
        else:
            turns.insert(0, {"role": "system", "content": system})
    return turns


def _describe(name: str, schema: Any) -> str:
    values = schema.get("enum") if isinstance(schema, dict) else None
    if isinstance(values, list) and values and len(values) <= 12:
        return f"{name} (one of: {', '.join(str(v) for v in values)})"
    return name


def _role(role: Any) -> str:
    # OpenAI's newer "developer" role is a system message to chat templates.
    return "system" if role == "developer" else str(role or "user")


def content_text(content: Any) -> str:
    """A message's text: a string, or OpenAI content parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)
