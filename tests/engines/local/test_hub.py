"""GGUFs from the Hugging Face Hub: pull, cache, offline, integrity, interruptions, errors.

The Hub is the only stand-in (`tests.support.hub.StandInHub` on loopback, reached by
the real `huggingface_hub` client through HF_ENDPOINT); the cache, the hashing, the
CLI and the model loading are the real ones. Each test gets its own HF_HOME.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openbrace.engines.base import GenerationRequest
from openbrace.engines.local import LocalEngine, default_model_path
from openbrace.engines.local.hub import HubError, hub_file, select_gguf
from tests.support.hub import StandInHub
from tests.support.loopback import LoopbackServer, wait_until
from tests.support.process import stop_process

REPO = "acme/smol-GGUF"
SCHEMA = {
    "type": "object",
    "properties": {"intent": {"type": "string", "enum": ["billing", "technical"]}},
    "required": ["intent"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small files shaped like the shards of a split GGUF (GGUF magic, then bytes)."""
    folder = tmp_path_factory.mktemp("shards")
    files = {}
    for i in (1, 2):
        name = f"big-Q4_K_M-0000{i}-of-00002.gguf"
        (folder / name).write_bytes(b"GGUF" + os.urandom(50_000))
        files[name] = folder / name
    return files


@pytest.fixture(scope="module")
def hub(shards: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The stand-in Hub with the shipped GGUF under a repo name, on loopback."""
    folder = tmp_path_factory.mktemp("repo")
    (folder / "README.md").write_text("# smol\n")
    (folder / "not-a-model-Q4_K_M.gguf").write_text("this is text, not a GGUF\n")
    model = default_model_path()
    stand_in = StandInHub(
        {
            REPO: {
                "smol-135m-Q4_K_M.gguf": model,
                "smol-135m-Q8_0.gguf": model,
                "README.md": folder / "README.md",
            },
            "acme/split-GGUF": shards,
            "acme/broken-GGUF": {"not-a-model-Q4_K_M.gguf": folder / "not-a-model-Q4_K_M.gguf"},
        }
    )
    with LoopbackServer(stand_in.app(), access_log=False) as server:
        stand_in.url = server.url
        yield stand_in


@pytest.fixture
def env(hub: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh HF_HOME pointed at the stand-in Hub, for this process and subprocesses."""
    hub.corrupt = False
    hub.release()
    hub.requests.clear()
    values = {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub.url}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return {**os.environ, **values}


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openbrace.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _models(port: int) -> list[str] | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    except httpx.HTTPError:
        return None
    return [model["id"] for model in answer.json()["data"]]


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("openbrace: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


async def _intent(engine: LocalEngine) -> Any:
    request = GenerationRequest(
        model=engine.model_id,
        messages=[{"role": "user", "content": "I was charged twice."}],
        schema=SCHEMA,
        temperature=0,
        max_tokens=20,
    )
    parts = [part async for part in engine.generate(request)]
    await engine.aclose()
    return json.loads("".join(str(p) for p in parts[:-1]))


@pytest.mark.model
def test_pull_then_serve_from_the_cache_without_the_hub(
    hub: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`openbrace pull` downloads with a progress bar; later runs never touch the network."""
    # huggingface_hub draws its bar on a terminal only; TQDM_POSITION=-1 forces it here.
    pulled = _cli("pull", REPO, env={**env, "TQDM_POSITION": "-1"})
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip().split(": ", 1)[1])
    assert path.read_bytes()[:4] == b"GGUF" and path.name == "smol-135m-Q4_K_M.gguf"
    assert "100%" in pulled.stderr and "smol-135m-Q4_K_M.gguf" in pulled.stderr
    assert [r for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]]

    hub.requests.clear()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the Hub is gone
    engine = LocalEngine.from_hub(REPO, n_threads=1)
    assert engine.model_id == REPO
    assert anyio.run(_intent, engine)["intent"] in ("billing", "technical")
    assert hub.requests == []

    port = _free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "openbrace.cli", "serve", "-hf", REPO, "--port", str(port)],
        env={**env, "HF_ENDPOINT": "http://127.0.0.1:9"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: _models(port) is not None, timeout=60)
        assert _models(port) == [REPO]
    finally:
        stop_process(serve)
    gone = {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}
    listed = _cli("models", "-hf", REPO, env=gone)
    assert listed.stdout.split() == [REPO], listed.stderr
    generated = _cli("generate", "-hf", REPO, "-s", json.dumps(SCHEMA), "Charged twice", env=gone)
    assert json.loads(generated.stdout)["intent"] in ("billing", "technical"), generated.stderr
    assert hub.requests == []


def test_offline_mode_uses_the_cache_and_says_what_is_missing(
    hub: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HF_HUB_OFFLINE=1: cached files load with no request; others are one clear error."""
    cached = hub_file(REPO + ":Q8_0", progress=False)
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_file(REPO + ":q8_0", progress=False) == cached
    with pytest.raises(HubError, match=r"not in the Hugging Face cache .* HF_HUB_OFFLINE"):
        hub_file(REPO, progress=False)  # Q4_K_M was never downloaded
    assert hub.requests == []


def test_unknown_repo_and_unknown_quant_are_one_line(env: dict[str, str]) -> None:
    """The CLI names the missing repo, or lists the GGUFs that do exist."""
    repo = _one_line_error(_cli("pull", "acme/nope", env=env))
    assert "no repo 'acme/nope'" in repo
    quant = _one_line_error(_cli("pull", REPO + ":IQ2_XS", env=env))
    assert "IQ2_XS" in quant
    assert "smol-135m-Q4_K_M.gguf" in quant and "smol-135m-Q8_0.gguf" in quant


def test_no_network_and_nothing_cached_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    """With the Hub unreachable, the error says so and where the cache is."""
    offline = {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}
    line = _one_line_error(
        _cli("generate", "-hf", REPO, "-s", json.dumps(SCHEMA), "hi", env=offline)
    )
    assert "cannot reach the Hub at http://127.0.0.1:9" in line
    assert str(tmp_path / "hf") in line


def test_a_corrupted_download_is_refused_removed_and_fetched_again(
    hub: Any, env: dict[str, str]
) -> None:
    """One flipped byte: the error names the file and both hashes; nothing bad stays cached."""
    hub.corrupt = True
    with pytest.raises(HubError) as refused:
        hub_file(REPO, progress=False)
    expected = hub.repos[REPO]["smol-135m-Q4_K_M.gguf"].sha256
    message = str(refused.value)
    assert "smol-135m-Q4_K_M.gguf" in message and expected in message
    assert "\n" not in message
    blobs = list(Path(env["HF_HOME"]).rglob("blobs/*"))
    assert blobs == []  # the bad bytes are gone, so they can never be loaded

    hub.corrupt = False
    path = hub_file(REPO, progress=False)
    assert path.resolve().name == expected


def test_a_dropped_connection_resumes_where_it_stopped(hub: Any, env: dict[str, str]) -> None:
    """The Hub drops the download halfway: it resumes with a Range request, verified."""
    hub.cut_at = 25_000_000
    path = hub_file(REPO, progress=False)
    ranges = [r[2] for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]]
    assert ranges[0] is None and ranges[1] == "bytes=20971520-"  # the two 10 MiB chunks kept
    assert path.resolve().name == hub.repos[REPO]["smol-135m-Q4_K_M.gguf"].sha256


def test_a_killed_pull_leaves_nothing_behind_once_pulled_again(
    hub: Any, env: dict[str, str]
) -> None:
    """A pull killed mid-download: the next one gets a verified file and clears the partial."""
    hub.stall(30_000_000)  # huggingface_hub writes in 10 MiB chunks: two land first
    pull = subprocess.Popen(
        [sys.executable, "-m", "openbrace.cli", "pull", REPO],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    home = Path(env["HF_HOME"])

    def partial() -> int:
        return max((p.stat().st_size for p in home.rglob("*.incomplete")), default=0)

    try:
        assert wait_until(lambda: partial() >= 20 * 1024 * 1024, timeout=60)
    finally:
        pull.send_signal(signal.SIGKILL)
        pull.wait(10)
    kept = partial()
    hub.release()
    again = _cli("pull", REPO, env=env)
    assert again.returncode == 0, again.stderr
    ranges = [r[2] for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]]
    # huggingface_hub >= 1 restarts in a fresh temporary file; older ones resumed.
    assert ranges[0] is None and ranges[-1] in (None, f"bytes={kept}-")
    path = Path(again.stdout.strip().split(": ", 1)[1])
    assert path.resolve().name == hub.repos[REPO]["smol-135m-Q4_K_M.gguf"].sha256
    assert list(home.rglob("*.incomplete")) == []


def test_a_split_gguf_downloads_every_shard_side_by_side(hub: Any, env: dict[str, str]) -> None:
    """The first shard's path is returned; llama.cpp finds the others next to it."""
    first = hub_file("acme/split-GGUF", progress=False)
    assert first.name == "big-Q4_K_M-00001-of-00002.gguf"
    assert (first.parent / "big-Q4_K_M-00002-of-00002.gguf").is_file()


def test_a_file_that_is_not_a_gguf_is_refused(
    hub: Any, env: dict[str, str], tmp_path: Path
) -> None:
    """From the Hub and from --model-file alike, before llama.cpp sees it."""
    with pytest.raises(HubError, match="not a GGUF file"):
        hub_file("acme/broken-GGUF", progress=False)
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    line = _one_line_error(_cli("generate", "--hf-file", "x.gguf", "-s", "{}", "hi", env=env))
    assert "--hf-file needs --hf-repo" in line
    with pytest.raises(Exception, match="not a GGUF file"):
        anyio.run(LocalEngine(text).load)


def test_catalog_aliases_resolve_to_repos_and_quants(capsys: pytest.CaptureFixture[str]) -> None:
    """`models --catalog` lists aliases with size and license, and says none ran here."""
    from openbrace.cli import main
    from openbrace.engines.local.hub import parse_ref

    assert main(["models", "--catalog"]) == 0
    out = capsys.readouterr().out
    assert "qwen2.5-0.5b" in out and "Apache-2.0" in out and "GB" in out
    assert "None of these was downloadable" in out
    ref = parse_ref("qwen2.5-0.5b")
    assert (ref.repo, ref.quant) == ("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "q4_k_m")
    assert parse_ref("qwen2.5-0.5b:q8_0").quant == "q8_0"
    with pytest.raises(HubError, match="not OWNER/REPO"):
        parse_ref("no-slash")


# -- choosing the file --------------------------------------------------------------------

NAMES = [
    "model-Q4_K_M.gguf",
    "model-Q8_0.gguf",
    "model-F16-00001-of-00002.gguf",
    "model-F16-00002-of-00002.gguf",
    "README.md",
]


def test_quant_selection_follows_llama_cpp() -> None:
    """QUANT is a case-insensitive part of the name; Q4_K_M by default; shards together."""
    assert select_gguf(NAMES, None) == ["model-Q4_K_M.gguf"]
    assert select_gguf(NAMES, "q8_0") == ["model-Q8_0.gguf"]
    assert select_gguf(NAMES, "f16") == [
        "model-F16-00001-of-00002.gguf",
        "model-F16-00002-of-00002.gguf",
    ]
    assert select_gguf(["only.gguf", "x.txt"], None) == ["only.gguf"]
    with pytest.raises(HubError, match=r"none is Q4_K_M.*model-Q8_0\.gguf"):
        select_gguf(["model-Q8_0.gguf", "model-Q6_K.gguf"], None)
    with pytest.raises(HubError, match="lacks shard"):
        select_gguf(["m-00001-of-00003.gguf", "m-00002-of-00003.gguf"], None)
    with pytest.raises(HubError, match="matches several"):
        select_gguf(["a-Q4_K_M.gguf", "b-Q4_K_M.gguf"], None)


_QUANTS = ["Q2_K", "Q3_K_S", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16"]


@given(st.lists(st.sampled_from(_QUANTS), min_size=1, unique=True), st.data())
def test_any_listed_quant_selects_exactly_its_file(quants: list[str], data: Any) -> None:
    """Whatever the repo holds, asking for one of its quants (any case) gets that file."""
    names = [f"m-{q}.gguf" for q in quants] + ["README.md"]
    wanted = data.draw(st.sampled_from(quants))
    asked = data.draw(st.sampled_from([wanted, wanted.lower()]))
    assert select_gguf(names, asked) == [f"m-{wanted}.gguf"]
