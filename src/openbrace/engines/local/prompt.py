"""The chat as the model's template sees it: roles, text, and the optional instruction.

Rendering the template and tokenizing belong to the model (`llamacpp.py`); this
module only decides what the messages say, so it runs without one.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FAMILY_INSTRUCT",
    "INSTRUCT_LEVELS",
    "chat",
    "content_text",
    "family_instruct",
    "instruct_level",
    "instruction",
    "schema_instruction",
]

# How much of the schema the model is told, in a system message:
#   "none"    nothing (the grammar alone enforces the schema);
#   "fields"  the field names in order, enum values listed (`instruction`);
#   "schema"  each field with its type, enum values, limits and description, as
#             OpenAI does for structured outputs (`schema_instruction`).
INSTRUCT_LEVELS = ("none", "fields", "schema")


# The default level per model family (the GGUF's `general.basename`), from
# benchmarks/quality.py (RESULTS.md, "Answer quality"). Rule: the level with the best
# mean of intent, urgency and extraction accuracy, if it beats "none" by 5 points or
# more (about 2 of the 40 tickets); below that it is noise and the prompt stays as
# the user wrote it. smollm2: "fields" led by 3 points on the shipped Q4_1 (38% vs
# 35%) and 8 on a Q4_K_M requantization, with intents no better (30% vs 33% on Q4_1)
# but replies looping less (sane 72% vs 62%): within noise on the shipped model, so
# "none"; ask for "fields" where the reply matters more than the labels. gemma-3:
# "fields", 28% vs 17% on the only Gemma 3 GGUF obtainable here (270M base weights,
# no chat template; its instruct models were not measured). Unmeasured families get
# "none".
FAMILY_INSTRUCT: dict[str, str] = {"smollm2": "none", "gemma-3": "fields"}


def family_instruct(family: str) -> str:
    """The default instruct level for a model family (see FAMILY_INSTRUCT)."""
    return FAMILY_INSTRUCT.get(family.lower(), "none")


def instruct_level(value: object) -> str | None:
    """`value` as one of INSTRUCT_LEVELS (True is "fields", False "none"); None if invalid."""
    if isinstance(value, bool):
        return "fields" if value else "none"
    return value if isinstance(value, str) and value in INSTRUCT_LEVELS else None


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


def schema_instruction(schema: dict[str, Any] | None) -> str | None:
    """The `instruct="schema"` instruction: every field with its type, values and description.

    For example `- intent (string, one of: billing, bug): what the ticket is about.`
    """
    if schema is None:
        return None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return "Answer in JSON."
    lines = ["Answer with one JSON object with these fields, in this order:"]
    lines += [f"- {_detail(name, sub)}" for name, sub in properties.items()]
    return "\n".join(lines)


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


def _detail(name: str, schema: Any) -> str:
    if not isinstance(schema, dict):
        return name
    facts = [str(schema["type"])] if isinstance(schema.get("type"), str) else []
    if isinstance(schema.get("enum"), list):
        facts.append("one of: " + ", ".join(str(v) for v in schema["enum"]))
    if isinstance(schema.get("maxLength"), int):
        facts.append(f"at most {schema['maxLength']} characters")
    if isinstance(schema.get("format"), str):
        facts.append(f"format {schema['format']}")
    text = f"{name} ({'; '.join(facts)})" if facts else name
    description = schema.get("description")
    return f"{text}: {description}" if isinstance(description, str) and description else text
