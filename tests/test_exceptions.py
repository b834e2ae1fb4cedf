"""The exception tree: the `openbrace.exceptions` docstring draws every class, where it is."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import openbrace
from openbrace import exceptions
from openbrace.exceptions import (
    EngineUnavailableError,
    OpenBraceError,
    PatchStreamError,
    RequestError,
)


def drawn_tree() -> dict[str, str | None]:
    """Each class drawn in the docstring, mapped to the class it hangs from."""
    block = exceptions.__doc__.split("```")[1]  # type: ignore[union-attr]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []  # (column, name) of the open branches
    for line in block.strip("\n").splitlines():
        found = re.search(r"[A-Za-z]\w*", line)
        assert found, line
        column, name = found.start(), found.group()
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((column, name))
    return parents


def test_the_docstring_draws_every_exception_class_under_its_parent() -> None:
    defined = {
        name: cls
        for name, cls in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == exceptions.__name__
    }
    tree = drawn_tree()
    assert set(tree) == set(defined), "add the missing classes to the docstring tree"
    for name, parent in tree.items():
        cls = defined[name]
        if parent is None:
            assert cls is OpenBraceError
        else:
            assert defined[parent] in cls.__bases__, f"{name} is drawn under {parent}"


def test_no_openbrace_error_is_defined_outside_the_tree() -> None:
    for module in pkgutil.walk_packages(openbrace.__path__, "openbrace."):
        importlib.import_module(module.name)  # every module, so every subclass is seen
    pending, seen = [OpenBraceError], set()
    while pending:
        cls = pending.pop()
        seen.add(cls)
        pending.extend(cls.__subclasses__())
    outside = {
        f"{c.__module__}.{c.__qualname__}" for c in seen if c.__module__ != exceptions.__name__
    }
    assert not outside, "define openbrace errors in openbrace.exceptions"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "invalid_request_error"),
        (429, "rate_limit_error"),
        (502, "upstream_error"),
        (503, "server_error"),
        (504, "timeout"),
    ],
)
def test_a_refusal_types_itself_from_its_status(status: int, kind: str) -> None:
    assert RequestError("no", status=status).type == kind
    assert RequestError("no", status=status, type="length").type == "length"


def test_an_in_process_refusal_is_the_patch_stream_error_http_would_raise() -> None:
    """The error object is the refusal's own; the body is what the server sends."""
    refusal = EngineUnavailableError("the model is loading")
    error = PatchStreamError.from_request_error(refusal)
    assert error.status_code == 503
    assert (
        error.error
        == refusal.to_error()
        == {
            "message": "the model is loading",
            "type": "server_error",
            "param": None,
            "code": "engine_unavailable",
        }
    )
    assert PatchStreamError(503, error.body).error == error.error
    # In-process no HTTP was spoken: the message names no status (status_code keeps it).
    assert str(error) == "the model is loading"
    assert str(PatchStreamError(503, error.body)) == "HTTP 503: the model is loading"
