"""GGUF files from the Hugging Face Hub, in the standard Hugging Face cache.

`hub_file("owner/repo:Q4_K_M")` returns the local path of the chosen GGUF (the first
shard of a split one), downloading it through `huggingface_hub` if it is not cached.
llama.cpp's conventions: QUANT picks the GGUF whose name contains it
(case-insensitive); without one, `Q4_K_M` if the repo has it, else its only GGUF.

- The environment is read on every call, not at import: `HF_HOME` / `HF_HUB_CACHE`
  (where), `HF_ENDPOINT` (which Hub), `HF_HUB_OFFLINE` (never the network) and
  `HF_TOKEN` (gated or private repos).
- A verified cached file is used without touching the network, online or not.
- Integrity: `huggingface_hub` does not hash what it downloads over HTTP, so every
  GGUF is hashed here against the Hub's LFS sha256 before its first use. A mismatch
  removes the file and raises; a match leaves a marker (`HF_HOME/openbrace/verified/`)
  so the ~1 s/GB hash runs once.
- A dropped connection is resumed by `huggingface_hub` with an HTTP Range request;
  a killed process's partial file is restarted (huggingface_hub >= 1 downloads into a
  temporary file per process) and removed once the file is complete.

Every failure is a `HubError`, one line naming the repo, file or setting at fault.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...exceptions import HubError
from .catalog import CATALOG
from .files import is_gguf, sha256_file

__all__ = ["HubError", "HubRef", "hub_file", "parse_ref", "select_gguf"]

DEFAULT_QUANT = "Q4_K_M"
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class HubRef:
    """A GGUF on the Hub: a repo and a QUANT, or a repo and an exact file name."""

    repo: str
    quant: str | None = None
    filename: str | None = None
    revision: str = "main"

    def __str__(self) -> str:
        tail = f":{self.quant}" if self.quant else (f"/{self.filename}" if self.filename else "")
        return self.repo + tail


def parse_ref(spec: str, filename: str | None = None) -> HubRef:
    """`OWNER/REPO[:QUANT]` or a catalog alias (`qwen2.5-0.5b`, `qwen2.5-0.5b:q8_0`).

    Raises:
        HubError: neither a repo id nor a known alias.
    """
    name, _, quant = spec.strip().partition(":")
    entry = CATALOG.get(name.lower())
    if entry is not None:
        return HubRef(entry.repo, quant or entry.quant, filename)
    if not _REPO.match(name):
        aliases = ", ".join(CATALOG)
        raise HubError(f"{spec!r} is not OWNER/REPO[:QUANT] nor a catalog alias ({aliases})")
    return HubRef(name, quant or None, filename)


def select_gguf(names: Sequence[str], quant: str | None, filename: str | None = None) -> list[str]:
    """The file(s) to download: one GGUF, or every shard of a split one, in order.

    Raises:
        HubError: no match, or several (listing what exists).
    """
    ggufs = sorted(n for n in names if n.lower().endswith(".gguf"))
    if filename is not None:
        chosen = [n for n in ggufs if n == filename]
        if not chosen:
            raise HubError(f"no file {filename!r} in the repo; its GGUFs: {_listed(ggufs)}")
        return _with_shards(chosen[0], ggufs)
    models = sorted({_first_shard(n) for n in ggufs})
    if not models:
        raise HubError(f"the repo has no GGUF file (files: {_listed(sorted(names))})")
    if quant is None:
        matches = [n for n in models if DEFAULT_QUANT.lower() in n.lower()]
        if not matches and len(models) == 1:
            matches = models
        if not matches:
            raise HubError(
                f"several GGUFs and none is {DEFAULT_QUANT}: add :QUANT, one of {_listed(models)}"
            )
    else:
        matches = [n for n in models if quant.lower() in n.lower()]
        if not matches:
            raise HubError(f"no GGUF matches quant {quant!r}; the repo has {_listed(models)}")
    if len(matches) > 1:
        raise HubError(
            f"quant {quant or DEFAULT_QUANT!r} matches several GGUFs: {_listed(matches)}"
        )
    return _with_shards(matches[0], ggufs)


def hub_file(ref: HubRef | str, *, progress: bool = True) -> Path:
    """The local path of `ref`'s GGUF (its first shard), downloaded and verified if needed.

    Raises:
        HubError: unknown repo or quant, no network and not cached, a download that
            does not match the Hub's sha256 (the file is removed), not a GGUF.
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    settings = _Settings.from_env()
    cached = _from_cache(ref, settings)
    if cached is not None:
        return cached
    if settings.offline:
        raise HubError(
            f"{ref} is not in the Hugging Face cache ({settings.cache_dir}) and HF_HUB_OFFLINE "
            f"is set: download it first with `openbrace pull {ref}` where the Hub is reachable"
        )
    listing = _listing(ref, settings)
    chosen = select_gguf(list(listing), ref.quant, ref.filename)
    paths = [_download(ref, name, listing[name], settings, progress) for name in chosen]
    if ref.quant is None and ref.filename is None:
        _default_path(ref, settings).write_text(chosen[0])
    return paths[0]


# -- the cache ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    cache_dir: Path
    marks: Path
    endpoint: str | None
    token: str | None
    offline: bool

    @classmethod
    def from_env(cls) -> _Settings:
        env = os.environ
        home = Path(
            env.get("HF_HOME") or Path(env.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
        )
        home = home.expanduser()
        cache = Path(env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or home / "hub")
        offline = env.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
        return cls(
            cache_dir=cache.expanduser(),
            marks=home / "openbrace" / "verified",
            endpoint=(env.get("HF_ENDPOINT") or "").rstrip("/") or None,
            token=env.get("HF_TOKEN") or None,
            offline=offline,
        )


def _snapshot(ref: HubRef, settings: _Settings) -> Path | None:
    """The cached snapshot folder of the ref's revision (the documented cache layout)."""
    repo_dir = settings.cache_dir / ("models--" + ref.repo.replace("/", "--"))
    ref_file = repo_dir / "refs" / ref.revision
    commit = ref_file.read_text().strip() if ref_file.is_file() else ref.revision
    folder = repo_dir / "snapshots" / commit
    return folder if folder.is_dir() else None


def _from_cache(ref: HubRef, settings: _Settings) -> Path | None:
    """The cached GGUF if every file of it is there and verified; else None."""
    folder = _snapshot(ref, settings)
    if folder is None:
        return None
    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf")]
    if ref.quant is None and ref.filename is None:
        # "The only GGUF" holds for the repo, not for what happens to be cached.
        remembered = _default_file(ref, settings)
        names = [remembered] if remembered in names else [n for n in names if _is_default(n)]
    try:
        chosen = select_gguf(names, ref.quant, ref.filename)
    except HubError:
        return None  # not (fully) cached: the Hub decides what exists
    paths = [folder / name for name in chosen]
    if all(p.is_file() and _is_verified(p, settings) for p in paths):
        return paths[0]
    return None


def _is_default(name: str) -> bool:
    return DEFAULT_QUANT.lower() in name.lower()


def _default_path(ref: HubRef, settings: _Settings) -> Path:
    """Where the file a QUANT-less ref resolved to online is remembered, for offline use."""
    folder = settings.marks.parent / "defaults"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{ref.repo.replace('/', '--')}--{ref.revision}"


def _default_file(ref: HubRef, settings: _Settings) -> str | None:
    path = _default_path(ref, settings)
    return path.read_text().strip() if path.is_file() else None


def _is_verified(path: Path, settings: _Settings) -> bool:
    blob = path.resolve()
    mark = settings.marks / blob.name
    return mark.is_file() and mark.read_text().strip() == str(blob.stat().st_size)


# -- the Hub ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Remote:
    size: int | None
    sha256: str | None


def _listing(ref: HubRef, settings: _Settings) -> dict[str, _Remote]:
    """The repo's files with their LFS sha256, from one Hub API call."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=settings.endpoint, token=settings.token).model_info(
            ref.repo, revision=ref.revision, files_metadata=True
        )
    except Exception as exc:
        raise _hub_error(exc, ref, settings) from None
    return {
        s.rfilename: _Remote(s.size, s.lfs.sha256 if s.lfs else None) for s in info.siblings or []
    }


def _download(ref: HubRef, name: str, remote: _Remote, settings: _Settings, progress: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils.tqdm import disable_progress_bars, enable_progress_bars

    if not progress:
        disable_progress_bars("huggingface_hub.http_get")
    try:
        path = Path(
            hf_hub_download(
                ref.repo,
                name,
                revision=ref.revision,
                cache_dir=settings.cache_dir,
                endpoint=settings.endpoint,
                token=settings.token,
            )
        )
    except Exception as exc:
        raise _hub_error(exc, ref, settings) from None
    finally:
        if not progress:
            enable_progress_bars("huggingface_hub.http_get")
    _verify(ref, name, path, remote, settings)
    # A killed download leaves its temporary file; hf_hub_download held the blob's lock,
    # so none is being written now.
    for leftover in path.resolve().parent.glob(path.resolve().name + "*.incomplete"):
        leftover.unlink(missing_ok=True)
    return path


def _verify(ref: HubRef, name: str, path: Path, remote: _Remote, settings: _Settings) -> None:
    """Hash the download against the Hub's sha256; remove it on a mismatch."""
    blob = path.resolve()
    if remote.sha256 is None:
        raise HubError(
            f"{ref.repo}/{name}: the Hub gives no LFS sha256 for it, so it cannot be verified"
        )
    digest = sha256_file(blob)
    if digest != remote.sha256.lower():
        blob.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise HubError(
            f"{ref.repo}/{name} is corrupt: the Hub's sha256 is {remote.sha256}, the download's is "
            f"{digest}; the file was removed, run the command again to download it again"
        )
    if not is_gguf(blob):
        raise HubError(f"{ref.repo}/{name} is not a GGUF file (it does not start with 'GGUF')")
    settings.marks.mkdir(parents=True, exist_ok=True)
    (settings.marks / blob.name).write_text(str(blob.stat().st_size))


def _hub_error(exc: Exception, ref: HubRef, settings: _Settings) -> HubError:
    """One line for whatever `huggingface_hub` raised."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = settings.endpoint or "https://huggingface.co"
    if isinstance(exc, GatedRepoError):
        return HubError(f"{ref.repo} is gated: accept its terms on the Hub and set HF_TOKEN")
    if isinstance(exc, RepositoryNotFoundError):
        hint = "" if settings.token else " (if it is private or gated, set HF_TOKEN)"
        return HubError(f"no repo {ref.repo!r} on the Hub at {where}{hint}")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"{ref.repo} has no revision {ref.revision!r}")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return HubError(f"the Hub at {where} answered HTTP {status} for {ref}")
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return HubError(
        f"cannot reach the Hub at {where} and {ref} is not in the cache "
        f"({settings.cache_dir}): {reason}"
    )


def _first_shard(name: str) -> str:
    match = _SPLIT.search(name)
    return name[: match.start()] + "-00001-of-" + match.group(2) + ".gguf" if match else name


def _with_shards(first: str, names: Sequence[str]) -> list[str]:
    match = _SPLIT.search(first)
    if not match:
        return [first]
    stem, total = first[: match.start()], int(match.group(2))
    wanted = [f"{stem}-{i:05d}-of-{match.group(2)}.gguf" for i in range(1, total + 1)]
    lower = {n.lower(): n for n in names}
    missing = [w for w in wanted if w.lower() not in lower]
    if missing:
        raise HubError(f"split GGUF {first!r} lacks shard(s) {_listed(missing)}")
    return [lower[w.lower()] for w in wanted]


def _listed(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return (
        shown + (f", ... ({len(names)} in all)" if len(names) > limit else "") if names else "none"
    )
