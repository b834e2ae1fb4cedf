"""Does a document satisfy its schema? Output checks, with patterns in linear time.

- `first_violation(instance, schema)`: the most relevant reason a document breaks a
  schema, in one line, or None. The server and the in-process client run it on
  every finished document (an unconstrained upstream may write valid JSON that
  breaks the schema).
- `validator_for(schema)`: the jsonschema validator class of the draft a schema
  names; `schema.check` validates schemas against that draft's meta-schema.
- `one_line(message)`: a message on one line, shortened (jsonschema's span lines).

`pattern`, `patternProperties` and `additionalProperties` run on RE2 here, so a
hostile pattern cannot stall the server.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import re2
import referencing
import referencing.exceptions
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from . import pointer
from .exceptions import InvalidSchemaError

__all__ = ["first_violation", "one_line", "validator_for"]


def first_violation(instance: Any, schema: Any) -> str | None:
    """The most relevant reason `instance` breaks `schema`, as one line, or None.

    The line starts with the instance path: `at /steps/1: 5 is not of type 'string'`.
    Costs one validation pass (building the validator included). `pattern` and
    `patternProperties` run on RE2, in time linear in the text, so a hostile pattern
    such as `^(a+)+$` cannot stall the caller; only patterns RE2 cannot express
    (lookarounds, backreferences) fall back to Python's backtracking `re`.
    """
    validator_class = _linear_regex(validator_for(schema))
    # An empty registry: jsonschema's default one fetches remote `$ref`s over HTTP,
    # which would let a client make the server request any URL (SSRF).
    validator = validator_class(schema, registry=referencing.Registry())
    try:
        error = best_match(validator.iter_errors(instance))
    except referencing.exceptions.Unresolvable as exc:
        raise InvalidSchemaError(f"unresolvable $ref in schema: {exc}", keyword="$ref") from None
    except RecursionError:  # {"$ref": "#"}: references that loop without consuming input
        raise InvalidSchemaError("the schema's $refs loop without end", keyword="$ref") from None
    except re.error as exc:  # `pattern`s are checked with Python's `re`
        raise InvalidSchemaError(
            f"a pattern in the schema is not a valid regular expression: {exc}", keyword="pattern"
        ) from None
    if error is None:
        return None
    return f"at {pointer.from_path(error.absolute_path) or '/'}: {one_line(error.message)}"


# --- regular expressions in linear time ------------------------------------------------
#
# jsonschema evaluates `pattern`, `patternProperties` and the pattern part of
# `additionalProperties` with Python's backtracking `re`, where `^(a+)+$` against
# 30 characters takes seconds while holding the GIL. These three keywords are
# redefined here on RE2 (same logic and messages as jsonschema's own).

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # an unsupported pattern is not worth a stderr line
_RE2_OPTIONS.never_capture = True


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        pass
    try:  # lookarounds and backreferences: only a backtracking engine has them
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidSchemaError(
            f"a pattern in the schema is not a valid regular expression: {exc}",
            keyword="pattern",
        ) from None


def _search(pattern: str, text: str) -> bool:
    return _regex(pattern).search(text) is not None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, allowed: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        key
        for key in instance
        if key not in properties and not any(_search(p, key) for p in patterns)
    ]
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        names = ", ".join(repr(each) for each in sorted(extras, key=str))
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            listed = ", ".join(repr(each) for each in sorted(patterns))
            yield ValidationError(f"{names} {verb} not match any of the regexes: {listed}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(
                f"Additional properties are not allowed ({names} {verb} unexpected)"
            )


@functools.cache
def _linear_regex(validator_class: type[Validator]) -> type[Validator]:
    return jsonschema.validators.extend(  # type: ignore[no-untyped-call,no-any-return]
        validator_class,
        {
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
        },
    )


# --- drafts and messages ---------------------------------------------------------------

_LATEST = "http://json-schema.org/schema#"  # "the latest draft", seen in the wild


def validator_for(schema: Any) -> type[Validator]:
    """The jsonschema validator class of the draft `schema` names in `$schema`.

    Draft 2020-12 when there is no `$schema` (or it says "the latest draft").

    Raises:
        InvalidSchemaError: `$schema` names no draft from 4 to 2020-12.
    """
    default: type[Validator] = jsonschema.Draft202012Validator
    if not isinstance(schema, dict) or "$schema" not in schema:
        return default
    uri = schema["$schema"]
    if uri == _LATEST:
        return default
    found = (
        # default=None ("no such draft") is not in the stubs, but is what we need.
        jsonschema.validators.validator_for(schema, default=None)  # type: ignore[arg-type]
        if isinstance(uri, str)
        else None
    )
    if found is None:
        raise InvalidSchemaError(
            f"invalid JSON Schema at /$schema, keyword '$schema': unknown meta-schema {uri!r}"
            " (name a JSON Schema draft from 4 to 2020-12)",
            pointer="/$schema",
            keyword="$schema",
        )
    return found


def one_line(message: str, limit: int = 300) -> str:
    """`message` with its whitespace runs (newlines too) as single spaces, at most
    `limit` characters long."""
    line = " ".join(message.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
