"""The `openbrace` command.

Each subcommand is one `_cmd_NAME(args) -> int` function; `main` only parses and
dispatches. Errors print as one clear line (or a JSON object with `--json`),
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from .exceptions import InvalidRequestError, InvalidSchemaError, OpenBraceError, TransportError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openbrace", description="Stream structured LLM output field by field."
    )
    parser.add_argument("--json", action="store_true", help="print errors as JSON objects")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_client_commands(commands)
    _add_serve_command(commands)
    _add_demo_command(commands)
    _add_pull_command(commands)
    return parser


def _fail(args: argparse.Namespace, message: str, kind: str = "error") -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"type": kind, "message": message}}), file=sys.stderr)
    else:
        print(f"openbrace: {message}", file=sys.stderr)
    return 1


# --- stream, generate, models, schema check: the SDK from a terminal -----------------

_ENGINE_HINT = "unset: the embedded model, in-process"


def _add_client_commands(commands: Any) -> None:
    errors = argparse.ArgumentParser(add_help=False)
    errors.add_argument(  # also accepted after the subcommand
        "--json", action="store_true", default=argparse.SUPPRESS, help="print errors as JSON"
    )
    client = argparse.ArgumentParser(add_help=False, parents=[errors])
    client.add_argument(
        "--base-url", help=f"a server (default $OPENBRACE_BASE_URL; {_ENGINE_HINT})"
    )
    client.add_argument("--api-key", help="the server's API key (default $OPENBRACE_API_KEY)")
    _add_hub_options(client)
    request = argparse.ArgumentParser(add_help=False, parents=[client])
    request.add_argument(
        "-m",
        "--model",
        default=os.environ.get("OPENBRACE_MODEL"),
        help="model id (default $OPENBRACE_MODEL, else the first model listed)",
    )
    request.add_argument("-s", "--schema", help="a JSON Schema file, or inline JSON")
    request.add_argument(
        "--tool",
        action="append",
        metavar="SPEC",
        help="a tool the model may call: a file or inline JSON of an OpenAI tool "
        '(or just its function: {"name", "description", "parameters"}); repeatable',
    )
    request.add_argument(
        "--tool-choice",
        metavar="CHOICE",
        help='with --tool: "auto" (default), "required", "none", or a tool name to call it',
    )
    request.add_argument("prompt", nargs="?", help="the prompt (default: read from stdin)")
    request.add_argument("--system", help="a system message to put before the prompt")
    request.add_argument("--max-tokens", type=int, help="stop after this many tokens")
    request.add_argument("--temperature", type=float)
    request.add_argument("--seed", type=int)
    request.add_argument(
        "--no-resume",
        action="store_true",
        help="do not ask a server for a resumable stream (by default a dropped connection "
        "is resumed where it stopped)",
    )

    stream = commands.add_parser(
        "stream", parents=[request], help="print the JSON Patch ops as they arrive, one per line"
    )
    stream.add_argument(
        "--live", action="store_true", help="draw the fields filling in, with their arrival times"
    )
    stream.add_argument(
        "--partial-strings",
        action="store_true",
        help="also print the text of strings as it is written, as partial records",
    )
    stream.set_defaults(run=_cmd_stream)
    commands.add_parser("generate", parents=[request], help="print the final JSON").set_defaults(
        run=_cmd_generate
    )
    models = commands.add_parser("models", parents=[client], help="list the models")
    models.add_argument(
        "--catalog", action="store_true", help="list the Hub GGUFs known by alias (-hf ALIAS)"
    )
    models.set_defaults(run=_cmd_models)
    schema = commands.add_parser("schema", help="work with JSON Schemas")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    check = schema_commands.add_parser(
        "check", parents=[errors], help="check that a schema is valid and can be enforced"
    )
    check.add_argument("file", help="the JSON Schema file ('-' for stdin)")
    check.set_defaults(run=_cmd_schema_check)


def _cmd_stream(args: argparse.Namespace) -> int:
    return _run_client(args, _stream(args, _request_schema(args), _prompt(args)))


def _cmd_generate(args: argparse.Namespace) -> int:
    return _run_client(args, _generate(args, _request_schema(args), _prompt(args)))


def _request_schema(args: argparse.Namespace) -> Any:
    """The `--schema`, or None when tools alone shape the answer."""
    if args.schema is None:
        if not args.tool:
            raise InvalidRequestError("pass a schema (-s/--schema) or at least one --tool")
        return None
    return _load_schema(args.schema)


def _tools(args: argparse.Namespace) -> list[Any] | None:
    """The `--tool` specs, loaded like schemas (a file, or inline JSON)."""
    return [_load_schema(spec) for spec in args.tool] if args.tool else None


def _cmd_models(args: argparse.Namespace) -> int:
    if args.catalog:
        from .engines.local.catalog import catalog_lines

        print("\n".join(catalog_lines()))
        return 0
    return _run_client(args, _models(args))


def _cmd_schema_check(args: argparse.Namespace) -> int:
    from . import schema as schemas

    document = _load_schema(args.file)
    try:
        schemas.check(document)
        _check_enforceable(schemas.normalize(document))
    except InvalidSchemaError as exc:
        name = "<stdin>" if args.file == "-" else args.file
        if getattr(args, "json", False):
            error = {
                "type": "InvalidSchemaError",
                "message": exc.message,
                "file": name,
                "pointer": exc.pointer,
                "keyword": exc.keyword,
            }
            print(json.dumps({"error": error}), file=sys.stderr)
            return 1
        return _fail(args, f"{name}: {exc.message}")
    print(f"{args.file}: ok")
    return 0


def _check_enforceable(schema: Any) -> None:
    """Compile the schema as the embedded engine would (no model needed: a byte tokenizer)."""
    try:
        import llguidance

        from .engines.local.grammar import SchemaCompiler
    except ImportError:
        return  # without the local extra, only the meta-schema check applies
    SchemaCompiler(llguidance.LLTokenizer("byte")).matcher(schema)


def _load_schema(spec: str) -> Any:
    """A schema from a file, stdin (`-`), or inline JSON text."""
    name = spec
    if spec.lstrip()[:1] in ("{", "["):
        text, name = spec, "inline schema"
    elif spec == "-":
        text, name = sys.stdin.read(), "<stdin>"
    else:
        try:
            with open(spec, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise InvalidSchemaError(f"cannot read {spec}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchemaError(
            f"{name}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def _prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        return str(args.prompt)
    if args.schema == "-":
        raise InvalidRequestError("the schema came from stdin: pass the prompt as an argument")
    if sys.stdin.isatty():
        print("openbrace: reading the prompt from stdin (end with Ctrl-D)", file=sys.stderr)
    prompt = sys.stdin.read().strip()
    if not prompt:
        raise InvalidRequestError("no prompt: pass it as an argument or on stdin")
    return prompt


def _client(args: argparse.Namespace) -> Any:
    from .client import AsyncClient

    engine = _hub_engine(args)
    if engine is not None:
        if args.base_url:
            raise InvalidRequestError("-hf runs the model in this process: drop --base-url")
        return AsyncClient(engine=engine)
    return AsyncClient(api_key=args.api_key, base_url=args.base_url)


def _request(args: argparse.Namespace, model: str, schema: Any, prompt: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    request = {
        "model": model,
        "input": messages,
        "response_format": schema,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "seed": args.seed,
        "resumable": not args.no_resume,  # no effect in-process
    }
    if args.tool:
        request.update(tools=_tools(args), tool_choice=args.tool_choice)
    return request


async def _model_ids(client: Any) -> list[str]:
    """The models the client can use, default first. In-process the engine answers
    itself: no OpenAI SDK, no app and no model load, so `openbrace models` is quick."""
    if client.base_url is None:
        return [m.id for m in await client._get_engine().models()]
    return [str(m.id) for m in (await client.models.list()).data]


async def _model(client: Any, args: argparse.Namespace) -> str:
    if args.model:
        return str(args.model)
    ids = await _model_ids(client)
    if not ids:
        raise InvalidRequestError("the server lists no models: pass one with -m")
    return ids[0]


async def _stream(args: argparse.Namespace, schema: Any, prompt: str) -> int:
    from .events import TextEvent

    async with _client(args) as client:
        request = _request(args, await _model(client, args), schema, prompt)
        if args.live:  # strings type themselves
            from .live import LiveView

            # In-process the first request loads the model: show that, with its clock.
            load = getattr(client._get_engine(), "load", None) if client.base_url is None else None
            loading = load() if load is not None else None
            # With tools the document is the message: its fields appear as they land.
            view = LiveView(schema if not args.tool else {"type": "object"}, title=request["model"])
            await view.run(client.stream(**request, partial_strings=True), loading=loading)
            return 0
        async for event in client.stream(**request, partial_strings=args.partial_strings):
            record = (
                {"partial": {"path": event.path, "text": event.text}}
                if isinstance(event, TextEvent)
                else event.op
            )
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            sys.stdout.write(line + "\n")
            sys.stdout.flush()  # one record per line, the moment it exists
    return 0


async def _generate(args: argparse.Namespace, schema: Any, prompt: str) -> int:
    async with _client(args) as client:
        result = await client.generate(**_request(args, await _model(client, args), schema, prompt))
    if args.tool and isinstance(result, list):  # the model called: the calls, arguments parsed
        result = [
            {"id": c.id, "name": c.name, "arguments": json.loads(c.arguments)} for c in result
        ]
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


async def _models(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        ids = await _model_ids(client)
    print("\n".join(ids))
    return 0


def _run_client(args: argparse.Namespace, work: Coroutine[Any, Any, int]) -> int:
    """Run one SDK coroutine; transport failures become one clear line."""
    import openai

    from .client import _with_scheme

    where = args.base_url or os.environ.get("OPENBRACE_BASE_URL")
    where = _with_scheme(where) if where else "the server"
    try:
        return asyncio.run(work)
    except TransportError as exc:  # its message names the URL and what to check
        return _fail(args, str(exc), "connection")
    # `models` goes through the OpenAI SDK, whose errors are its own.
    except openai.APIConnectionError as exc:
        reason = f"{exc or type(exc).__name__} (is `openbrace serve` running at {where}?)"
        return _fail(args, f"cannot reach {where}: {reason}", "connection")
    except openai.APIStatusError as exc:
        return _fail(args, f"{where} answered HTTP {exc.status_code}: {exc.message}", "http")
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:
        return _fail(args, f"{exc}. Install the extra: pip install 'openbrace[all]'", "import")
    except OpenBraceError as exc:
        return _fail(args, str(exc), type(exc).__name__)


# -- serve (the HTTP server) -------------------------------------------------------


def _add_serve_command(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the OpenAI-compatible HTTP server (patch streaming)",
        description="Serve the embedded model, or front an OpenAI-compatible upstream, "
        "over HTTP. API keys also come from OPENBRACE_API_KEYS (comma-separated).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=8000)
    source = serve.add_mutually_exclusive_group()
    source.add_argument(
        "--upstream",
        metavar="URL",
        help="an OpenAI-compatible server to front (e.g. http://vllm:8000/v1)",
    )
    source.add_argument("--model-file", metavar="GGUF", help="serve this GGUF file locally")
    _add_hub_options(serve, group=source)
    serve.add_argument(
        "--upstream-key",
        metavar="KEY",
        help="the upstream's API key (default: $OPENBRACE_UPSTREAM_KEY)",
    )
    serve.add_argument(
        "--upstream-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds of upstream silence before giving up (default 60)",
    )
    serve.add_argument("--model-id", help="the model id clients ask for (local engine)")
    serve.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="local engine: generations decoded together in one batch (continuous "
        "batching, like llama-server -np N; default 1)",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accept this bearer key (repeatable); none: the server is open",
    )
    serve.add_argument("--max-body-bytes", type=int, default=1_048_576, metavar="N")
    serve.add_argument(
        "--max-concurrent",
        type=int,
        metavar="N",
        help="generations at once (default: --parallel for the local model; 64 for an upstream)",
    )
    serve.add_argument(
        "--max-queue",
        type=int,
        metavar="N",
        help="requests waiting for a slot before 429s (default: 16 local, 256 upstream)",
    )
    serve.add_argument("--request-timeout", type=float, default=300.0, metavar="S")
    serve.add_argument(
        "--keepalive",
        type=float,
        default=15.0,
        metavar="S",
        help="SSE keep-alive comment interval (default 15)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow this browser origin (repeatable); default: CORS off",
    )
    serve.add_argument(
        "--resume-store",
        metavar="URL",
        help="where resumable streams are kept: 'memory' (default, this process) or "
        "redis://HOST:PORT/DB (shared by every replica behind a load balancer)",
    )
    serve.add_argument(
        "--resume-ttl",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds a finished resumable stream can still be resumed (default 300)",
    )
    serve.add_argument(
        "--resume-max-streams",
        type=int,
        default=1000,
        metavar="N",
        help="resumable streams held at once; past it, new ones get 503 (default 1000)",
    )
    serve.add_argument(
        "--resume-max-bytes",
        type=int,
        default=64 * 1024 * 1024,
        metavar="N",
        help="bytes of records the resume store holds (default 64 MiB)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(run=_cmd_serve)


def _serve_keys(args: argparse.Namespace) -> tuple[str, ...]:
    from_env = os.environ.get("OPENBRACE_API_KEYS", "")
    keys = [*args.api_key, *from_env.split(",")]
    return tuple(dict.fromkeys(k.strip() for k in keys if k.strip()))


def _serve_banner(what: str, host: str, port: int, keys: tuple[str, ...]) -> list[str]:
    """What `serve` says at start-up: where, the playground, and whether it is open
    (never the keys)."""
    url = _url(host, port)
    lines = [f"serving {what} on {url}", f"playground: open {url}/ in a browser"]
    if keys:
        lines.append(
            f"{len(keys)} API key(s) configured: requests need 'Authorization: Bearer KEY'"
        )
        return lines
    lines.append("no API key configured: the server is open")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        lines.append(
            f"WARNING: {host} is not a loopback address and no API key is set: "
            "anyone who can reach this port can use the model (pass --api-key)"
        )
    return lines


def _url(host: str, port: int) -> str:
    """A URL a browser on this machine can open for a bind address."""
    if host in ("0.0.0.0", "::", ""):  # every interface: loopback is one of them
        host = "127.0.0.1"
    elif ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _log_like_uvicorn(level: str) -> None:
    """Send openbrace's own log records (one line per generation) next to uvicorn's."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)-9s %(name)s: %(message)s"))
    logger = logging.getLogger("openbrace")
    logger.addHandler(handler)
    logger.setLevel(level.upper())


def _cmd_serve(args: argparse.Namespace) -> int:
    """Run `openbrace serve` until interrupted."""
    import uvicorn

    from .server.app import ServerConfig, create_app

    keys = _serve_keys(args)
    if args.upstream:
        from .engines.upstream import UpstreamEngine

        try:
            engine: Any = UpstreamEngine(
                args.upstream,
                args.upstream_key or os.environ.get("OPENBRACE_UPSTREAM_KEY"),
                timeout=args.upstream_timeout,
            )
        except ValueError as exc:
            return _fail(args, str(exc), "usage")
        what = f"upstream {engine.base_url}"
        if args.parallel is not None:
            return _fail(args, "--parallel applies to the local engine only", "usage")
        slots, queue = 64, 256
    else:
        from .engines.local import LocalEngine, default_engine

        parallel = 1 if args.parallel is None else args.parallel
        if parallel < 1:
            return _fail(args, "--parallel must be at least 1", "usage")
        engine = _hub_engine(args, args.model_id, parallel=parallel) or (
            LocalEngine(args.model_file, args.model_id, parallel=parallel)
            if args.model_file or args.model_id or parallel > 1
            else default_engine()
        )
        what = f"local model {engine.model_id}"
        if parallel > 1:
            what += f" ({parallel} sequences of {engine.n_ctx} tokens each)"
        # The engine decodes `parallel` generations at once: more slots would only
        # hide the queue inside the engine, where it is neither fair nor bounded.
        slots, queue = parallel, 16
    try:
        config = ServerConfig(
            api_keys=keys,
            max_body_bytes=args.max_body_bytes,
            max_concurrent=slots if args.max_concurrent is None else args.max_concurrent,
            max_queue=queue if args.max_queue is None else args.max_queue,
            request_timeout=args.request_timeout,
            keepalive=args.keepalive,
            cors_origins=tuple(args.cors_origin),
            resume_store=args.resume_store,
            resume_ttl=args.resume_ttl,
            resume_max_streams=args.resume_max_streams,
            resume_max_bytes=args.resume_max_bytes,
        )
    except ValueError as exc:
        return _fail(args, str(exc), "usage")

    for line in _serve_banner(what, args.host, args.port, keys):
        print(f"openbrace: {line}", file=sys.stderr, flush=True)
    if not args.upstream:  # fail fast on a missing model, and keep the first request quick
        asyncio.run(engine.load())
    _log_like_uvicorn(args.log_level)
    app = create_app(engine, config, close_engine=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


# -- demo (the embedded model, in-process) ----------------------------------------------

DEMO_TICKET = (
    "Hi, I was charged twice for my subscription this month. "
    "Please refund the extra charge as soon as possible. Jane"
)
DEMO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["billing", "technical", "account", "other"]},
        "urgency": {"type": "string", "enum": ["low", "medium", "high"]},
        "reply": {"type": "string", "maxLength": 160},
    },
    "required": ["intent", "urgency", "reply"],
}
DEMO_SYSTEM = (
    "You are the support desk of an online service. Classify the customer's ticket "
    "and write a short, polite reply to the customer."
)


DEMO_BETTER_MODEL = (
    "\nThis is a 135M-parameter model: quick, offline, and often wrong. For answers a person\n"
    "can read, try a larger GGUF from the Hugging Face Hub (downloaded once, ~0.5 GB):\n"
    "  openbrace demo -hf qwen2.5-0.5b\n"
    "`openbrace models --catalog` lists more; docs/models.md says how they compare."
)


def _add_demo_command(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="stream a support-ticket answer from the embedded model (offline, no server)",
        description="Answer a support ticket with the embedded model, in this process, "
        "printing each field the moment it lands.",
    )
    demo.add_argument("ticket", nargs="?", default=DEMO_TICKET, help="the ticket text")
    demo.add_argument("--seed", type=int, default=1, help="sampling seed (default 1)")
    demo.add_argument("--max-tokens", type=int, default=200, help="token budget (default 200)")
    _add_hub_options(demo)
    demo.set_defaults(run=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    """The quick start's demo: the public SDK, in-process, over the embedded model."""
    import time

    from .client import AsyncClient
    from .engines.local import default_engine

    hub = _hub_engine(args)
    engine = hub or default_engine()
    print(f"openbrace demo: {engine.model_id}, embedded (no server, no key, no network)")
    print(f"ticket: {args.ticket}", flush=True)
    started = time.perf_counter()
    await engine.load()
    print(f"model loaded in {time.perf_counter() - started:.2f} s\n", flush=True)

    client = AsyncClient(engine=engine)  # in-process: no base_url, whatever the environment
    started = time.perf_counter()
    async with client.stream(
        model=engine.model_id,
        input=[
            {"role": "system", "content": DEMO_SYSTEM},
            {"role": "user", "content": args.ticket},
        ],
        response_format=DEMO_SCHEMA,
        seed=args.seed,
        max_tokens=args.max_tokens,
    ) as stream:
        async for event in stream:
            if event.field:  # the root `{}` is not a field
                elapsed = (time.perf_counter() - started) * 1e3
                value = json.dumps(event.value, ensure_ascii=False)
                print(f"  {elapsed:7.0f} ms  {event.field:<8} {value}", flush=True)
    total = (time.perf_counter() - started) * 1e3
    print(f"\ndocument complete in {total:.0f} ms", flush=True)
    if hub is None:
        print(DEMO_BETTER_MODEL, flush=True)
    return 0


# -- the Hugging Face Hub: -hf on every command that runs the embedded engine, and pull ---


def _add_hub_options(parser: Any, group: Any = None) -> None:
    (group or parser).add_argument(
        "-hf",
        "--hf-repo",
        metavar="OWNER/REPO[:QUANT]",
        help="run a GGUF from the Hugging Face Hub (downloaded once into the HF cache; "
        "QUANT picks the file, default Q4_K_M), or a catalog alias (models --catalog)",
    )
    parser.add_argument("--hf-file", metavar="FILE", help="with --hf-repo: this exact GGUF file")


def _hub_engine(args: argparse.Namespace, model_id: str | None = None, **options: Any) -> Any:
    """A LocalEngine on the -hf model, or None without -hf; `options` go to its constructor."""
    if getattr(args, "hf_file", None) and not args.hf_repo:
        raise InvalidRequestError("--hf-file needs --hf-repo OWNER/REPO")
    if not getattr(args, "hf_repo", None):
        return None
    from .engines.local import LocalEngine

    return LocalEngine.from_hub(args.hf_repo, filename=args.hf_file, model_id=model_id, **options)


def _add_pull_command(commands: Any) -> None:
    pull = commands.add_parser(
        "pull",
        help="download a GGUF from the Hugging Face Hub into its cache, verified",
        description="Download OWNER/REPO[:QUANT] (or a catalog alias) into the Hugging Face "
        "cache and check it against the Hub's sha256, so later commands start offline.",
    )
    pull.add_argument("repo", metavar="OWNER/REPO[:QUANT]")
    pull.add_argument("--hf-file", metavar="FILE", help="this exact GGUF file of the repo")
    pull.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    pull.set_defaults(run=_cmd_pull)


def _cmd_pull(args: argparse.Namespace) -> int:
    from .engines.local.hub import hub_file, parse_ref

    ref = parse_ref(args.repo, args.hf_file)
    path = hub_file(ref, progress=True)
    print(f"{ref}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
