"""JSON Schema -> llguidance matcher with a byte tokenizer (no model): cache, refusals."""

from __future__ import annotations

import json
from typing import Any

import llguidance
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbrace.engines.local.grammar import SchemaCompiler
from openbrace.exceptions import InvalidSchemaError
from openbrace.pointer import escape
from openbrace.schema import subschemas

from .data import TICKET


def _schema_trees(depth: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.sampled_from([{"type": "string"}, {"type": "integer"}, {"enum": ["a", "b"]}])
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.dictionaries(
                st.text("ab/~", min_size=1, max_size=3), inner, min_size=1, max_size=3
            ).map(lambda p: {"type": "object", "properties": p}),
            inner.map(lambda s: {"type": "array", "items": s}),
            st.lists(inner, min_size=1, max_size=2).map(lambda xs: {"anyOf": xs}),
        ),
        max_leaves=6,
    )


@given(_schema_trees(), st.data())
@settings(max_examples=60, deadline=None)
def test_refusal_points_at_the_unsupported_keyword(
    schema: dict[str, Any], data: st.DataObject
) -> None:
    schema = json.loads(json.dumps(schema))  # hypothesis may share sub-objects: own them
    places = [pointer for pointer, _ in subschemas(schema)]
    where = data.draw(st.sampled_from(places))
    target = schema
    for token in [t.replace("~1", "/").replace("~0", "~") for t in where.split("/")[1:]]:
        target = target[int(token)] if isinstance(target, list) else target[token]
    target["not"] = {"type": "null"}
    with pytest.raises(InvalidSchemaError) as caught:
        SchemaCompiler(llguidance.LLTokenizer("byte")).matcher(schema)
    assert caught.value.keyword == "not"
    assert caught.value.pointer == f"{where}/{escape('not')}"


def test_schemas_compile_once() -> None:
    compiler = SchemaCompiler(llguidance.LLTokenizer("byte"))
    first = compiler.matcher(TICKET)
    second = compiler.matcher(json.loads(json.dumps(TICKET)))
    assert compiler.compiled == 1
    assert first is not second  # each request gets its own matcher state
    reordered = {**TICKET, "properties": dict(reversed(TICKET["properties"].items()))}
    compiler.matcher(reordered)
    assert compiler.compiled == 2, "property order is part of the schema"


@pytest.mark.parametrize(
    ("schema", "keyword", "pointer"),
    [
        (  # llguidance does not enforce `contentSchema`: what is inside is not blamed
            {
                "type": "object",
                "properties": {
                    "a": {"type": "string", "contentSchema": {"not": {}}},
                    "b": {"not": {}},
                },
            },
            "not",
            "/properties/b/not",
        ),
        (
            {"type": "object", "properties": {"a": {}}, "dependencies": {"a": {"not": {}}}},
            "dependencies",
            "/dependencies",
        ),
        (  # draft 4's tuple form of `items`
            {"type": "array", "items": [{"type": "integer"}, {"format": "cidr"}]},
            "format",
            "/items/1/format",
        ),
    ],
)
def test_refusals_point_into_every_kind_of_subschema(
    schema: dict[str, Any], keyword: str, pointer: str
) -> None:
    with pytest.raises(InvalidSchemaError) as caught:
        SchemaCompiler(llguidance.LLTokenizer("byte")).matcher(schema)
    assert (caught.value.keyword, caught.value.pointer) == (keyword, pointer)
