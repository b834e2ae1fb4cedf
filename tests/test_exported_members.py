"""The public surface: `openbrace.__all__` and each module's `__all__` match what exists."""

from __future__ import annotations

import importlib
import types

import openbrace
from openbrace import wire


def test_exported_members():
    """`openbrace.__all__` lists exactly the public names (httpx `test_exported_members`)."""
    public = {
        name
        for name, value in vars(openbrace).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert openbrace.__all__ == sorted(openbrace.__all__)
    assert set(openbrace.__all__) == public
    for name in openbrace.__all__:
        assert getattr(openbrace, name).__doc__, f"{name} has no docstring"
    for path in ("client", "request", "schema", "validation", "pointer", "wire", "_inprocess"):
        module = importlib.import_module(f"openbrace.{path}")
        assert all(hasattr(module, name) for name in module.__all__)
    # `openbrace.wire` re-exports exactly the public names of its two modules.
    parts = [importlib.import_module(f"openbrace.wire.{name}") for name in ("codec", "pumps")]
    assert sorted(wire.__all__) == sorted(name for part in parts for name in part.__all__)
    assert openbrace.DotTxt is openbrace.Client and openbrace.AsyncDotTxt is openbrace.AsyncClient
