"""`python -m localai_app.engine --model PATH`: load one model and serve it on 127.0.0.1.

Protocol with the parent (see core/engine_process.py):
- the bearer token comes in the environment variable LOCALAI_ENGINE_TOKEN, never on the command line;
- stdout carries exactly one JSON line: {"ready": {...}} with the OS-chosen port, or {"error": {...}};
- closing our stdin asks us to exit, so a parent that dies leaves no engine behind;
- stderr is llama.cpp's log, which the parent drains and classifies.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localai_app.engine")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--context-length", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--probe", action="store_true", help="print what this llama.cpp build supports, then exit")
    args = parser.parse_args(argv)
    if args.probe:
        return _probe()
    if args.model is None:
        parser.error("--model is required")
    token = os.environ.pop(TOKEN_VARIABLE, "")
    if not token:
        return _fail("usage", f"{TOKEN_VARIABLE} must be set", EXIT_BAD_REQUEST)

    threading.Thread(target=_exit_when_stdin_closes, name="stdin-watch", daemon=True).start()

    # Check the header with the bounded reader first: most bad files get a clear sentence here, before llama.cpp
    # (which aborts the whole process on many of them) ever sees the file.
    from localai_app.core.errors import ModelFileError
    from localai_app.core.gguf_header import read_header

    try:
        header = read_header(args.model)
    except ModelFileError as error:
        return _fail("bad_file", str(error), EXIT_LOAD_FAILED)
    # Past its training length a model degrades into nonsense, and the KV cache costs memory for nothing.
    trained = header.integer(f"{header.string('general.architecture')}.context_length")
    context_length = min(args.context_length, trained) if trained else args.context_length

    from localai_app.engine.runner import Runner
    from localai_app.engine.templates import TemplateError

    try:
        runner = Runner(args.model, context_length=context_length, threads=args.threads, gpu_layers=args.gpu_layers)
    except TemplateError as error:
        return _fail("bad_file", f"{args.model.name}: {error}", EXIT_LOAD_FAILED)
    except (ValueError, RuntimeError, OSError) as error:
        return _fail("load_failed", f"llama.cpp could not load {args.model.name}: {error}", EXIT_LOAD_FAILED)

    import uvicorn

    from localai_app.engine.server import create_app

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        create_app(runner, token), log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30
    )
    _say({"ready": {"port": port, "pid": os.getpid(), "model": asdict(runner.description)}})
    uvicorn.Server(config).run(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main())
