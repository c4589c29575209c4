"""`python -m localai_app.engine --model PATH`: load one model and serve it on 127.0.0.1.

Protocol with the parent (see core/engine_process.py):
- the bearer token comes in the environment variable LOCALAI_ENGINE_TOKEN, never on the command line;
- stdout carries exactly one JSON line: {"ready": {...}} with the OS-chosen port, or {"error": {...}};
- closing our stdin asks us to exit, so a parent that dies leaves no engine behind;
- stderr is llama.cpp's log, which the parent drains and classifies.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localai_app.core.serving import API_KEY_VARIABLE, ServeOptions

if TYPE_CHECKING:
    from localai_app.engine.runner import Runner

TOKEN_VARIABLE = "LOCALAI_ENGINE_TOKEN"
EXIT_BAD_REQUEST = 2
EXIT_LOAD_FAILED = 3


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _fail(kind: str, message: str, code: int) -> int:
    _say({"error": {"kind": kind, "message": message}})
    return code


def _exit_when_stdin_closes() -> None:
    sys.stdin.buffer.read()
    os._exit(0)  # the parent is gone or asked us to stop: nothing here is worth a slow, orderly shutdown


def _probe() -> int:
    """One JSON line describing the build: core/hardware.py parses it (the GUI process never loads llama.cpp)."""
    import llama_cpp

    system_info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    _say({"probe": {"system_info": system_info, "gpu_offload": offload, "version": llama_cpp.__version__}})
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localai_app.engine")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--model-id", help="the model's name in API replies (default: the file name)")
    parser.add_argument("--context-length", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--vocab-only", action="store_true", help="load only the tokenizer: tokenize, not generate")
    parser.add_argument("--probe", action="store_true", help="print what this llama.cpp build supports, then exit")
    # The public API (core/serving.py); its key comes in LOCALAI_SERVE_KEY, never on the command line.
    parser.add_argument("--serve-host")
    parser.add_argument("--serve-port", type=int)
    parser.add_argument("--allowed-origin", action="append", default=[])
    parser.add_argument("--max-queue", type=int, default=8)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.probe:
        return _probe()
    if args.model is None:
        parser.error("--model is required")
    token = os.environ.pop(TOKEN_VARIABLE, "")
    if not token:
        return _fail("usage", f"{TOKEN_VARIABLE} must be set", EXIT_BAD_REQUEST)

    api_key = os.environ.pop(API_KEY_VARIABLE, "") or None
    threading.Thread(target=_exit_when_stdin_closes, name="stdin-watch", daemon=True).start()

    public_listener = None
    if args.serve_host is not None:
        # Bound before the model loads, so a port already taken is reported at once, not after the load.
        try:
            public_listener = _listen(args.serve_host, args.serve_port or 0)
        except OSError as error:
            return _fail(
                "port_in_use" if error.errno == errno.EADDRINUSE else "serve_failed",
                _listen_failure(args.serve_host, args.serve_port, error),
                EXIT_BAD_REQUEST,
            )

    # Check the header with the bounded reader first: most bad files get a clear sentence here, before llama.cpp
    # (which aborts the whole process on many of them) ever sees the file.
    from localai_app.core.errors import ModelFileError
    from localai_app.core.gguf_header import read_header

    try:
        header = read_header(args.model)
    except ModelFileError as error:
        return _fail("bad_file", str(error), EXIT_LOAD_FAILED)
    # Past its training length a model degrades into nonsense, and the KV cache costs memory for nothing.
    architecture = header.string("general.architecture")
    trained = header.integer(f"{architecture}.context_length")
    # Embedding models name how they pool token vectors into one; 0 means none (a text model).
    embeddings = bool(header.integer(f"{architecture}.pooling_type"))
    context_length = min(args.context_length, trained) if trained else args.context_length

    from localai_app.engine.runner import Runner
    from localai_app.engine.templates import TemplateError

    try:
        runner = Runner(
            args.model,
            context_length=context_length,
            threads=args.threads,
            gpu_layers=args.gpu_layers,
            model_id=args.model_id,
            embeddings=embeddings,
            vocab_only=args.vocab_only,
        )
    except TemplateError as error:
        return _fail("bad_file", f"{args.model.name}: {error}", EXIT_LOAD_FAILED)
    except (ValueError, RuntimeError, OSError) as error:
        return _fail("load_failed", f"llama.cpp could not load {args.model.name}: {error}", EXIT_LOAD_FAILED)

    _serve(runner, token, args, api_key, public_listener)
    return 0


def _serve(
    runner: Runner, token: str, args: argparse.Namespace, api_key: str | None, public_listener: socket.socket | None
) -> None:
    """Serve the app's own API on a private loopback port and, when asked, the public API; until stdin closes."""
    import uvicorn

    from localai_app.engine.gateway import ByListener, public_app
    from localai_app.engine.server import api_app, create_app
    from localai_app.engine.turns import API, Turns

    listener = _listen("127.0.0.1", 0)
    port = listener.getsockname()[1]
    turns = Turns(max_waiting_api=args.max_queue)
    app = create_app(runner, token, turns)
    ready: dict[str, Any] = {"port": port, "pid": os.getpid(), "model": asdict(runner.description)}
    sockets = [listener]
    if public_listener is not None:
        public_port = public_listener.getsockname()[1]
        public = public_app(
            api_app(runner, turns, API),
            api_key=api_key,
            allowed_origins=args.allowed_origin,
            report=lambda record: _say({"request": record}),
        )
        app = ByListener(app, public, public_port)
        sockets.append(public_listener)
        ready["serving"] = ServeOptions(host=args.serve_host, port=public_port).base_url
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30)
    _say({"ready": ready})
    uvicorn.Server(config).run(sockets=sockets)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # create_server sets SO_REUSEADDR, so an engine restarted for another model can take the same port at once.
    listener = socket.create_server((host, port), family=family, backlog=128, dualstack_ipv6=host == "::")
    # asyncio turns Nagle's algorithm off only on accepted sockets whose proto is IPPROTO_TCP
    # (asyncio.base_events._set_nodelay), and create_server's socket says 0, which accepted ones inherit. Without
    # this every answer on a kept-alive connection waited about 40 ms for the client's delayed ACK.
    return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=listener.detach())


def _listen_failure(host: str, port: int | None, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"Port {port} on {host} is already in use (by another program or copy of this app); choose another."
    if error.errno == errno.EACCES:
        return f"This user may not listen on port {port}; choose a port above 1024."
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this computer."
    return f"Cannot listen on {host}:{port}: {error.strerror or error}."


if __name__ == "__main__":
    sys.exit(main())
