"""The Hub commands of the command line: `search QUERY`, `files REPO`, `pull REPO [--quant Q | --file NAME]`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from localai_app.core import hardware
from localai_app.core.choices import Assessment, assess
from localai_app.core.downloads import DONE, DownloadManager, Progress
from localai_app.core.errors import AppError
from localai_app.core.estimate import Overrides
from localai_app.core.hub import SIZE_CLASSES, SORTS, Hub, RepoDetails, endpoint_from
from localai_app.core.hub_files import QuantChoice, group_files
from localai_app.core.library import format_bytes, format_parameters
from localai_app.core.paths import AppPaths
from localai_app.core.settings import load_settings

EXIT_OK, EXIT_FAILURE = 0, 1


def add_commands(commands: Any) -> None:
    search = commands.add_parser("search", help="search the Hugging Face Hub for GGUF models")
    search.add_argument("query")
    search.add_argument("--sort", choices=sorted(SORTS), default="downloads")
    search.add_argument("--size", choices=sorted(SIZE_CLASSES), help="only models of this size class")
    search.add_argument("--licence", help="only this licence, as the Hub names it (apache-2.0, mit, ...)")
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")

    files = commands.add_parser("files", help="list a repository's GGUF files with fit and speed on this machine")
    files.add_argument("repo", help="owner/name")
    files.add_argument("--json", action="store_true", help="print JSON instead of a table")

    pull = commands.add_parser("pull", help="download a model into the library (resumes where it stopped)")
    pull.add_argument("repo", help="owner/name")
    which = pull.add_mutually_exclusive_group()
    which.add_argument("--quant", help="the quantization to fetch, e.g. Q4_K_M (default: the recommended one)")
    which.add_argument("--file", help="the file to fetch, as `files` lists it")


def run(paths: AppPaths, args: argparse.Namespace) -> int:
    hub = Hub(endpoint_from(load_settings(paths.config).hub_endpoint))
    try:
        if args.command == "search":
            return _search(hub, args)
        if args.command == "files":
            return _files(hub, paths, args)
        return _pull(hub, paths, args)
    finally:
        hub.close()


def _search(hub: Hub, args: argparse.Namespace) -> int:
    found = hub.search(args.query, sort=args.sort, size_class=args.size, licence=args.licence)
    if args.json:
        rows = [
            {**vars(item), "last_modified": item.last_modified.isoformat() if item.last_modified else None}
            for item in found
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not found:
        print("No GGUF repositories match.")
    for item in found:
        updated = item.last_modified.date().isoformat() if item.last_modified else "?"
        size = format_parameters(item.parameters) if item.parameters else "?"
        gated = "  gated" if item.gated else ""
        base = f"  based on {item.base_model}" if item.base_model else ""
        print(
            f"{item.repo_id}  {size}  {item.downloads:,} downloads  {item.likes:,} likes  updated {updated}  "
            f"{item.licence or 'licence ?'}{gated}{base}"
        )
    return EXIT_OK


def _overrides(paths: AppPaths) -> Overrides:
    return load_settings(paths.config).overrides()


def _files(hub: Hub, paths: AppPaths, args: argparse.Namespace) -> int:
    details = hub.repository(args.repo)
    commit = details.commit
    assessment = assess(hub, details, hardware.detect(cache_dir=paths.cache), paths, _overrides(paths))
    rows = []
    for choice in assessment.choices:
        advice = assessment.advice.get(choice.name)
        rows.append(
            {
                "name": choice.name,
                "quantization": choice.quantization,
                "size": choice.size,
                "parts": [file.path for file in choice.files],
                "projector": choice.projector,
                "recommended": choice is assessment.recommended,
                "fit": advice.plan.verdict.level if advice else None,
                "fit_reason": advice.plan.verdict.sentence if advice else None,
                "tokens_per_second": advice.tokens_per_second if advice else None,
            }
        )
    if args.json:
        print(json.dumps({"repo": args.repo, "commit": commit, "recommendation": assessment.reason, "files": rows}))
        return EXIT_OK
    for choice in assessment.choices:
        print(_choice_line(choice, assessment))
    print(f"Recommended: {assessment.reason}")
    for problem in assessment.problems:
        print(f"Note: {problem}")
    return EXIT_OK


def _choice_line(choice: QuantChoice, assessment: Assessment) -> str:
    mark = "*" if choice is assessment.recommended else " "
    parts = f" ({len(choice.files)} parts)" if len(choice.files) > 1 else ""
    if choice.projector:
        return f"{mark} {choice.name}  {format_bytes(choice.size)}  vision projector (mmproj), not a model by itself"
    advice = assessment.advice.get(choice.name)
    fit = f"{advice.plan.verdict.level}: {advice.plan.verdict.sentence}  {advice.speed_text}" if advice else ""
    return f"{mark} {choice.quantization or '?':8} {choice.name}{parts}  {format_bytes(choice.size)}  {fit}"


def _pull(hub: Hub, paths: AppPaths, args: argparse.Namespace) -> int:
    details = hub.repository(args.repo)
    choice = _chosen(hub, paths, details, args)
    bar = _ProgressBar(choice.name, choice.size)
    manager = DownloadManager(paths, lambda: Hub(hub.endpoint), listener=bar.update)
    job_id = manager.add(details.summary.repo_id, details.commit, choice)
    try:
        final = manager.run(job_id)
    except KeyboardInterrupt:
        bar.close()
        print("Stopped; run the same command again to resume where it stopped.", file=sys.stderr)
        return 130
    bar.close()
    if final.state != DONE:
        print(f"localai-app: {final.error}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"Downloaded and verified {choice.name} ({format_bytes(choice.size)}) to {final.destination}.")
    return EXIT_OK


def _chosen(hub: Hub, paths: AppPaths, details: RepoDetails, args: argparse.Namespace) -> QuantChoice:
    """The file the user named, or the recommended one (only then are the header and the machine read)."""
    repo_id = details.summary.repo_id
    choices, _ = group_files(details.files)
    models = [choice for choice in choices if not choice.projector]
    if args.file:
        wanted = args.file.lower()
        for choice in choices:
            if wanted in (choice.name.lower(), *(file.path.lower() for file in choice.files)):
                return choice
        raise AppError(f"{repo_id} has no GGUF file named {args.file}; `localai-app files {repo_id}` lists them.")
    if args.quant:
        for choice in models:
            if choice.quantization == args.quant.upper():
                return choice
        available = ", ".join(sorted({choice.quantization for choice in models if choice.quantization})) or "none"
        raise AppError(f"{repo_id} has no {args.quant.upper()} file. Available: {available}.")
    assessment = assess(hub, details, hardware.detect(cache_dir=paths.cache), paths, _overrides(paths))
    if assessment.recommended is None:
        raise AppError(f"{assessment.reason} Choose one with --quant or --file.")
    print(f"Choosing {assessment.reason}", file=sys.stderr)
    return assessment.recommended


class _ProgressBar:
    """tqdm on a terminal; silent when the output goes to a file or a pipe."""

    def __init__(self, name: str, total: int) -> None:
        self._bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr)

    def update(self, progress: Progress) -> None:
        if self._bar is not None:
            self._bar.n = progress.done
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
