"""Drop-in for the dottxt SDK: every dottxt call signature works here, and the real
dottxt client reads the frames our server framers write.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import openbrace
from tests.client.replay import OPS, ask


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("AsyncClient.stream", "AsyncDotTxt.stream"),
        ("Client.generate", "DotTxt.generate"),
        ("AsyncClient.generate", "AsyncDotTxt.generate"),
        ("Client.__init__", "DotTxt.__init__"),
        ("AsyncClient.__init__", "AsyncDotTxt.__init__"),
    ],
)
def test_signatures_accept_every_dottxt_call(ours, theirs):
    """Every parameter of dottxt 0.3 exists here, callable the same way, same default.

    One widening: a required parameter of theirs may be optional here
    (`response_format` defaults to None, since tools alone are enough); every call
    written for dottxt still works.
    """
    import inspect

    dottxt = pytest.importorskip("dottxt")
    mine = inspect.signature(_attr(openbrace, ours)).parameters
    for name, param in inspect.signature(_attr(dottxt, theirs)).parameters.items():
        if param.kind is param.VAR_KEYWORD:
            assert any(p.kind is p.VAR_KEYWORD for p in mine.values()), name
            continue
        assert name in mine, f"{ours} lacks {name!r}"
        widened = param.default is param.empty and mine[name].default is None
        assert widened or mine[name].default == param.default, name
        if param.kind is param.KEYWORD_ONLY:
            assert mine[name].kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD), name


def _attr(module: Any, dotted: str) -> Any:
    cls, name = dotted.split(".")
    return getattr(getattr(module, cls), name)


def test_dottxt_sdk_reads_our_ndjson_frames(replay, url):
    """The real dottxt client parses the frames our server framers write."""
    dottxt = pytest.importorskip("dottxt")

    async def main() -> list[Any]:
        client = dottxt.AsyncDotTxt(api_key="k", base_url=url)
        try:
            return [e async for e in client.stream(**ask())]
        finally:
            await client.close()

    events = asyncio.run(main())
    assert [e.op for e in events] == OPS  # U+2028 and U+0085 inside values included
