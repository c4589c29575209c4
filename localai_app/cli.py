"""Command line: `localai-app [--basedir DIR] [COMMAND]`. Without a command, the GUI opens.

User mistakes end with exit code 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from localai_app import __version__, cli_bench, cli_conversations, cli_glass, cli_hub, cli_serve
from localai_app.core import hardware
from localai_app.core.advice import advise_here
from localai_app.core.chat_session import ChatSession
from localai_app.core.context import Prompt
from localai_app.core.conversations import ChatSettings
from localai_app.core.engine_manager import manager_for
from localai_app.core.errors import AppError, EngineError, OfflineError, TransientError
from localai_app.core.estimate import Overrides
from localai_app.core.library import Library, ModelInfo, format_bytes
from localai_app.core.paths import AppPaths
from localai_app.core.replies import Delta
from localai_app.core.settings import load_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localai-app", description="Run open-weight language models locally.")
    parser.add_argument("--version", action="version", version=f"localai-app {__version__}")
    parser.add_argument("--basedir", type=Path, help="keep every app directory (config, data, models, ...) under DIR")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = commands.add_parser("models", help="list the model library")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    add = commands.add_parser("import", help="add a GGUF file to the library")
    add.add_argument("path", type=Path)
    add.add_argument("--reference", action="store_true", help="use the file where it is instead of copying it")

    hardware = commands.add_parser("hw", help="describe this machine and the llama.cpp build")
    hardware.add_argument("--json", action="store_true", help="print JSON instead of text")

    fit = commands.add_parser("fit", help="will a model fit in memory here, with which settings, how fast")
    fit.add_argument("model", help="a library name or a path to a .gguf file")
    _add_load_options(fit)
    fit.add_argument("--json", action="store_true", help="print JSON instead of text")

    chat = commands.add_parser("chat", help="stream a reply from a model to stdout")
    chat.add_argument("model", help="a library name or a path to a .gguf file")
    chat.add_argument("prompt")
    chat.add_argument("--max-tokens", type=int, default=None)
    chat.add_argument("--temperature", type=float, default=None)
    chat.add_argument("--seed", type=int, default=None)
    _add_load_options(chat)
    chat.add_argument("--force", action="store_true", help="load even when the model is estimated not to fit")
    chat.add_argument("--stats", action="store_true", help="print one JSON line of statistics to stderr")
    chat.add_argument("--save", action="store_true", help="keep the exchange as a conversation (see `conversations`)")
    chat.add_argument("--conversation", type=int, help="with --save: continue this conversation instead of a new one")
    cli_glass.add_chat_options(chat)
    _add_load_options(cli_glass.add_command(commands))
    cli_hub.add_commands(commands)
    cli_conversations.add_commands(commands)
    _add_load_options(cli_serve.add_command(commands))
    cli_bench.add_command(commands)
    return parser


def _add_load_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--ctx", type=int, default=None, help="context length in tokens (default: what fits)")
    command.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    command.add_argument("--gpu-layers", type=int, default=None, help="layers on the GPU (default: what fits)")


def _overrides(args: argparse.Namespace, saved: Overrides) -> Overrides:
    """Command-line values over the saved settings; each must be sensible."""
    for flag, value, lowest in (
        ("--ctx", args.ctx, 1),
        ("--threads", args.threads, 1),
        ("--gpu-layers", args.gpu_layers, 0),
    ):
        if value is not None and value < lowest:
            raise AppError(f"{flag} must be at least {lowest}.")
    return Overrides(
        context=args.ctx if args.ctx is not None else saved.context,
        threads=args.threads if args.threads is not None else saved.threads,
        gpu_layers=args.gpu_layers if args.gpu_layers is not None else saved.gpu_layers,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = (AppPaths.under(args.basedir) if args.basedir else AppPaths.for_user()).create()
    logging.basicConfig(
        filename=paths.logs / "localai-app.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command is None:
            from localai_app.app import run_gui

            return run_gui(paths)
        if args.command == "models":
            return list_models(Library(paths), as_json=args.json)
        if args.command == "import":
            model = Library(paths).import_file(args.path, copy=not args.reference)
            print(f"Added {model.name} ({format_bytes(model.file_size)}).")
            return EXIT_OK
        if args.command == "hw":
            return describe_hardware(as_json=args.json)
        if args.command == "fit":
            return describe_fit(paths, args)
        if args.command in ("search", "files", "pull"):
            return cli_hub.run(paths, args)
        if args.command in ("conversations", "export"):
            return cli_conversations.run(paths, args)
        if args.command == "serve":
            return cli_serve.serve(paths, args, _overrides(args, load_settings(paths.config).overrides()))
        if args.command == "bench":
            return cli_bench.run(paths, args)
        if args.command == "tokenize":
            return cli_glass.tokenize(paths, args, _overrides(args, load_settings(paths.config).overrides()))
        return chat(paths, args)
    except (EngineError, OfflineError, TransientError) as error:  # not the user's doing
        print(f"localai-app: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except AppError as error:
        print(f"localai-app: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130


def list_models(library: Library, *, as_json: bool) -> int:
    models = library.models()
    if as_json:
        print(json.dumps([model.as_json() for model in models], indent=2))
        return EXIT_OK
    if not models:
        print("No models yet. Import one with: localai-app import PATH")
    for model in models:
        if model.problem:
            print(f"{model.name}  UNUSABLE: {model.problem}")
            continue
        mode = "chat" if model.has_chat_template else "completion only"
        print(
            f"{model.name}  {model.architecture} {model.size_label} {model.quantization}  "
            f"{format_bytes(model.file_size)}  ctx {model.context_length}  {model.licence or 'licence unknown'}  "
            f"{mode}  [{model.source}]"
        )
    return EXIT_OK


def describe_hardware(*, as_json: bool) -> int:
    machine = hardware.detect()
    if as_json:
        print(json.dumps(machine.as_json(), indent=2))
        return EXIT_OK
    print(
        f"CPU       {machine.cpu_model} ({machine.machine}), {machine.physical_cores} cores / "
        f"{machine.logical_cores} threads"
    )
    print(f"          {', '.join(machine.instruction_sets) or 'no SIMD extensions llama.cpp uses'}")
    total, available = format_bytes(machine.total_ram_bytes), format_bytes(machine.available_ram_bytes)
    print(f"Memory    {total} total, {available} available")
    for gpu in machine.gpus:
        print(f"GPU       {gpu.name} ({gpu.vendor}), {hardware.gpu_memory_text(gpu)}")
    if not machine.gpus:
        print("GPU       none found")
    if machine.build is not None:
        build = machine.build
        offload = "can offload to a GPU" if build.gpu_offload else "CPU only"
        print(f"llama.cpp llama-cpp-python {build.llama_cpp_python}: {', '.join(build.backends)} ({offload})")
    for note in machine.notes:
        print(f"Note      {note}")
    return EXIT_OK


def describe_fit(paths: AppPaths, args: argparse.Namespace) -> int:
    model = Library(paths).find(args.model)
    overrides = _overrides(args, load_settings(paths.config).overrides())
    if model.shape is None:
        raise AppError(f"{model.name}'s header does not describe its layers, so its memory cannot be estimated.")
    machine = hardware.detect(cache_dir=paths.cache)
    advice = advise_here({model.name: model.shape}, machine, paths, overrides)[model.name]
    if args.json:
        print(json.dumps({"model": model.name, **advice.as_json()}, indent=2))
    else:
        print(model.name)
        for line in advice.lines():
            print(f"  {line}")
    return EXIT_OK


def chat(paths: AppPaths, args: argparse.Namespace) -> int:
    if args.max_tokens is not None and args.max_tokens < 1:
        raise AppError("--max-tokens must be at least 1.")
    if args.conversation is not None and not args.save:
        raise AppError("--conversation continues a saved conversation: add --save.")
    probs = cli_glass.wanted_probs(args)
    settings = load_settings(paths.config)
    model = Library(paths).find(args.model)
    chosen = ChatSettings(  # what a saved exchange records; the rest of the sampling keeps its defaults
        model=model.name,
        max_tokens=args.max_tokens or settings.sampling.max_tokens,
        temperature=args.temperature if args.temperature is not None else settings.sampling.temperature,
        seed=args.seed if args.seed is not None else settings.sampling.seed,
    )
    sampling = replace(chosen.sampling(), top_logprobs=probs)
    if not model.has_chat_template:
        print(f"({model.name} has no chat template: text completion)", file=sys.stderr)
    manager = manager_for(paths, _overrides(args, settings.overrides()))
    session = ChatSession(cli_conversations.open_conversations(paths)) if args.save else None
    try:
        if session is None:
            prompt: Prompt = prompt_for(model, args.prompt)
        else:
            if args.conversation is not None:
                session.open(args.conversation)
            prompt = session.ask(args.prompt, model, chosen)
        for event in manager.stream(model, prompt, sampling, insist=args.force):
            if isinstance(event, Delta):
                if probs is None:
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                else:
                    cli_glass.print_tokens(event, as_json=args.json)
                if session is not None:
                    session.append(event.text)
            else:
                if session is not None:
                    session.finish(event.as_dict())
                if args.stats:
                    print(json.dumps(event.as_dict()), file=sys.stderr)
        if probs is None:
            sys.stdout.write("\n")
    finally:
        manager.shutdown()
        if session is not None:
            session.interrupt()  # only a reply still streaming (a failure, Ctrl+C) is affected: kept, marked
            if session.conversation_id is not None:
                print(f"Saved as conversation {session.conversation_id}.", file=sys.stderr)
            session.store.close()
    return EXIT_OK


def prompt_for(model: ModelInfo, text: str) -> Prompt:
    """Chat messages for a model with a chat template; the plain text (completion mode) for one without."""
    return [{"role": "user", "content": text}] if model.has_chat_template else text
