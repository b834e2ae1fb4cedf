"""Bad input: the HTTP API and the emitter under fuzzing.

The rule for every request, whatever hypothesis throws at it (malformed JSON,
wrong types, huge values, unknown fields, hostile schemas): an answer within a
bounded time (the client's timeout), either a success or a 4xx whose JSON body
says what is wrong, never a 500, and never a `server_error` record inside a 200
stream, for a client's mistake. The server runs on a real uvicorn on loopback;
its engine is a `MockEngine` (what text comes back is not the point here),
except for the hostile schemas that the embedded engine must also compile.

The emitter, fed arbitrary text in arbitrary chunks, raises nothing but
`InvalidOutputError`, and whatever it accepts, `json.loads` accepts identically.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jsonpatch
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from openbrace.emitter import PatchEmitter
from openbrace.engines.base import Finish, GenerationRequest, MockEngine
from openbrace.exceptions import InvalidOutputError
from openbrace.server.app import ServerConfig, create_app
from tests.support import LoopbackServer

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BOUND = 20.0  # seconds: every answer must come within this
NO_POOL = httpx.Limits(max_keepalive_connections=0)
REDOS_BOUND = 5.0  # seconds for the one request built to stall a backtracking regex
MAX_BODY = 256 * 1024
# Text the mock engine answers with, by model: a plain document, and a string that
# makes a backtracking regex engine explode on `^(a+)+$` (2^27 paths).
REPLIES = {"mock": '{"a": 1, "b": ["x", true]}', "aaa": json.dumps("a" * 27 + "!")}


async def _reply(request: GenerationRequest) -> AsyncIterator[str | Finish]:
    text = REPLIES[request.model]
    for start in range(0, len(text), 4):
        yield text[start : start + 4]
    yield Finish()


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    engine = MockEngine(_reply, model_ids=tuple(REPLIES))
    app = create_app(engine, ServerConfig(max_body_bytes=MAX_BODY, request_timeout=BOUND))
    with (
        LoopbackServer(app, access_log=False) as server,
        # A fresh connection per request: a pooled one may meet uvicorn's keep-alive
        # expiry (5 s idle) on a slow machine, a client-side race that is not under test.
        httpx.Client(base_url=server.url, timeout=BOUND, limits=NO_POOL) as client,
    ):
        yield client


def _valid_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "mock",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": "patch",
        "response_format": {"type": "json_object"},
        "max_tokens": 32,
    }
    body.update(changes)
    return body


def _with_schema(schema: Any, model: str = "mock") -> dict[str, Any]:
    return _valid_body(
        model=model,
        response_format={"type": "json_schema", "json_schema": {"name": "fuzz", "schema": schema}},
    )


def _hostile_body(name: str, **changes: Any) -> bytes:
    """The request for `HOSTILE[name]`; a str there is JSON text, spliced in as is."""
    schema = HOSTILE[name]
    body = _with_schema("\0schema" if isinstance(schema, str) else schema)
    body.update(changes)
    text = json.dumps({k: v for k, v in body.items() if v is not None})
    if isinstance(schema, str):
        text = text.replace('"\\u0000schema"', schema)
    return text.encode()


def _post(api: httpx.Client, content: bytes) -> httpx.Response:
    return api.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )


def _assert_answered_properly(response: httpx.Response) -> None:
    """A success, or a 4xx with a clear OpenAI-shaped error; never a server error."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    assert "Traceback" not in response.text
    if response.status_code != 200:
        assert 400 <= response.status_code < 500
        error = response.json()["error"]
        assert isinstance(error["message"], str) and len(error["message"]) > 10
        assert isinstance(error["type"], str)
        return
    if response.headers["content-type"].startswith("application/x-ndjson"):
        lines = response.content.split(b"\n")
        assert lines[-1] == b""
        records = [json.loads(line) for line in lines[:-1]]
        errors = [r["error"] for r in records if "error" in r]
        # The engine's output may break a fuzzed schema: that is the model's fault
        # (`invalid_output`), reported in-band. A `server_error` would be ours.
        assert all(e["type"] != "server_error" for e in errors), errors
        ops = [r for r in records if "op" in r]
        jsonpatch.apply_patch(None, ops)  # what was sent is a valid patch


# -- strategies -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
huge_values = st.sampled_from(
    [
        10**400,
        -(10**400),
        1e308,
        -1e308,
        2**63,
        2**64,
        -(2**63) - 1,
        5e-324,
        "x" * 100_000,
        ["y"] * 10_000,
        {"k" * 1000: "v"},
    ]
)
FIELDS = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "response_format",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stop",
    "n",
    "tools",
    "logit_bias",
    "user",
    "",
    "__proto__",
    "unknown_field",
]

names = st.sampled_from(["a", "b", "", "~", "/x", "\u2028", "é"])
PATTERNS = [
    "^[a-z]+$",
    "(",
    "[",
    "*",
    "\\",
    "(?P<n>a)(?P=n)",
    "^(a+)+$",
    "(a|aa)*b",
    "\\p{L}",
    "(?<=a)b",
    "a{99999}",
    "[z-a]",
]
leaf_schemas = st.sampled_from(
    [
        {},
        True,
        False,
        {"type": "string"},
        {"type": "integer"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": ["string", "null"]},
        {"type": "nope"},
        {"type": 5},
        {"$ref": "#"},
        {"$ref": "#/$defs/missing"},
        {"$ref": "other.json"},
        {"$ref": "#/properties/a"},
        {"format": "date-time", "type": "string"},
        {"minLength": 10**12, "type": "string"},
        {"maxLength": -1},
        {"multipleOf": 0},
        {"multipleOf": 1e-300, "type": "number"},
    ]
)


def _extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(
            lambda props, req: {"type": "object", "properties": props, "required": req},
            st.dictionaries(names, inner, max_size=4),
            st.lists(names, max_size=3),
        ),
        st.builds(
            lambda items, lo, hi: {"type": "array", "items": items, "minItems": lo, "maxItems": hi},
            inner,
            st.integers(-1, 10**10),
            st.integers(-1, 10**10),
        ),
        st.builds(lambda xs: {"anyOf": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"allOf": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"oneOf": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
        st.builds(
            lambda x, d: {"$defs": {"d": d}, **x} if isinstance(x, dict) else x, inner, inner
        ),
        st.builds(lambda xs: {"enum": xs}, st.lists(json_values, max_size=5)),
        st.builds(lambda x: {"const": x}, json_values),
        st.builds(lambda p: {"type": "string", "pattern": p}, st.sampled_from(PATTERNS)),
        st.builds(
            lambda p, x: {"type": "object", "patternProperties": {p: x}},
            st.sampled_from(PATTERNS),
            inner,
        ),
        st.dictionaries(st.text(max_size=6), json_values, max_size=3),  # unknown keywords
    )


schemas = st.recursive(leaf_schemas, _extend, max_leaves=10)


# -- the HTTP API -----------------------------------------------------------------------


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_malformed_bodies(api: httpx.Client, raw: bytes) -> None:
    _assert_answered_properly(_post(api, raw))


@FUZZ
@given(
    field=st.sampled_from(FIELDS),
    value=json_values | huge_values | st.just("patch"),
    drop=st.sampled_from([None, "messages", "model", "response_format", "stream"]),
)
def test_wrong_types_huge_values_unknown_fields(
    api: httpx.Client, field: str, value: Any, drop: str | None
) -> None:
    body = _valid_body(**{field: value})
    if drop is not None and drop != field:
        body.pop(drop, None)
    response = _post(api, json.dumps(body).encode())
    _assert_answered_properly(response)
    if response.status_code == 400 and response.json()["error"]["param"] is not None:
        # A 400 that names a field names one the request got wrong.
        param = response.json()["error"]["param"]
        assert param.split(".")[0].split("[")[0] in {field, drop, *body}, param


@FUZZ
@given(schema=schemas)
def test_generated_hostile_schemas(api: httpx.Client, schema: Any) -> None:
    _assert_answered_properly(_post(api, json.dumps(_with_schema(schema)).encode()))


def _nested(depth: int, key: str = "properties") -> str:
    """A schema nested `depth` deep, as JSON text (too deep for `json.dumps`)."""
    head = (
        '{"type": "object", "properties": {"a": '
        if key == "properties"
        else ('{"type": "array", "items": ')
    )
    tail = "}}" if key == "properties" else "}"
    return head * depth + '{"type": "string"}' + tail * depth


HOSTILE: dict[str, Any] = {
    "deep-properties-200": _nested(200),
    "deep-items-5000": _nested(5000, "items"),
    "deep-json-100000": "[" * 100_000 + "]" * 100_000,  # not even a schema
    "huge-enum": {"enum": [f"value-{i}" for i in range(20_000)]},
    "huge-const": {"const": "c" * 200_000},
    "recursive-ref-self": {"$ref": "#"},
    "recursive-ref-mutual": {
        "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
        "$ref": "#/$defs/a",
    },
    "recursive-tree": {
        "type": "object",
        "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#"}}},
    },
    "ref-missing": {"$ref": "#/$defs/nowhere"},
    "ref-remote": {"$ref": "https://example.invalid/schema.json"},
    "regex-invalid": {"type": "string", "pattern": "(unclosed"},
    "pattern-properties-invalid": {"type": "object", "patternProperties": {"(": {}}},
    "regex-catastrophic": {"type": "string", "pattern": "^(a+)+$"},
    "pattern-properties-catastrophic": {
        "type": "object",
        "patternProperties": {"^(a|aa)+$": {"type": "integer"}},
    },
    "combinatorial-anyof": {
        "allOf": [
            {
                "anyOf": [
                    {"type": "object", "properties": {f"k{i}": {"enum": [j for j in range(8)]}}}
                    for i in range(8)
                ]
            }
            for _ in range(8)
        ]
    },
    "many-properties": {
        "type": "object",
        "required": [f"p{i}" for i in range(2000)],
        "properties": {f"p{i}": {"type": "integer"} for i in range(2000)},
    },
    "huge-bounds": {
        "type": "array",
        "items": {"type": "string", "minLength": 10**15},
        "minItems": 10**15,
    },
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_schemas(api: httpx.Client, name: str) -> None:
    body = _hostile_body(name)
    response = _post(api, body)
    if len(body) > MAX_BODY:
        assert response.status_code == 413
    _assert_answered_properly(response)


def test_catastrophic_pattern_against_a_nonmatching_reply(api: httpx.Client) -> None:
    """An unconstrained upstream's reply is checked against the client's schema: a
    backtracking regex must not let one request stall the server. (Python's `re`
    needs ~10 s for this 28-character reply, twice that per extra character, and
    holds the GIL meanwhile, so the client's own timeout cannot fire: hence the
    explicit bound, which a healthy server meets with a margin of 100x.)"""
    body = _hostile_body("regex-catastrophic", model="aaa")
    started = time.monotonic()
    response = api.post("/v1/chat/completions", content=body)
    elapsed = time.monotonic() - started
    assert elapsed < REDOS_BOUND, f"one schema `pattern` stalled the server for {elapsed:.1f} s"
    _assert_answered_properly(response)
    assert api.get("/healthz").status_code == 200


@pytest.mark.model
@pytest.mark.parametrize(
    "name",
    [
        "deep-properties-200",
        "huge-enum",
        "recursive-tree",
        "recursive-ref-self",
        "regex-invalid",
        "regex-catastrophic",
        "combinatorial-anyof",
        "many-properties",
        "huge-bounds",
    ],
)
def test_hostile_schemas_on_the_embedded_engine(local_server: LoopbackServer, name: str) -> None:
    """The embedded engine compiles the schema into a grammar: still 4xx or success."""
    body = _hostile_body(name, model=None, max_tokens=8)  # the engine's default model
    with httpx.Client(base_url=local_server.url, timeout=60) as client:
        response = _post(client, body)
    if response.status_code == 200 and "error" in response.text:
        # max_tokens ran out before the document closed: an honest `length` error.
        last = json.loads(response.content.split(b"\n")[-2])
        assert last["error"]["type"] in ("length", "invalid_output"), last
    _assert_answered_properly(response)


# -- the emitter -------------------------------------------------------------------------

_PIECES = [
    "{",
    "}",
    "[",
    "]",
    '"',
    ":",
    ",",
    "true",
    "fals",
    "null",
    "1",
    "-",
    "0",
    ".",
    "e",
    "E",
    "+",
    "\\",
    "u",
    "d83d",
    "de00",
    "dc00",
    '\\"',
    " ",
    "\n",
    "x",
    "é",
    "\u2028",
    "NaN",
    "Infinity",
    "1e999999",
    "\x00",
    "//",
    "/*",
]
texts = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=80),  # surrogates too
    st.lists(st.sampled_from(_PIECES), max_size=60).map("".join),
    st.binary(max_size=80).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.builds(
        lambda v, cut, junk: json.dumps(v)[:cut] + junk,
        json_values,
        st.integers(0, 200),
        st.sampled_from(["", "}", "]", ",", '"', "x", " 1"]),
    ),
)


def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(text=texts, cuts=st.lists(st.integers(0, 10_000), max_size=8))
@example(text='null"', cuts=[])  # a complete value, then the start of another
@example(text='{"a": [1, "\u00e9"]}', cuts=[3, 9])
def test_emitter_raises_only_invalid_output(text: str, cuts: list[int]) -> None:
    emitter = PatchEmitter()
    ops: list[dict[str, Any]] = []
    try:
        for chunk in _chunks(text, cuts):
            ops += emitter.feed(chunk)
        ops += emitter.close()
    except InvalidOutputError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(
            text.encode("utf-8", "surrogatepass")
        )
        jsonpatch.apply_patch(None, ops)  # the ops before the error stay valid
        return
    # Accepted: it must be exactly one JSON document, and the ops must rebuild it.
    assert jsonpatch.apply_patch(None, ops) == json.loads(text)
