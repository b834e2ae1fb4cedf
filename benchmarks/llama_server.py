"""llama.cpp's own `llama-server`, built from the sources vendored in llama-cpp-python.

The parallel benchmark compares the embedded engine with `llama-server -np N`
running the same model file. The binary is built once, from the llama.cpp tree
inside the llama-cpp-python sdist of the installed version (the same llama.cpp the
engine runs), and cached:

    ~/.cache/openbrace/llama-server/<version>/sdist/   the sdist ($LLAMA_CPP_SDIST, or pip download)
    ~/.cache/openbrace/llama-server/<version>/src/     its unpacked tree
    ~/.cache/openbrace/llama-server/<version>/build/   cmake build; bin/llama-server

`python -m benchmarks.llama_server` builds it (a few minutes on two cores) and
prints its path; a present binary is reused as is.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

__all__ = ["binary", "running"]

_NAME = "llama_cpp_python"


def _root() -> Path:
    version = importlib.metadata.version("llama-cpp-python")
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "openbrace" / "llama-server" / version


def binary() -> Path:
    """The path of `llama-server`, built first if it is not there yet."""
    root = _root()
    path = root / "build" / "bin" / "llama-server"
    if path.is_file():
        return path
    source = _unpacked(root)
    build = root / "build"
    flags = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_CURL=OFF"]
    flags += ["-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
    subprocess.run(["cmake", "-S", str(source), "-B", str(build), *flags], check=True)
    jobs = str(os.cpu_count() or 2)
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], check=True
    )
    return path


def _unpacked(root: Path) -> Path:
    """The vendored llama.cpp tree of the sdist, unpacked under `root/src`."""
    version = root.name
    tree = root / "src" / f"{_NAME}-{version}" / "vendor" / "llama.cpp"
    if tree.is_dir():
        return tree
    archive = _sdist(root / "sdist", version)
    with tarfile.open(archive) as tar:
        tar.extractall(root / "src", filter="data")
    return tree


def _sdist(folder: Path, version: str) -> Path:
    """The sdist: $LLAMA_CPP_SDIST, or already in `folder`, else `pip download`ed."""
    given = os.environ.get("LLAMA_CPP_SDIST")
    if given:
        return Path(given)
    target = folder / f"{_NAME}-{version}.tar.gz"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(  # pip's own cache answers when it has the file
        [
            *(sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}"),
            *("--no-deps", "--no-binary", ":all:", "-d", str(folder)),
        ],
        check=True,
    )
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(
    model: Path, *, parallel: int, n_ctx: int, threads: int, extra: Sequence[str] = ()
) -> Iterator[str]:
    """`llama-server -np parallel` on `model`, on loopback; yields its base URL.

    `n_ctx` is per sequence (llama-server's `-c` is the total it splits).
    """
    port = _free_port()
    command = [str(binary()), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    command += ["-np", str(parallel), "-c", str(n_ctx * parallel), "-t", str(threads)]
    command += ["-tb", str(threads), "--no-webui", *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not start: {' '.join(command)}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    print(binary())
