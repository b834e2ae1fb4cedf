"""A loopback stand-in for the Hugging Face Hub: the two endpoints `huggingface_hub` uses.

The Hub cannot be reached from here, so this serves files under repo names the way
the Hub does, and the real `huggingface_hub` client talks to it via `HF_ENDPOINT`:

- `GET /api/models/{repo}[/revision/{rev}]` (`HfApi.model_info`, with `?blobs=true`
  each file's size and LFS sha256);
- `HEAD` / `GET /{repo}/resolve/{rev}/{file}` (`hf_hub_download`): the headers the
  client reads (`X-Repo-Commit`, `X-Linked-Etag` = the sha256, `X-Linked-Size`) and
  the bytes, honouring `Range` so interrupted downloads can resume.
- unknown repos and files: 404 with the Hub's `X-Error-Code` header.

```python
hub = StandInHub({"acme/tiny-GGUF": {"tiny-Q4_K_M.gguf": path}})
with LoopbackServer(hub.app()) as server: ...   # HF_ENDPOINT=server.url
```

Faults, for the tests: `corrupt` (serve one flipped byte while announcing the true
sha256), `cut_at` (drop the connection once, after that many bytes of a file),
`stall(n)` (send n bytes of a file, then hang until `release()`).
`requests` records `(method, path, Range header)`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["StandInHub"]

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_CHUNK = 1 << 16


@dataclass
class _File:
    path: Path
    size: int
    sha256: str


class StandInHub:
    """Repos of files (`{"owner/name": {"file.gguf": Path}}`) served as the Hub does."""

    def __init__(self, repos: dict[str, dict[str, Path]]):
        self.repos = {
            repo: {name: _describe(path) for name, path in files.items()}
            for repo, files in repos.items()
        }
        self.corrupt = False
        self.stall_after: int | None = None
        self.cut_at: int | None = None
        self.requests: list[tuple[str, str, str | None]] = []
        self._released = threading.Event()

    def stall(self, after: int) -> None:
        """Send `after` bytes of each download, then hang until `release()`."""
        self._released.clear()
        self.stall_after = after

    def release(self) -> None:
        """Let stalled downloads go on (and stop stalling new ones)."""
        self.stall_after = None
        self._released.set()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/models/{owner}/{name}", self._info),
                Route("/api/models/{owner}/{name}/revision/{rev}", self._info),
                Route(
                    "/{owner}/{name}/resolve/{rev}/{file:path}",
                    self._resolve,
                    methods=["GET", "HEAD"],
                ),
            ]
        )

    async def _info(self, request: Request) -> Response:
        self._record(request)
        repo = f"{request.path_params['owner']}/{request.path_params['name']}"
        files = self.repos.get(repo)
        if files is None:
            return _not_found("RepoNotFound", f"Repository Not Found for url: {request.url}.")
        blobs = request.query_params.get("blobs") in ("1", "true", "True")
        siblings = [
            {"rfilename": name}
            | ({"size": f.size, "blobId": f.sha256[:40], "lfs": _lfs(f)} if blobs else {})
            for name, f in files.items()
        ]
        return JSONResponse({"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings})

    async def _resolve(self, request: Request) -> Response:
        self._record(request)
        repo = f"{request.path_params['owner']}/{request.path_params['name']}"
        files = self.repos.get(repo)
        if files is None:
            return _not_found("RepoNotFound", "Repository Not Found")
        file = files.get(request.path_params["file"])
        if file is None:
            return _not_found("EntryNotFound", "Entry not found")
        headers = {
            "X-Repo-Commit": COMMIT,
            "X-Linked-Etag": f'"{file.sha256}"',
            "X-Linked-Size": str(file.size),
            "ETag": f'"{file.sha256}"',
            "Accept-Ranges": "bytes",
        }
        start = _range_start(request.headers.get("range"))
        if request.method == "HEAD":
            return Response(headers={**headers, "Content-Length": str(file.size)})
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{file.size - 1}/{file.size}"
        headers["Content-Length"] = str(file.size - start)
        return StreamingResponse(self._bytes(file, start), status_code=status, headers=headers)

    async def _bytes(self, file: _File, start: int) -> AsyncIterator[bytes]:
        sent = start
        with file.path.open("rb") as handle:
            handle.seek(start)
            while chunk := handle.read(_CHUNK):
                if self.corrupt and sent <= file.size // 2 < sent + len(chunk):
                    at = file.size // 2 - sent
                    chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]
                if self.cut_at is not None and sent + len(chunk) > self.cut_at:
                    yield chunk[: self.cut_at - sent]
                    self.cut_at = None
                    raise ConnectionResetError("the stand-in Hub cut the download (a test fault)")
                stall = self.stall_after
                if stall is not None and sent + len(chunk) > stall:
                    yield chunk[: max(0, stall - sent)]
                    await anyio.to_thread.run_sync(self._released.wait)
                    chunk = chunk[max(0, stall - sent) :]
                sent += len(chunk)
                yield chunk

    def _record(self, request: Request) -> None:
        self.requests.append((request.method, request.url.path, request.headers.get("range")))


def _describe(path: Path) -> _File:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return _File(path, path.stat().st_size, digest.hexdigest())


def _lfs(file: _File) -> dict[str, object]:
    return {"size": file.size, "sha256": file.sha256, "pointerSize": 134}


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    return int(header.removeprefix("bytes=").split("-")[0] or 0)


def _not_found(code: str, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=404, headers={"X-Error-Code": code})
