"""Output validation: why a document breaks its schema, with patterns on RE2."""

from __future__ import annotations

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace.exceptions import InvalidSchemaError
from openbrace.validation import first_violation, one_line, validator_for


def test_first_violation_is_one_line_with_the_instance_path():
    schema = {"type": "object", "properties": {"steps": {"type": "array",
              "items": {"type": "string"}}}}  # fmt: skip
    assert first_violation({"steps": ["a", 5]}, schema) == "at /steps/1: 5 is not of type 'string'"
    assert first_violation({"steps": []}, schema) is None
    long = first_violation("x\ny" * 500, {"type": "integer"})
    assert long is not None and "\n" not in long and len(long) < 400


# --- patterns on RE2 ------------------------------------------------------------------

PATTERNS = [r"^[a-z]+$", r"^\d{3}-\d{4}$", r"[A-Z]", r"^(foo|bar)?baz$", r"^\S+@\S+\.\S+$",
            r"^[^/]+$", r"^(a+)+$", r"^(a|aa)+$", r"^\w+$", r"ab|cd", r"^$"]  # fmt: skip


@settings(max_examples=200)
@given(
    st.sampled_from(PATTERNS),
    st.text(alphabet="abcdfoorzAZ019-@./ _", max_size=12),  # ASCII: see below
)
def test_patterns_judge_like_jsonschema(pattern, text):
    r"""RE2 gives jsonschema's verdicts (on ASCII: Python's `\d`/`\w` are Unicode-aware
    where ECMA-262's, and RE2's, are ASCII-only)."""
    schemas = [
        {"type": "string", "pattern": pattern},
        {"type": "object", "patternProperties": {pattern: {"type": "integer"}}},
        {"patternProperties": {pattern: {}}, "additionalProperties": False},
    ]
    for schema, instance in zip(schemas, [text, {text: "x"}, {text: 1}], strict=True):
        expected = jsonschema.Draft202012Validator(schema).is_valid(instance)
        assert (first_violation(instance, schema) is None) == expected


def test_backtracking_patterns_run_on_re2():
    """`^(a+)+$` on RE2: linear time, so a hostile schema cannot stall the server."""
    import re

    from openbrace.validation import _regex

    assert type(_regex("^(a+)+$")).__module__.startswith("re2")
    # Python's `re` would need about 2**5000 steps here: finishing at all is the proof.
    assert first_violation("a" * 5000 + "!", {"pattern": "^(a+)+$"}) is not None
    assert isinstance(_regex("(?=a)ab"), re.Pattern)  # lookarounds: only `re` has them
    assert first_violation("ab", {"pattern": "(?=a)ab"}) is None
    with pytest.raises(InvalidSchemaError, match="not a valid regular expression"):
        first_violation("x", {"pattern": "(unclosed"})


# --- drafts and messages --------------------------------------------------------------


def test_validator_for_picks_the_draft_named_by_dollar_schema():
    draft7 = "http://json-schema.org/draft-07/schema#"
    assert validator_for({}) is jsonschema.Draft202012Validator
    assert validator_for({"$schema": "http://json-schema.org/schema#"}) is (
        jsonschema.Draft202012Validator  # "the latest draft", seen in the wild
    )
    assert validator_for({"$schema": draft7}) is jsonschema.Draft7Validator
    with pytest.raises(InvalidSchemaError, match="unknown meta-schema") as info:
        validator_for({"$schema": "http://example.com/my-draft"})
    assert (info.value.pointer, info.value.keyword) == ("/$schema", "$schema")


@given(st.text(), st.integers(min_value=4, max_value=400))
def test_one_line_has_no_line_breaks_and_keeps_to_the_limit(message, limit):
    line = one_line(message, limit)
    assert not any(c.isspace() and c != " " for c in line) and "  " not in line
    assert len(line) <= limit
    whole = " ".join(message.split())
    assert line == whole if len(whole) <= limit else line == whole[: limit - 3] + "..."
