"""Client configuration: arguments, then OPENBRACE_*, then DOTTXT_* environment
variables; conflicting or unknown options are refused.
"""

from __future__ import annotations

import pytest

from openbrace import AsyncClient, Client
from openbrace.engines.base import MockEngine
from tests.client.replay import TEXT, mock_handler


def test_configuration_order(monkeypatch):
    for name in ("OPENBRACE_API_KEY", "OPENBRACE_BASE_URL", "DOTTXT_API_KEY", "DOTTXT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    client = Client()
    assert (client.api_key, client.base_url, client.in_process) == (None, None, True)
    monkeypatch.setenv("DOTTXT_API_KEY", "dt-key")
    monkeypatch.setenv("DOTTXT_BASE_URL", "http://127.0.0.1:9/dottxt/")
    client = Client()
    assert (client.api_key, client.base_url) == ("dt-key", "http://127.0.0.1:9/dottxt")
    monkeypatch.setenv("OPENBRACE_API_KEY", "ob-key")
    monkeypatch.setenv("OPENBRACE_BASE_URL", "http://127.0.0.1:9/ob")
    client = AsyncClient()
    assert (client.api_key, client.base_url) == ("ob-key", "http://127.0.0.1:9/ob")
    client = AsyncClient("arg-key", "http://127.0.0.1:9/arg")
    assert (client.api_key, client.base_url, client.in_process) == (
        "arg-key",
        "http://127.0.0.1:9/arg",
        False,
    )
    engine = MockEngine(mock_handler(TEXT))
    assert Client(engine=engine).in_process  # an explicit engine beats the environment
    assert "arg-key" not in repr(client)
    with pytest.raises(ValueError, match="not both"):
        Client(base_url="http://127.0.0.1:9", engine=engine)
    with pytest.raises(ValueError, match="patch must be"):
        Client(base_url="http://127.0.0.1:9", patch="proxy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="framing must be"):
        Client(framing="xml")  # type: ignore[arg-type]


def test_a_base_url_without_a_scheme_means_http() -> None:
    assert Client(base_url="127.0.0.1:9/v1").base_url == "http://127.0.0.1:9/v1"
    assert AsyncClient(base_url="https://example.invalid/v1/").base_url == (
        "https://example.invalid/v1"
    )
