"""What the chat template is given: roles, message text, the `instruct` instruction."""

from __future__ import annotations

from openbrace.engines.local.prompt import (
    FAMILY_INSTRUCT,
    chat,
    family_instruct,
    instruct_level,
    instruction,
    schema_instruction,
)

from .data import TICKET


def test_instruction_names_fields_in_order() -> None:
    text = instruction(TICKET)
    assert text is not None
    assert text.index("intent") < text.index("urgency") < text.index("reply")
    assert "billing" in text
    assert instruction(None) is None


def test_chat_gives_the_template_roles_and_plain_text() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"text": "there"}, "x"]},
        {"role": "assistant", "content": None},
        {"content": 42},
    ]
    assert chat(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "42"},
    ]


def test_the_instruction_joins_the_system_message_or_opens_the_chat() -> None:
    user = {"role": "user", "content": "Hi"}
    assert chat([{"role": "system", "content": "Be brief."}, user], "Answer in JSON.") == [
        {"role": "system", "content": "Be brief.\n\nAnswer in JSON."},
        user,
    ]
    assert chat([user], "Answer in JSON.") == [
        {"role": "system", "content": "Answer in JSON."},
        user,
    ]
    assert chat([user], None) == [user]


def test_schema_instruction_tells_types_values_limits_and_descriptions() -> None:
    schema = {
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": ["billing", "bug"], "description": "the topic"},
            "reply": {"type": "string", "maxLength": 160},
        },
    }
    text = schema_instruction(schema)
    assert text is not None
    lines = text.splitlines()
    assert lines[1] == "- intent (string; one of: billing, bug): the topic"
    assert lines[2] == "- reply (string; at most 160 characters)"
    assert schema_instruction(None) is None
    assert schema_instruction({"type": "string"}) == "Answer in JSON."


def test_instruct_levels_and_family_defaults() -> None:
    assert [instruct_level(v) for v in (True, False, "none", "fields", "schema")] == [
        "fields",
        "none",
        "none",
        "fields",
        "schema",
    ]
    assert instruct_level("yes") is None and instruct_level(1) is None
    assert family_instruct("SmolLM2") == FAMILY_INSTRUCT["smollm2"]
    assert family_instruct("never-measured") == "none"
