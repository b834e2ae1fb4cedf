"""JSON Schema -> llguidance matcher, compiled once per schema, with precise refusals.

`SchemaCompiler(tokenizer).matcher(schema)` returns a fresh `llguidance.LLMatcher`
that masks every token that would break the schema. The grammar is compact JSON:
`,` and `:` separators and no free whitespace, so a small model cannot ramble in
indentation, and properties come out in the schema's order.

A schema llguidance cannot enforce is refused with `InvalidSchemaError` naming the
keyword and its JSON Pointer. llguidance's messages name the keyword (`Unimplemented
keys: ["not"]`, `Unknown format: cidr`) but not where it is, so `locate` walks the
schema (with `openbrace.schema.subschemas`, the walker normalisation uses too), in
document order, for the first subschema that uses it.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import llguidance
import llguidance.numpy
import numpy as np
from numpy.typing import NDArray

from ...exceptions import InvalidSchemaError
from ...pointer import escape
from ...schema import subschemas

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

    from .sequence import Sequence  # a TypedDict of the type stub only

__all__ = ["COMPILE_OPTIONS", "BatchMasks", "SchemaCompiler", "locate", "schema_key"]

# Applied as llguidance "overrides", so a schema's own "x-guidance" cannot loosen them.
COMPILE_OPTIONS: JsonCompileOptions = {
    "item_separator": ",",
    "key_separator": ":",
    "whitespace_flexible": False,  # no whitespace between tokens at all
    "lenient": False,  # an unsupported keyword is an error, never silently ignored
}

# llguidance takes `contentSchema` as an annotation (it never constrains the string),
# so nothing inside it can be what llguidance refuses: `locate` does not look there.
_IGNORED_BY_LLGUIDANCE = ("contentSchema",)

Predicate = Callable[[Any], bool]


def schema_key(schema: Any) -> str:
    """The cache key of a schema: its compact JSON, key order kept (order is meaningful)."""
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


class SchemaCompiler:
    """Compiles JSON Schemas into llguidance matchers, once per distinct schema.

    Thread-safe. Compiling costs about a millisecond for ordinary schemas (up to
    ~1 s for huge ones); a cached schema costs a dict look-up and a matcher copy
    (microseconds). The cache keeps the `cache_size` most recently used schemas.
    """

    def __init__(self, tokenizer: llguidance.LLTokenizer, cache_size: int = 128):
        self._tokenizer = tokenizer
        self._cache: OrderedDict[str, llguidance.LLMatcher] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.compiled = 0  # how many schemas were actually compiled (cache misses)

    def lark_matcher(self, grammar: str) -> llguidance.LLMatcher:
        """A fresh matcher for a Lark `grammar` (tool calls), cached like schemas.

        Raises:
            InvalidSchemaError: llguidance refuses the grammar (pointer unknown: check
                each embedded schema with `matcher` first to locate problems).
        """
        return self._cached("lark:" + grammar, lambda: self._compile_lark(grammar))

    def _compile_lark(self, grammar: str) -> llguidance.LLMatcher:
        Matcher = llguidance.LLMatcher
        compiled = Matcher.grammar_from_lark(grammar)
        is_error, messages = Matcher.validate_grammar_with_warnings(compiled, self._tokenizer)
        prototype = Matcher(self._tokenizer, compiled, log_level=0)
        if is_error or prototype.is_error():
            problem = messages[0] if is_error else prototype.get_error()
            raise InvalidSchemaError(f"the local engine cannot enforce the tools: {problem}")
        return prototype

    def matcher(self, schema: dict[str, Any] | bool) -> llguidance.LLMatcher:
        """A fresh matcher for `schema`, at the start of the document.

        Raises:
            InvalidSchemaError: llguidance cannot enforce the schema; `keyword` and
                `pointer` say what and where.
        """
        return self._cached(schema_key(schema), lambda: self._compile(schema))

    def _cached(self, key: str, build: Callable[[], llguidance.LLMatcher]) -> llguidance.LLMatcher:
        """A copy of the prototype matcher for `key`, compiled on a miss (LRU)."""
        with self._lock:
            prototype = self._cache.get(key)
            if prototype is not None:
                self._cache.move_to_end(key)
                return prototype.deep_copy()
        prototype = build()
        with self._lock:
            self._cache[key] = prototype
            self.compiled += 1
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return prototype.deep_copy()

    def _compile(self, schema: dict[str, Any] | bool) -> llguidance.LLMatcher:
        Matcher = llguidance.LLMatcher
        try:
            # llguidance also takes the boolean schemas true and false; its stub says dict.
            grammar = Matcher.grammar_from_json_schema(
                cast("dict[str, Any]", schema), overrides=COMPILE_OPTIONS
            )
        except ValueError as exc:
            raise InvalidSchemaError(f"not a JSON Schema: {exc}", pointer="") from None
        is_error, messages = Matcher.validate_grammar_with_warnings(grammar, self._tokenizer)
        if is_error:
            raise locate(schema, messages[0])
        matcher = Matcher(self._tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise locate(schema, matcher.get_error())
        return matcher


class BatchMasks:
    """The next-token masks of many sequences at once, for the scheduler.

    One `llguidance.LLExecutor` computes the masks of every constrained sequence of
    a step together (`fill_next_token_bitmask_par`, in `threads` threads), into one
    bitmask array reused from step to step.
    """

    def __init__(self, tokenizer: llguidance.LLTokenizer, threads: int | None = None):
        self._executor = llguidance.LLExecutor(threads)
        self._words = (tokenizer.vocab_size + 31) // 32
        self._bitmask = np.zeros((0, self._words), dtype=np.int32)

    def __call__(self, sequences: list[Sequence], n_vocab: int) -> list[NDArray[np.bool_] | None]:
        """Per sequence, the tokens its grammar allows next; None for free text."""
        constrained = [(s.matcher, i) for i, s in enumerate(sequences) if s.matcher is not None]
        if len(self._bitmask) < len(sequences):
            self._bitmask = np.zeros((len(sequences), self._words), dtype=np.int32)
        if constrained:
            llguidance.numpy.fill_next_token_bitmask_par(
                self._executor, constrained, self._bitmask[: len(sequences)]
            )
        return [s.allowed(n_vocab, self._bitmask[i]) for i, s in enumerate(sequences)]


def _is(expected: str) -> Predicate:
    return lambda value: value == expected or (isinstance(value, list) and expected in value)


def _ends_with(suffix: str) -> Predicate:
    return lambda value: isinstance(value, str) and value.endswith(suffix)


def _in_message(message: str) -> Predicate:
    return lambda value: isinstance(value, str) and value in message


def _candidates(message: str) -> list[tuple[str, Predicate | None]]:
    """The keywords (and a test on their value) that llguidance's message points at."""
    if m := re.match(r"Unimplemented keys: (\[.*?\])", message):
        return [(k, None) for k in json.loads(m.group(1))]
    if m := re.match(r"Unknown format: (.*)", message):
        return [("format", _is(m.group(1).strip()))]
    if m := re.match(r"Invalid type: (.*)", message):
        return [("type", _is(m.group(1).strip()))]
    if m := re.match(r"Pointer '(.*)' does not exist", message):
        return [("$ref", _ends_with(m.group(1)))]
    if message.startswith("oneOf constraints"):
        return [("oneOf", None)]
    if message.startswith("min/maxProperties"):
        return [("minProperties", None), ("maxProperties", None)]
    if message.startswith("circular references"):
        return [("$ref", None)]
    if message.startswith("regex parse error"):
        return [(k, _in_message(message)) for k in ("pattern", "propertyNames")] + [
            ("patternProperties", None)
        ]
    if m := re.search(r"required property '(.*)' is unsatisfiable", message):
        return [("required", _is(m.group(1)))]
    if message.startswith("Unsatisfiable schema: anyOf is empty"):
        return [("enum", lambda value: value == []), ("anyOf", lambda value: value == [])]
    # Otherwise: any keyword the message mentions as a word, in the order it does.
    words = re.findall(r"[$A-Za-z][A-Za-z0-9]*", message)
    return [(w, None) for w in dict.fromkeys(words)]


def locate(schema: Any, message: str) -> InvalidSchemaError:
    """An `InvalidSchemaError` for llguidance's `message`, with keyword and pointer.

    The pointer is that of the first subschema, in document order, using the keyword
    the message names; if no keyword can be matched, the error says the location is
    unknown (pointer None).
    """
    first_line = message.strip().splitlines()[0] if message.strip() else "unsupported schema"
    if "regex parse error" in first_line:
        first_line = " ".join(line.strip() for line in message.strip().splitlines())
    found = _find(schema, _candidates(message))
    if found is None:
        return InvalidSchemaError(
            f"the local engine cannot enforce this schema: {first_line}", pointer=None
        )
    keyword, pointer = found
    where = pointer or "the root"
    return InvalidSchemaError(
        f"the local engine cannot enforce keyword {keyword!r} at {where}: {first_line}",
        pointer=pointer,
        keyword=keyword,
    )


def _find(schema: Any, candidates: list[tuple[str, Predicate | None]]) -> tuple[str, str] | None:
    for keyword, test in candidates:
        for pointer, sub in subschemas(schema, skip=_IGNORED_BY_LLGUIDANCE):
            if keyword in sub and (test is None or test(sub[keyword])):
                return keyword, f"{pointer}/{escape(keyword)}"
    return None
