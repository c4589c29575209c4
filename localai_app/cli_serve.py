"""`localai-app serve`: the loaded model for other programs, through the OpenAI API (see core/serving.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from localai_app.core.credentials import Credentials
from localai_app.core.engine_manager import manager_for
from localai_app.core.errors import AppError
from localai_app.core.estimate import Overrides
from localai_app.core.library import Library, ModelInfo
from localai_app.core.paths import AppPaths
from localai_app.core.serving import API_KEY_CREDENTIAL, RequestRecord, ServeOptions, snippets
from localai_app.core.settings import load_settings

KEY_VARIABLE = "LOCALAI_API_KEY"  # a key in the environment stays out of `ps`, unlike --api-key
WATCH_INTERVAL = 0.5


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    serve = commands.add_parser(
        "serve",
        help="serve a model to other programs through the OpenAI API",
        description="Off the network by default: listens on 127.0.0.1 only. Any other address needs an API key.",
    )
    serve.add_argument("--model", help="a library name or a .gguf path (default: the model used last)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every network)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8765)")
    serve.add_argument(
        "--api-key",
        help=f"require this key as 'Authorization: Bearer KEY' (or set {KEY_VARIABLE}; 'stored' uses the key "
        "kept by the app's Local API panel)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin (https://example.com) whose pages may call the API; repeat for more (default: none)",
    )
    serve.add_argument("--max-queue", type=int, help="requests that may wait; past it they get HTTP 429 (default 8)")
    serve.add_argument("--force", action="store_true", help="load even when the model is estimated not to fit")
    return serve


def serve(paths: AppPaths, args: argparse.Namespace, overrides: Overrides) -> int:
    settings = load_settings(paths.config)
    saved = settings.local_api
    options = ServeOptions(
        host=args.host or saved.host,
        port=args.port if args.port is not None else saved.port,
        api_key=_api_key(paths, args.api_key),
        allowed_origins=tuple(args.allow_origin or saved.allowed_origins),
        max_queue=args.max_queue if args.max_queue is not None else saved.max_queue,
    ).check()
    model = _model_to_serve(paths, args.model or settings.last_model)
    manager = manager_for(paths, overrides)
    manager.serve = options
    manager.on_request = _print_request
    try:
        print(f"Loading {model.name}…", file=sys.stderr)
        manager.load(model, insist=args.force)
        url = manager.serving_url or options.base_url
        print(f"Serving {model.name} at {url}")
        if options.api_key:
            print("Clients must send the API key: Authorization: Bearer <key>.")
        else:
            print("No API key: only programs on this computer can reach it.")
        if options.exposed:
            print(f"Warning: listening on {options.host}: other computers can reach this API (with the key).")
        print(
            "\nFor example:\n"
            + snippets(url, options.api_key, model.name, chat=model.has_chat_template)["curl"]
            + "\n\nCtrl+C stops."
        )
        sys.stdout.flush()
        while manager.loaded_model is not None:
            time.sleep(WATCH_INTERVAL)
        raise manager.explain_loss()
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return 0
    finally:
        manager.shutdown()


def _api_key(paths: AppPaths, given: str | None) -> str | None:
    if given == "stored":
        stored = Credentials(paths.config).get(API_KEY_CREDENTIAL)
        if stored is None:
            raise AppError("No API key is stored yet: generate one in the app's Local API panel, or pass one.")
        return stored
    return given or os.environ.get(KEY_VARIABLE) or None


def _model_to_serve(paths: AppPaths, wanted: str | None) -> ModelInfo:
    library = Library(paths)
    if wanted:
        return library.find(wanted)
    usable = [model for model in library.models() if model.usable]
    if not usable:
        raise AppError("There is no model to serve: import or download one first.")
    return usable[0]


def _print_request(record: RequestRecord) -> None:
    print(record.line(), flush=True)
