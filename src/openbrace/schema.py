"""From whatever a user passes as `response_format` to a checked JSON Schema dict.

- `to_json_schema(response_format)`: a Pydantic model, TypedDict, dataclass, Enum,
  `Literal`/`Union`/`Optional`, typed containers (`list[T]`, `dict[K, V]`,
  `tuple[...]`) through pydantic's `TypeAdapter`; a JSON Schema as a dict or a JSON
  string; any object with `to_json() -> str` (a genson `SchemaBuilder`, ...).
- `from_response_format(body_rf)`: the `response_format` of an OpenAI request body.
- `subschemas(schema)`, `children(node)`: the one walker over subschemas, used by
  everything that visits them.
- `check(schema)`: the schema itself is valid under the draft its `$schema` names
  (Draft 2020-12 when absent) and its local `$ref`s resolve; otherwise
  `InvalidSchemaError` naming the keyword and the JSON Pointer of the place.
- `normalize(schema)`: closes objects, as the dottxt API does (see its docstring).
- `first_violation(instance, schema)`: why a document breaks a schema, in one line
  (from `openbrace.validation`, where output checks live).
"""

from __future__ import annotations

import copy
import difflib
import functools
import inspect
import json
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator
from typing import Any, NoReturn
from urllib.parse import unquote

from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator

from . import pointer as jsonpointer
from .exceptions import InvalidSchemaError, PointerError
from .validation import first_violation, one_line, validator_for

__all__ = [
    "check",
    "children",
    "first_violation",
    "from_response_format",
    "normalize",
    "subschemas",
    "to_json_schema",
]

Schema = dict[str, Any]

# The subschema walker: every module that visits subschemas (normalisation, the $ref
# checks, the embedded engine's grammar errors) goes through `children`/`subschemas`,
# so they all see the same keywords. Keywords whose value is one subschema, a list of
# them, or a map of name -> subschema (every draft from 4 to 2020-12; `items` is a
# list in drafts 4-2019-09, `dependencies` maps a name to a subschema or to a list of
# names). Everything else (`enum`, `const`, `default`, `examples`, ...) holds
# instances, which are never walked as schemas.
ONE_SCHEMA = frozenset((
    "additionalProperties", "unevaluatedProperties", "additionalItems", "unevaluatedItems",
    "items", "contains", "propertyNames", "not", "if", "then", "else", "contentSchema",
))  # fmt: skip
SCHEMA_LIST = frozenset(("allOf", "anyOf", "oneOf", "prefixItems", "items"))
SCHEMA_MAP = frozenset(("properties", "patternProperties", "$defs", "definitions",
                        "dependentSchemas", "dependencies"))  # fmt: skip


def children(node: Any, where: str = "") -> Iterator[tuple[str, Schema, str]]:
    """The subschema objects directly inside `node`, in document order.

    Yields `(keyword, subschema, pointer)`: the keyword that holds it and its JSON
    Pointer (`where` is the pointer of `node`). Boolean subschemas and instances
    (the values of `enum`, `const`, `default`, ...) are not yielded.
    """
    if not isinstance(node, dict):
        return
    for keyword, value in node.items():
        at = f"{where}/{jsonpointer.escape(keyword)}"
        if isinstance(value, dict) and keyword in ONE_SCHEMA:
            yield keyword, value, at
        elif isinstance(value, list) and keyword in SCHEMA_LIST:
            for i, child in enumerate(value):
                if isinstance(child, dict):
                    yield keyword, child, f"{at}/{i}"
        elif isinstance(value, dict) and keyword in SCHEMA_MAP:
            for name, child in value.items():
                if isinstance(child, dict):
                    yield keyword, child, f"{at}/{jsonpointer.escape(name)}"


def subschemas(
    schema: Any, where: str = "", *, skip: Collection[str] = ()
) -> Iterator[tuple[str, Schema]]:
    """`schema` and every subschema object inside it, with its JSON Pointer.

    Document order, parents before children (the order a reader meets them). Walks
    without recursion, so a deeply nested schema cannot exhaust the stack. The
    subschemas under the keywords in `skip` are left out.
    """
    if not isinstance(schema, dict):
        return
    stack: list[tuple[str, Schema]] = [(where, schema)]
    while stack:
        at, node = stack.pop()
        yield at, node
        inside = [(pointer, child) for key, child, pointer in children(node, at) if key not in skip]
        stack.extend(reversed(inside))


def to_json_schema(response_format: Any) -> Schema:
    """The JSON Schema dict for a `response_format`, checked with `check`.

    Args:
        response_format: a type pydantic's `TypeAdapter` understands (Pydantic model,
            TypedDict, dataclass, Enum, `Literal`, `Union`, `Optional`, `list[T]`,
            `dict[K, V]`, `tuple[...]`, ...), a JSON Schema dict or JSON string, an
            object with `to_json() -> str` returning a schema, or an OpenAI wrapper
            (`{"type": "json_schema", "json_schema": {...}}`).

    Returns:
        The schema as given (never normalised here; see `normalize`). The input is
        not modified.

    Raises:
        InvalidSchemaError: the input is not a schema, or not a valid one.
    """
    if isinstance(response_format, str):
        schema: Any = _loads(response_format, "the response_format string")
    elif isinstance(response_format, dict):
        if response_format.get("type") in ("json_schema", "json_object", "text"):
            unwrapped = from_response_format(response_format)
            if unwrapped is None:
                raise InvalidSchemaError('response_format {"type": "text"} has no schema')
            return unwrapped
        schema = response_format
    elif isinstance(response_format, (list, tuple)):
        raise InvalidSchemaError(
            "a list is not a schema; pass a JSON Schema dict or a typed list such as list[T]"
        )
    elif inspect.isroutine(response_format):
        raise InvalidSchemaError("a function is not a schema; pass a type or a JSON Schema")
    elif not isinstance(response_format, type) and callable(
        getattr(response_format, "to_json", None)
    ):
        schema = _loads(response_format.to_json(), f"{type(response_format).__name__}.to_json()")
    else:
        return copy.deepcopy(_schema_of_type(response_format))
    return _checked_dict(schema)


def from_response_format(body_rf: Any) -> Schema | None:
    """The schema in an OpenAI request body's `response_format`, checked.

    `{"type": "json_schema", "json_schema": {"schema": S}}` gives `S` (`{}` if it has
    none), `{"type": "json_object"}` gives `{}` (any JSON value), `{"type": "text"}`
    or no `response_format` gives None (free text).

    Raises:
        InvalidSchemaError: an unknown `type`, a malformed wrapper or an invalid schema.
    """
    if body_rf is None:
        return None
    if not isinstance(body_rf, dict):
        raise InvalidSchemaError("response_format must be an object", pointer="")
    kind = body_rf.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    if kind != "json_schema":
        raise InvalidSchemaError(
            f"response_format.type must be 'json_schema', 'json_object' or 'text', not {kind!r}",
            keyword="type",
        )
    wrapper = body_rf.get("json_schema")
    if not isinstance(wrapper, dict):
        raise InvalidSchemaError("response_format.json_schema must be an object")
    schema = wrapper.get("schema", {})
    if not isinstance(schema, dict):
        raise InvalidSchemaError("response_format.json_schema.schema must be a JSON object")
    check(schema)
    return schema


def check(schema: Any) -> None:
    """Raise `InvalidSchemaError` unless `schema` is a valid JSON Schema we can resolve.

    The schema is validated against the meta-schema of the draft its `$schema` names
    (Draft 2020-12 when absent); the error names the keyword at fault and the JSON
    Pointer of the offending place, e.g. keyword `'type'` at `/properties/age/type`.
    Local `$ref`s (`#` and `#/...`) must resolve inside the schema.
    """
    try:
        key = json.dumps(schema, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidSchemaError(f"a JSON Schema must be JSON data: {exc}") from None
    with _CHECKED_LOCK:
        if key in _CHECKED:
            _CHECKED.move_to_end(key)
            return
    validator_class = validator_for(schema)
    meta = _meta_validator(validator_class)
    error = best_match(meta.iter_errors(schema))
    if error is not None:
        path = list(error.absolute_path)
        keyword = next((p for p in reversed(path) if isinstance(p, str)), error.validator)
        where = jsonpointer.from_path(path)
        raise InvalidSchemaError(
            f"invalid JSON Schema at {where or '(root)'}, keyword {keyword!r}: "
            f"{one_line(error.message)}{_did_you_mean(keyword, error.instance)}",
            pointer=where,
            keyword=str(keyword),
        )
    _check_refs(schema)
    with _CHECKED_LOCK:
        _CHECKED[key] = None
        if len(_CHECKED) > _CHECKED_MAX:
            _CHECKED.popitem(last=False)


_TYPES = ("string", "number", "integer", "object", "array", "boolean", "null")


def _did_you_mean(keyword: Any, value: Any) -> str:
    """`; did you mean 'string'?` for a misspelt type name (`"strin"`), else ''."""
    if keyword != "type":
        return ""
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    for name in names:
        if isinstance(name, str) and name not in _TYPES:
            close = difflib.get_close_matches(name.lower(), _TYPES, n=1, cutoff=0.6)
            if close:
                return f"; did you mean {close[0]!r}?"
    return ""


# Meta-schema validation costs milliseconds (Draft 2020-12's $dynamicRef is slow in
# jsonschema), and servers see the same few schemas again and again: remember the
# canonical JSON of the last schemas that passed.
_CHECKED: OrderedDict[str, None] = OrderedDict()
_CHECKED_MAX = 1024
_CHECKED_LOCK = threading.Lock()


@functools.cache
def _meta_validator(validator_class: type[Validator]) -> Validator:
    # The format checker makes the meta-schema's `format: regex` compile every
    # `pattern` and `patternProperties` key, so a broken regex is a 400 up front.
    return validator_class(
        validator_class.META_SCHEMA, format_checker=validator_class.FORMAT_CHECKER
    )


def normalize(schema: Any) -> Any:
    """A copy of `schema` with objects closed: `additionalProperties: false` where absent.

    This is what the dottxt API does: a model writes only the properties the schema
    declares. An object schema is closed when it declares `properties` or
    `patternProperties` and has neither `additionalProperties` nor
    `unevaluatedProperties`. A bare `{"type": "object"}` (a free-form map) stays open:
    closing it would allow only `{}`.

    Closing never changes which *declared* properties are allowed, so it is skipped
    where other schemas constrain the same object and may declare more properties:
    members of `allOf`, `then`/`else`, `dependentSchemas`, the schema beside any of
    those or a `$ref`, `anyOf`/`oneOf` members whose parent declares properties, and
    `$defs` referenced from such places. Nothing inside `not` or `if` is closed (that
    would accept *more* documents). Every subschema is walked: `properties`, `items`,
    `prefixItems`, `additionalProperties`, `$defs`/`definitions`, `anyOf`/`oneOf`, ...
    Booleans and non-schema values (`enum`, `const`, `default`) are left alone.

    Args:
        schema: a JSON Schema (not modified).

    Returns:
        A deep copy, closed as above. Costs O(schema size) per reference level.
    """
    out = copy.deepcopy(schema)
    if not isinstance(out, dict):
        return out
    marks: dict[str, int] = {}
    while True:  # a $def referenced from a shared place is shared: iterate to a fixpoint
        before = dict(marks)
        nodes = list(_modes(out, marks))
        if marks == before:
            break
    for node, mode in nodes:
        if mode == _FREE and _closable(node):
            node["additionalProperties"] = False
    return out


# --- normalize: which subschemas may be closed ----------------------------------------

# How a subschema relates to the object it validates:
_FREE = 0  # it alone decides which properties the object may have
_SHARED = 1  # other schemas validate the same object and may declare more properties
_FROZEN = 2  # inside `not`/`if`: closing would accept more documents

_SAME_OBJECT = ("allOf", "anyOf", "oneOf", "$ref", "$dynamicRef", "$recursiveRef",
                "if", "then", "else", "dependentSchemas")  # fmt: skip
_ALL_DEFS = "*"


def _composed(node: Schema, besides: str | None = None) -> bool:
    """Does anything at this level besides `besides` shape the same object?"""
    keys = [k for k in _SAME_OBJECT if k in node and k != besides]
    deps = node.get("dependencies")
    schema_deps = isinstance(deps, dict) and any(isinstance(v, dict) for v in deps.values())
    # The node's own properties count only when we look at one of its parts.
    props = besides is not None and ("properties" in node or "patternProperties" in node)
    return bool(keys) or schema_deps or props


def _closable(node: Schema) -> bool:
    kind = node.get("type", "object")
    return (
        ("properties" in node or "patternProperties" in node)
        and "additionalProperties" not in node
        and "unevaluatedProperties" not in node
        and (kind == "object" or (isinstance(kind, list) and "object" in kind))
        and not _composed(node)
    )


def _modes(root: Schema, marks: dict[str, int]) -> Iterator[tuple[Schema, int]]:
    """Every dict subschema with its mode; updates `marks` for `$ref` targets."""
    stack: list[tuple[Any, str, int]] = [(root, "", _FREE)]
    while stack:
        node, where, mode = stack.pop()
        if not isinstance(node, dict):
            continue
        mode = max(mode, marks.get(where, _FREE))
        if where.count("/") == 2 and where.split("/")[1] in ("$defs", "definitions"):
            mode = max(mode, marks.get(_ALL_DEFS, _FREE))
        yield node, mode
        ref = node.get("$ref")
        if isinstance(ref, str):
            target_mode = max(mode, _SHARED) if _composed(node, "$ref") else mode
            if target_mode != _FREE:
                target = _local_target(ref)
                key = _ALL_DEFS if target is None else target  # unknown target: all $defs
                marks[key] = max(marks.get(key, _FREE), target_mode)
        for keyword, child, child_where in children(node, where):
            stack.append((child, child_where, _child_mode(node, keyword, mode)))


def _child_mode(node: Schema, keyword: str, mode: int) -> int:
    if mode == _FROZEN or keyword in ("not", "if"):
        return _FROZEN
    if keyword in ("then", "else", "dependentSchemas", "dependencies"):
        return _SHARED
    if keyword == "allOf":
        alone = len(node["allOf"]) == 1 and not _composed(node, "allOf")
        return mode if alone else _SHARED
    if keyword in ("anyOf", "oneOf"):
        return _SHARED if mode == _SHARED or _composed(node, keyword) else _FREE
    return _FREE  # a different instance: a property value, an item, a $def


def _local_target(ref: str) -> str | None:
    """The JSON Pointer a local `$ref` names (`#/$defs/A` -> `/$defs/A`), else None."""
    if ref == "#":
        return ""
    if ref.startswith("#/"):
        return unquote(ref[1:])
    return None


# --- helpers ----------------------------------------------------------------------------


def _check_refs(schema: Any) -> None:
    if not isinstance(schema, dict):
        return
    stack: list[tuple[Any, str, bool]] = [(schema, "", False)]
    local: list[str] = []  # subschemas outside any nested $id: their "#/..." is ours
    while stack:
        node, where, nested_id = stack.pop()
        if not isinstance(node, dict):
            continue
        # Below a nested $id, "#/..." is relative to that resource: leave it to jsonschema.
        nested_id = nested_id or (where != "" and isinstance(node.get("$id", node.get("id")), str))
        ref = node.get("$ref")
        if isinstance(ref, str) and not nested_id:
            target = _local_target(ref)
            if target is None and not ref.startswith("#"):
                # Resolving it would mean fetching a URL chosen by the client.
                _ref_error(where, f"{ref!r} is not in the schema; only local $refs are supported")
            if target is not None and not _resolves(schema, target):
                _ref_error(where, f"{ref!r} does not resolve inside the schema")
        if not nested_id:
            local.append(where)
        # Reversed onto the stack: popped in document order, so the first bad $ref
        # a reader meets is the one reported.
        for _, child, child_where in reversed(list(children(node, where))):
            stack.append((child, child_where, nested_id))
    _check_ref_loops(schema, local)


def _ref_error(where: str, problem: str) -> NoReturn:
    raise InvalidSchemaError(
        f"invalid JSON Schema at {where}/$ref, keyword '$ref': {problem}",
        pointer=f"{where}/$ref",
        keyword="$ref",
    )


# Keywords whose subschemas apply to the same instance as their parent: a $ref cycle
# through only these never reaches a smaller piece of JSON, so validating (or
# generating) it never ends (`{"$ref": "#"}`, `{"allOf": [{"$ref": "#"}]}`).
_IN_PLACE = frozenset(("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas"))


def _check_ref_loops(schema: Schema, starts: list[str]) -> None:
    """Refuse a cycle of in-place subschemas and $refs: one depth-first pass, O(schema)."""
    state: dict[str, bool] = {}  # True while on the current path, False once finished
    for start in starts:
        if start in state:
            continue
        state[start] = True
        path = [(start, _in_place(schema, start))]
        while path:
            where, edges = path[-1]
            for next_where in edges:
                if state.get(next_where) is True:
                    cycle = [w for w, _ in path[[w for w, _ in path].index(next_where) :]]
                    _ref_error(
                        next(w for w in cycle if _has_local_ref(schema, w)),
                        "this $ref cycle never reaches a smaller piece of JSON",
                    )
                if next_where not in state:
                    state[next_where] = True
                    path.append((next_where, _in_place(schema, next_where)))
                    break
            else:
                state[where] = False
                path.pop()


def _has_local_ref(schema: Schema, where: str) -> bool:
    node = _node(schema, where)
    return isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"][:1] == "#"


def _in_place(schema: Schema, where: str) -> Iterator[str]:
    """Pointers of the subschemas that apply to the same instance as the one at `where`."""
    node = _node(schema, where)
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    target = _local_target(ref) if isinstance(ref, str) else None
    if target is not None:
        yield target
    for keyword, _, child_where in children(node, where):
        if keyword in _IN_PLACE:
            yield child_where


_MISSING = object()


def _resolves(document: Any, target: str) -> bool:
    return _node(document, target) is not _MISSING


def _node(document: Any, target: str) -> Any:
    """The value at JSON Pointer `target` in `document`, or `_MISSING`."""
    try:
        tokens = jsonpointer.split(target)
    except PointerError:
        return _MISSING
    for token in tokens:
        if isinstance(document, dict) and token in document:
            document = document[token]
        elif isinstance(document, list) and token.isdigit() and int(token) < len(document):
            document = document[int(token)]
        else:
            return _MISSING
    return document


def _schema_of_type(response_format: Any) -> Schema:
    """The checked schema of a type, remembered per type (pydantic takes ~1 ms)."""
    try:
        return _cached_schema_of_type(response_format)
    except TypeError:  # unhashable: no caching
        return _checked_dict(_from_type(response_format))


@functools.lru_cache(maxsize=256)
def _cached_schema_of_type(response_format: Any) -> Schema:
    return _checked_dict(_from_type(response_format))


def _checked_dict(schema: Any) -> Schema:
    if not isinstance(schema, dict):
        raise InvalidSchemaError(f"a JSON Schema must be a JSON object, not {schema!r:.60}")
    check(schema)
    return schema


def _from_type(response_format: Any) -> Any:
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(response_format).json_schema()
    except Exception as exc:  # pydantic raises several unrelated types here
        raise InvalidSchemaError(
            f"{response_format!r:.80} is neither a JSON Schema nor a type pydantic can "
            f"describe ({type(exc).__name__}: {one_line(str(exc))})"
        ) from exc


def _loads(text: Any, what: str) -> Any:
    if not isinstance(text, str):
        raise InvalidSchemaError(f"{what} must return a JSON string, not {type(text).__name__}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchemaError(f"{what} is not valid JSON: {exc}") from None
