"""Tests of `openbrace.wire`: the pure codec, and the server's asyncio framers."""

from __future__ import annotations

from typing import Any

from openbrace import wire

__all__ = ["decode_all"]


def decode_all(decoder: wire.NDJSONDecoder | wire.SSEDecoder, chunks: list[bytes]) -> list[Any]:
    """Every record `decoder` makes of `chunks`, fed one by one, then closed."""
    out: list[Any] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.close()
