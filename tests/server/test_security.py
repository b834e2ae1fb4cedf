"""Security: keys, secrets in logs and errors, size limits, CORS.

Servers run on a real uvicorn on loopback; the upstream is the scripted stand-in
for a GPU cluster (`tests.support.upstream`). docs/threat-model.md
says what these tests protect and what they do not.
"""

from __future__ import annotations

import hmac
import logging
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from openbrace.engines.base import Finish, GenerationRequest, MockEngine
from openbrace.engines.upstream import UpstreamEngine
from openbrace.server import auth
from openbrace.server.app import ServerConfig, create_app
from tests.support import LoopbackServer, Script, ScriptedUpstream, wait_until

KEY = "sk-server-7f3a9c-do-not-leak"
OTHER_KEY = "sk-server-2b8e1d-second-key"
UPSTREAM_KEY = "sk-upstream-41c0e2-do-not-leak"
INTERNAL = "db-password=hunter2 at /srv/openbrace/secret.py"
TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/vllm/api.py", line 9'
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def _body(model: str = "doc", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": "patch",
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}},
        **extra,
    }


async def _engine_handler(request: GenerationRequest) -> AsyncIterator[str | Finish]:
    """ "boom-early" fails before any text, "boom-late" after an op; others succeed."""
    if request.model == "boom-early":
        raise RuntimeError(INTERNAL)
    yield '{"a": 1'
    if request.model == "boom-late":
        raise RuntimeError(INTERNAL)
    yield "}"
    yield Finish()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        server.add("doc", Script.from_document({"a": 1}))
        # Upstreams that put our own key, or their stack trace, in an error body.
        server.add(
            "echo-401",
            Script(
                chunks=(),
                fault="http_error",
                error_status=401,
                error_message=f"Incorrect API key provided: {UPSTREAM_KEY}",
            ),
        )
        server.add(
            "trace-500",
            Script(
                chunks=(),
                fault="http_error",
                error_message=f"Internal error\n{TRACEBACK}\n{INTERNAL}",
            ),
        )
        yield server


@pytest.fixture(scope="module")
def keyed(upstream: ScriptedUpstream) -> Iterator[LoopbackServer]:
    """A server with two API keys, fronting the upstream with an upstream key."""
    engine = UpstreamEngine(upstream.base_url, api_key=UPSTREAM_KEY, timeout=5)
    config = ServerConfig(api_keys=(KEY, OTHER_KEY), max_body_bytes=64 * 1024)
    with LoopbackServer(create_app(engine, config)) as server:  # access log on
        yield server


@pytest.fixture(scope="module")
def mock_server() -> Iterator[LoopbackServer]:
    engine = MockEngine(_engine_handler, model_ids=("doc", "boom-early", "boom-late"))
    with LoopbackServer(create_app(engine), access_log=False) as server:
        yield server


def _post(
    server: LoopbackServer, body: Any = None, key: str | None = KEY, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    headers.update(kwargs.pop("headers", {}))
    if body is None and "content" not in kwargs:
        body = _body()
    return httpx.post(
        server.url + "/v1/chat/completions", json=body, headers=headers, timeout=30, **kwargs
    )


# -- API keys ------------------------------------------------------------------------------


def test_keys_are_compared_with_compare_digest(
    keyed: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    lock = threading.Lock()
    compare_digest = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        with lock:
            calls.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert _post(keyed, key=OTHER_KEY).status_code == 200
    # Every configured key is compared, whichever matches (no early exit).
    assert {b for a, b in calls if a == OTHER_KEY.encode()} == {KEY.encode(), OTHER_KEY.encode()}
    calls.clear()
    assert _post(keyed, key=KEY[:-1] + "X").status_code == 401
    assert len(calls) == 2


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic " + KEY,
        "Bearer " + KEY[:-1],
        "Bearer " + KEY + "x",
        "Bearer " + KEY.upper(),
        "Bearer \u00e9\u00e8",
        KEY,
    ],
)
def test_wrong_or_missing_keys_get_401(keyed: LoopbackServer, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header.encode("latin-1")}
    response = httpx.post(keyed.url + "/v1/chat/completions", json=_body(), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "authentication_error"
    assert KEY not in response.text and OTHER_KEY not in response.text


def test_auth_comes_before_parsing(keyed: LoopbackServer) -> None:
    # An unauthenticated caller learns nothing about body validation.
    response = _post(keyed, key="nope", content=b"{not json", headers={})
    assert response.status_code == 401


def test_health_is_open_metrics_are_not(keyed: LoopbackServer) -> None:
    assert httpx.get(keyed.url + "/healthz").status_code == 200  # for load balancers
    assert httpx.get(keyed.url + "/metrics").status_code == 401
    headers = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(keyed.url + "/metrics", headers=headers).status_code == 200


def test_keys_never_logged(
    keyed: LoopbackServer, upstream: ScriptedUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert _post(keyed).status_code == 200
    assert _post(keyed, key=OTHER_KEY).status_code == 200
    assert _post(keyed, key=KEY + "-typo").status_code == 401
    assert _post(keyed, body=_body("echo-401")).status_code == 502
    assert _post(keyed, body=_body("trace-500")).status_code == 502
    assert _post(keyed, body=_body("no-such-model")).status_code == 404
    assert upstream.last("doc").authorization == f"Bearer {UPSTREAM_KEY}"  # it was in use
    assert caplog.records, "the run logged nothing: the capture is not working"
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in (KEY, OTHER_KEY, UPSTREAM_KEY, KEY + "-typo"):
        assert secret not in logged


def test_serve_never_prints_keys(upstream: ScriptedUpstream) -> None:
    """`openbrace serve` with keys on the command line, logging at debug level."""
    command = [
        sys.executable,
        "-m",
        "openbrace.cli",
        "serve",
        "--upstream",
        upstream.base_url,
        "--port",
        "0",
        "--api-key",
        KEY,
        "--upstream-key",
        UPSTREAM_KEY,
        "--log-level",
        "debug",
    ]
    process = subprocess.Popen(command, stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: "Uvicorn running on" in "".join(output), timeout=30), output
        url = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", "".join(output))
        assert url is not None
        for key in (KEY, "wrong-key"):
            httpx.post(
                url.group(1) + "/v1/chat/completions",
                json=_body(),
                timeout=30,
                headers={"Authorization": f"Bearer {key}"},
            )
    finally:
        process.terminate()
        process.wait(15)
        reader.join(5)
    printed = "".join(output)
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in printed  # the log was really captured
    assert KEY not in printed and UPSTREAM_KEY not in printed


# -- error bodies -------------------------------------------------------------------------


def test_internal_errors_are_not_echoed(
    mock_server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    early = _post(mock_server, _body("boom-early"), key=None)
    assert early.status_code == 500
    assert early.json()["error"]["type"] == "server_error"
    late = _post(mock_server, _body("boom-late"), key=None)
    assert late.status_code == 200
    assert late.text.splitlines()[-1].startswith('{"error":')
    for response in (early, late):
        assert INTERNAL not in response.text
        assert "Traceback" not in response.text and "RuntimeError" not in response.text
    assert INTERNAL in caplog.text, "the operator still gets the details in the log"


def test_upstream_errors_do_not_leak_secrets_or_traces(keyed: LoopbackServer) -> None:
    for model in ("echo-401", "trace-500"):
        response = _post(keyed, body=_body(model))
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "upstream_error" and error["message"]
        assert UPSTREAM_KEY not in response.text, f"{model}: the upstream key was echoed"
        assert "Traceback" not in response.text and INTERNAL not in response.text, (
            f"{model}: the upstream's stack trace was relayed"
        )


def test_bad_json_error_does_not_echo_the_body(keyed: LoopbackServer) -> None:
    response = _post(
        keyed,
        content=b'{"messages": [' + UPSTREAM_KEY.encode() + b"]}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert UPSTREAM_KEY not in response.text


# -- size limits ------------------------------------------------------------------------


def test_body_limit_with_and_without_content_length(keyed: LoopbackServer) -> None:
    big = b'{"model": "doc", "pad": "' + b"x" * (64 * 1024) + b'"}'
    declared = _post(keyed, content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = _post(keyed, content=chunked(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert "65536 bytes" in streamed.json()["error"]["message"]
    assert _post(keyed).status_code == 200  # and the server goes on serving


def test_schema_size_is_bounded_by_the_body_limit(keyed: LoopbackServer) -> None:
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(5000)}}
    body = _body()
    body["response_format"]["json_schema"]["schema"] = schema
    assert _post(keyed, body=body).status_code == 413


def test_schema_refs_are_never_fetched(mock_server: LoopbackServer) -> None:
    """A remote `$ref` must not make the server send requests for the client (SSRF)."""
    hits: list[str] = []

    async def trap(scope: Any, receive: Any, send: Any) -> None:
        hits.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"type": "integer"}'})

    with LoopbackServer(trap, access_log=False, interface="asgi3") as internal:
        body = _body()
        body["response_format"]["json_schema"]["schema"] = {
            "type": "object",
            "properties": {"a": {"$ref": internal.url + "/schema.json"}},
        }
        response = _post(mock_server, body, key=None)
        assert hits == [], "the server fetched a $ref"
        assert response.status_code < 500


# -- CORS --------------------------------------------------------------------------------


def _preflight(server: LoopbackServer, origin: str) -> httpx.Response:
    return httpx.options(
        server.url + "/v1/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_cors_off_by_default(mock_server: LoopbackServer) -> None:
    preflight = _preflight(mock_server, "https://evil.example")
    assert "access-control-allow-origin" not in preflight.headers
    simple = httpx.get(mock_server.url + "/v1/models", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


def test_cors_allows_only_configured_origins() -> None:
    engine = MockEngine(_engine_handler, model_ids=("doc",))
    config = ServerConfig(cors_origins=("http://localhost:5173",))
    with LoopbackServer(create_app(engine, config), access_log=False) as server:
        allowed = _preflight(server, "http://localhost:5173")
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        stream = httpx.post(
            server.url + "/v1/chat/completions",
            json=_body(),
            headers={"Origin": "http://localhost:5173"},
        )
        assert stream.headers["access-control-allow-origin"] == "http://localhost:5173"
        denied = _preflight(server, "https://evil.example")
        assert "access-control-allow-origin" not in denied.headers
        other = httpx.get(server.url + "/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
