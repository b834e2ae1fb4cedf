"""response_format -> JSON Schema, schema checks, closing objects, violations."""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import jsonschema
import pytest
from pydantic import BaseModel, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from openbrace import schema as schema_module
from openbrace.exceptions import InvalidSchemaError
from openbrace.schema import check, first_violation, from_response_format, normalize, to_json_schema

BENCH = sorted(Path("/work/shared/data/jsonschemabench").glob("*.json"))


class Ticket(BaseModel):
    intent: Literal["billing", "technical"]
    steps: list[str]


class Movie(TypedDict):
    title: str
    year: int


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class GensonLike:
    """Anything with `to_json() -> str`, like genson's SchemaBuilder."""

    def to_json(self) -> str:
        return '{"type": "object", "properties": {"n": {"type": "integer"}}}'


def accepts(schema: dict[str, Any], good: Any, bad: Any) -> None:
    """The schema is valid and tells `good` from `bad`: it describes the type."""
    assert first_violation(good, schema) is None
    assert first_violation(bad, schema) is not None


@pytest.mark.parametrize(
    ("response_format", "good", "bad"),
    [
        (Ticket, {"intent": "billing", "steps": ["a"]}, {"intent": "sales", "steps": []}),
        (Movie, {"title": "Up", "year": 2009}, {"title": "Up"}),
        (Point, {"x": 1, "y": 2.5}, {"x": "1"}),
        (Color, "red", "green"),
        (Literal["a", "b"], "b", "c"),
        (Union[int, str], 3, 3.5),  # noqa: UP007 - the typing form is what we test
        (int | None, None, "x"),
        (Optional[Point], None, {"x": 1}),  # noqa: UP045
        (list[int], [1, 2], [1, "2"]),
        (dict[str, Point], {"p": {"x": 0, "y": 0}}, {"p": {"x": 0}}),
        (tuple[int, str], [1, "a"], ["a", 1]),
        (tuple[int, ...], [1, 2, 3], [1, None]),
        ({"type": "array", "items": {"type": "boolean"}}, [True], [1]),
        ('{"type": "string", "maxLength": 2}', "ab", "abc"),
        (GensonLike(), {"n": 1}, {"n": "1"}),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "null"}}},
            None,
            0,
        ),
    ],
)
def test_every_response_format_form_becomes_a_schema(response_format, good, bad):
    before = copy.deepcopy(response_format) if isinstance(response_format, dict) else None
    schema = to_json_schema(response_format)
    assert isinstance(schema, dict)
    accepts(schema, good, bad)
    if before is not None:
        assert response_format == before


def test_pydantic_types_give_pydantic_schemas():
    assert to_json_schema(Ticket) == Ticket.model_json_schema()
    assert to_json_schema(list[Point]) == TypeAdapter(list[Point]).json_schema()


def test_remembered_results_are_private_copies_and_still_checked():
    to_json_schema(Ticket)["properties"].clear()  # a caller mutating its result...
    assert to_json_schema(Ticket) == Ticket.model_json_schema()  # ...changes nothing here
    good = {"type": "object", "properties": {"a": {"type": "integer"}}}
    check(good)
    check(dict(reversed(list(good.items()))))  # remembered by content, any key order
    good["properties"]["a"]["type"] = "integr"
    with pytest.raises(InvalidSchemaError, match="/properties/a/type"):
        check(good)
    with pytest.raises(InvalidSchemaError, match="must be JSON data"):
        check({"minimum": float("nan")})


@pytest.mark.parametrize(
    ("response_format", "message"),
    [
        ([{"type": "string"}], "a list is not a schema"),
        (len, "a function is not a schema"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (object(), "neither a JSON Schema nor a type"),
        ({"type": "text"}, "has no schema"),
    ],
)
def test_things_that_are_not_schemas_are_refused_clearly(response_format, message):
    with pytest.raises(InvalidSchemaError, match=message):
        to_json_schema(response_format)


def test_to_json_must_return_a_string():
    class Bad:
        def to_json(self) -> dict[str, Any]:
            return {}

    with pytest.raises(InvalidSchemaError, match=r"Bad.to_json\(\) must return a JSON string"):
        to_json_schema(Bad())


@pytest.mark.parametrize(
    ("schema", "keyword", "pointer"),
    [
        (
            {"type": "object", "properties": {"age": {"type": "integr"}}},
            "type",
            "/properties/age/type",
        ),
        ({"type": "array", "items": {"minItems": -1}}, "minItems", "/items/minItems"),
        ({"required": "name"}, "required", "/required"),
        ({"anyOf": []}, "anyOf", "/anyOf"),
        ({"properties": {"a~b/c": {"enum": 3}}}, "enum", "/properties/a~0b~1c/enum"),
        ({"$defs": {"A": {"type": 1}}, "$ref": "#/$defs/A"}, "type", "/$defs/A/type"),
        ({"$ref": "#/$defs/Missing"}, "$ref", "/$ref"),
        (
            {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"$ref": "#/x"}]},
            "$ref",
            "/items/0/$ref",
        ),
        ({"$schema": "https://example.com/my-draft"}, "$schema", "/$schema"),
        # Refused up front rather than failing once the output is checked:
        ({"type": "string", "pattern": "(unclosed"}, "pattern", "/pattern"),
        ({"patternProperties": {"(": {}}}, "patternProperties", "/patternProperties"),
        ({"$ref": "https://example.invalid/s.json"}, "$ref", "/$ref"),  # no fetching
        ({"$ref": "#"}, "$ref", "/$ref"),  # a loop that never consumes JSON
        ({"allOf": [{"anyOf": [{"$ref": "#"}]}]}, "$ref", "/allOf/0/anyOf/0/$ref"),
        (
            {
                "$ref": "#/$defs/a",
                "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
            },
            "$ref",
            "/$defs/a/$ref",
        ),
    ],
)
def test_invalid_schemas_name_the_keyword_and_its_pointer(schema, keyword, pointer):
    with pytest.raises(InvalidSchemaError) as info:
        check(schema)
    assert (info.value.keyword, info.value.pointer) == (keyword, pointer)
    assert keyword in str(info.value) and pointer in str(info.value)


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}},  # a tree
        {"$defs": {"a": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/b"}]},
                   "b": {"properties": {"next": {"$ref": "#/$defs/a"}}}},
         "$ref": "#/$defs/a"},  # a linked list
    ],
)  # fmt: skip
def test_recursion_through_a_smaller_piece_of_json_is_fine(schema):
    check(schema)


def test_the_draft_named_by_dollar_schema_is_used():
    # Draft 4 allows a boolean exclusiveMaximum; Draft 2020-12 requires a number.
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 3,
              "exclusiveMaximum": True}  # fmt: skip
    check(draft4)
    assert first_violation(3, draft4) is not None
    with pytest.raises(InvalidSchemaError, match="exclusiveMaximum"):
        check({k: v for k, v in draft4.items() if k != "$schema"})


def test_from_response_format_reads_the_openai_body():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert from_response_format(None) is None
    assert from_response_format({"type": "text"}) is None
    assert from_response_format({"type": "json_object"}) == {}
    rf = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}
    assert from_response_format(rf) == schema
    with pytest.raises(InvalidSchemaError, match="json_schema', 'json_object' or 'text'"):
        from_response_format({"type": "xml"})
    with pytest.raises(InvalidSchemaError, match="json_schema must be an object"):
        from_response_format({"type": "json_schema"})
    with pytest.raises(InvalidSchemaError) as info:
        from_response_format({"type": "json_schema", "json_schema": {"schema": {"type": 5}}})
    assert info.value.pointer == "/type"


# --- normalize -----------------------------------------------------------------------


def test_normalize_closes_plain_objects_everywhere():
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "list": {"type": "array", "items": {"properties": {"y": {}}}},
            "tuple": {"prefixItems": [{"type": "object", "properties": {"z": {}}}]},
            "map": {"type": "object", "additionalProperties": {"properties": {"w": {}}}},
            "either": {"anyOf": [{"properties": {"p": {}}}, {"type": "null"}]},
            "free": {"type": "object"},
            "open": {"type": "object", "properties": {"q": {}}, "additionalProperties": True},
            "const": {"const": {"properties": {"not": "a schema"}}},
        },
        "$defs": {"D": {"type": "object", "properties": {"d": {}}}},
        "definitions": {"E": {"type": ["object", "null"], "properties": {"e": {}}}},
    }
    before = copy.deepcopy(schema)
    out = normalize(schema)
    assert schema == before  # the input is untouched
    closed = [
        out,
        out["properties"]["a"],
        out["properties"]["list"]["items"],
        out["properties"]["tuple"]["prefixItems"][0],
        out["properties"]["map"]["additionalProperties"],
        out["properties"]["either"]["anyOf"][0],
        out["$defs"]["D"],
        out["definitions"]["E"],
    ]
    assert all(node["additionalProperties"] is False for node in closed)
    assert "additionalProperties" not in out["properties"]["free"]
    assert out["properties"]["open"]["additionalProperties"] is True
    assert out["properties"]["const"] == schema["properties"]["const"]
    assert normalize(out) == out  # idempotent


def test_normalize_leaves_composed_objects_open():
    base = {"type": "object", "properties": {"id": {"type": "integer"}}}
    schema = {
        "$defs": {"Base": base, "Alone": {"type": "object", "properties": {"a": {}}}},
        "properties": {
            "derived": {"allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"name": {}}}]},
            "alone": {"$ref": "#/$defs/Alone"},
            "negated": {"not": {"type": "object", "properties": {"x": {}}}},
            "cond": {"if": {"properties": {"k": {}}}, "then": {"properties": {"v": {}}}},
        },
    }
    out = normalize(schema)
    assert "additionalProperties" not in out["$defs"]["Base"]  # an allOf member via $ref
    assert out["$defs"]["Alone"]["additionalProperties"] is False  # referenced alone
    assert "additionalProperties" not in out["properties"]["derived"]["allOf"][1]
    assert "additionalProperties" not in out["properties"]["negated"]["not"]
    assert "additionalProperties" not in out["properties"]["cond"]["if"]
    assert "additionalProperties" not in out["properties"]["cond"]["then"]
    derived = {"derived": {"id": 1, "name": "n"}}
    assert first_violation(derived, out) is None  # closing Base would reject this
    assert first_violation({"negated": {"x": 1, "extra": 2}}, out) is not None


def test_alternatives_are_closed_one_by_one():
    schema = {
        "type": "object",
        "properties": {
            "pet": {"anyOf": [{"properties": {"bark": {}}}, {"properties": {"meow": {}}}]}
        },
    }
    out = normalize(schema)
    assert first_violation({"pet": {"bark": 1}}, out) is None
    assert first_violation({"pet": {"meow": 1}}, out) is None
    assert first_violation({"pet": {"bark": 1, "meow": 1}}, schema) is None
    assert first_violation({"pet": {"bark": 1, "meow": 1}}, out) is not None


# --- the subschema walker ---------------------------------------------------------------

_SELF = ({"$ref": "#"}, {"$recursiveRef": "#"}, {"$dynamicRef": "#meta"})


def _holds(meta: dict[str, Any], value: Any) -> set[str]:
    """What a meta-schema says a keyword's value is: a schema, a list or a map of them."""
    if not isinstance(value, dict):
        return set()
    if {k: v for k, v in value.items() if k.startswith("$") and k != "$comment"} in _SELF:
        return {"schema"}
    kinds: set[str] = set()
    ref = value.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target = meta
        for token in ref[2:].split("/"):
            target = target[token]
        kinds |= _holds(meta, target)
    for member in value.get("anyOf", []):
        kinds |= _holds(meta, member)
    if value.get("type") == "array" and "schema" in _holds(meta, value.get("items")):
        kinds.add("list")
    if value.get("type") == "object" and "schema" in _holds(
        meta, value.get("additionalProperties")
    ):
        kinds.add("map")
    return kinds


def test_the_walker_knows_every_subschema_keyword_of_drafts_4_to_2020_12():
    """The keyword tables are what the meta-schemas themselves say holds subschemas."""
    from jsonschema_specifications import REGISTRY

    found: dict[str, set[str]] = {"schema": set(), "list": set(), "map": set()}
    drafts = [uri for uri in REGISTRY if "draft-03" not in uri]
    assert len(drafts) >= 15  # 4, 6, 7, and 2019-09 and 2020-12 with their vocabularies
    for uri in drafts:
        meta = REGISTRY.contents(uri)
        for keyword, value in meta.get("properties", {}).items():
            for kind in _holds(meta, value):
                found[kind].add(keyword)
    assert found["schema"] == schema_module.ONE_SCHEMA
    assert found["list"] == schema_module.SCHEMA_LIST
    assert found["map"] == schema_module.SCHEMA_MAP


def test_the_walker_visits_subschemas_in_document_order_and_skips_instances():
    schema = {
        "properties": {"a/b": {"items": [{"type": "integer"}, True]}, "enum": {}},
        "const": {"properties": {"x": {}}},
        "dependencies": {"c": ["a/b"], "d": {"contentSchema": {"not": {}}}},
        "$defs": {"e": {"anyOf": [{"$ref": "#"}]}},
    }
    assert [pointer for pointer, _ in schema_module.subschemas(schema)] == [
        "",
        "/properties/a~1b",
        "/properties/a~1b/items/0",
        "/properties/enum",
        "/dependencies/d",
        "/dependencies/d/contentSchema",
        "/dependencies/d/contentSchema/not",
        "/$defs/e",
        "/$defs/e/anyOf/0",
    ]
    assert [keyword for keyword, _, _ in schema_module.children(schema)] == [
        "properties",
        "properties",
        "dependencies",
        "$defs",
    ]
    deep: dict[str, Any] = {}
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = {"not": deep}
    assert len(list(schema_module.subschemas(deep))) == 5001


def test_normalize_closes_objects_in_every_subschema_the_walker_sees():
    closable = {"properties": {"x": {}}}
    schema = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "contentSchema": closable},
            "old": {"type": "object", "items": [closable], "additionalItems": closable},
        },
    }
    out = normalize(schema)
    assert out["properties"]["text"]["contentSchema"]["additionalProperties"] is False
    assert out["properties"]["old"]["items"][0]["additionalProperties"] is False
    assert out["properties"]["old"]["additionalItems"]["additionalProperties"] is False


# --- every real-world schema of jsonschemabench ----------------------------------------


def bench_cases() -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in BENCH]


def _declared(schema: Any) -> tuple[set[str], list[str]]:
    """Every property name declared anywhere, and every patternProperties regex."""
    names: set[str] = set()
    patterns: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                names.update(node["properties"])
            if isinstance(node.get("patternProperties"), dict):
                patterns.extend(node["patternProperties"])
            for key, value in node.items():
                if key not in ("enum", "const", "default", "examples"):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return names, patterns


def _keys_declared(instance: Any, names: set[str], patterns: list[str]) -> bool:
    if isinstance(instance, dict):
        return all(
            (key in names or any(re.search(p, key) for p in patterns))
            and _keys_declared(value, names, patterns)
            for key, value in instance.items()
        )
    if isinstance(instance, list):
        return all(_keys_declared(value, names, patterns) for value in instance)
    return True


def _only_closures_added(original: Any, normalized: Any) -> bool:
    """`normalized` is `original` plus `additionalProperties: false` in some objects."""
    if isinstance(original, dict) and isinstance(normalized, dict):
        added = normalized.keys() - original.keys()
        if added - {"additionalProperties"} or original.keys() - normalized.keys():
            return False
        if added and normalized["additionalProperties"] is not False:
            return False
        return all(_only_closures_added(original[k], normalized[k]) for k in original)
    if isinstance(original, list) and isinstance(normalized, list):
        return len(original) == len(normalized) and all(
            _only_closures_added(a, b) for a, b in zip(original, normalized, strict=True)
        )
    return original == normalized and type(original) is type(normalized)


@pytest.mark.parametrize("path", bench_cases())
def test_jsonschemabench_schema(path):
    """Accepted or refused with keyword+pointer; closing only ever removes undeclared keys.

    The honest properties of `normalize` on real schemas and their test instances:
    1. it only adds `additionalProperties: false` (structure), never mutates its input;
    2. it never accepts more: valid under the normalised schema => valid under the original;
    3. it only rejects undeclared keys: an instance valid under the original whose object
       keys are all declared somewhere in the schema stays valid. Schemas with
       `anyOf`/`oneOf` are exempt: each alternative is closed on its own, by design, so
       an object mixing keys of two open alternatives is rejected (see
       `test_alternatives_are_closed_one_by_one`).
    """
    case = json.loads(path.read_text())
    original = case["schema"]
    pristine = copy.deepcopy(original)
    try:
        schema = to_json_schema(original)
    except InvalidSchemaError as exc:
        assert exc.keyword and exc.pointer is not None, exc
        return
    closed = normalize(schema)
    assert original == pristine
    assert _only_closures_added(schema, closed)
    check(closed)
    assert normalize(closed) == closed
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    before, after = validator(schema), validator(closed)
    names, patterns = _declared(schema)
    alternatives = '"anyOf"' in json.dumps(schema) or '"oneOf"' in json.dumps(schema)
    for test in case["tests"]:
        instance = test["data"]
        if after.is_valid(instance):
            assert before.is_valid(instance)  # 2
        elif before.is_valid(instance) and not alternatives:
            assert not _keys_declared(instance, names, patterns), instance  # 3


def test_jsonschemabench_is_not_vacuous():
    """Most bench schemas are accepted, many get closed, and valid instances survive."""
    accepted = closed_some = kept_valid = valid = 0
    for path in BENCH:
        case = json.loads(path.read_text())
        try:
            schema = to_json_schema(case["schema"])
        except InvalidSchemaError:
            continue
        accepted += 1
        closed = normalize(schema)
        closed_some += closed != schema
        validator = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        kept_valid += sum(
            1 for t in case["tests"] if t["valid"] and validator(closed).is_valid(t["data"])
        )
        valid += sum(1 for t in case["tests"] if t["valid"])
    assert accepted > 0.9 * len(BENCH)
    assert closed_some > 0.5 * accepted
    assert kept_valid > 0.8 * valid


@pytest.mark.parametrize(
    ("type_", "hint"),
    [
        ("strin", "; did you mean 'string'?"),
        ("integr", "; did you mean 'integer'?"),
        (["Boolean", "null"], "; did you mean 'boolean'?"),
        ("banana", ""),  # nothing close: no guess
    ],
)
def test_a_misspelt_type_name_gets_a_suggestion(type_, hint):
    with pytest.raises(InvalidSchemaError) as info:
        check({"type": "object", "properties": {"age": {"type": type_}}})
    message = info.value.message
    assert message.endswith(hint) and message.count("did you mean") == bool(hint), message
