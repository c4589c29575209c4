"""Download speed through the app vs curl, from the same loopback Hub, interleaved (A, B, A, B, ...), medians;
and the bytes a resumed download fetches after a cut, against the bytes that were still missing.

The app's side is the whole path a user's download takes: hub gateway, redirect, SHA-256 while receiving,
fsyncs, the atomic move into the library. curl only writes the bytes. The timed downloads come from the loopback
Hub in a child process, as a real server is elsewhere: in this process its Python would take turns with the app's
on the GIL, which curl, a process of its own, never has to.

    PYTHONPATH=. .venv/bin/python benchmarks/download_vs_curl.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tests  # noqa: F401  (keeps huggingface_hub away from the user's token and the real Hub)
from localai_app.core.downloads import DownloadManager
from localai_app.core.hub import Hub
from localai_app.core.hub_files import group_files
from localai_app.core.paths import AppPaths
from localai_app.core.starter import ensure_starter
from tests.fakes.hub_server import FakeHub, FakeRepo

REPO = "bench/Starter-GGUF"


def app_download(url: str, basedir: Path) -> float:
    paths = AppPaths.under(basedir).create()
    with Hub(url) as client:
        details = client.repository(REPO)
    (choice,), _ = group_files(details.files)
    manager = DownloadManager(paths, lambda: Hub(url))
    started = time.perf_counter()
    final = manager.run(manager.add(REPO, details.commit, choice))
    elapsed = time.perf_counter() - started
    if final.state != "done":
        raise SystemExit(f"app download failed: {final.error}")
    return elapsed


def curl_download(url: str, name: str, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-sSfL", "-o", str(target), f"{url}/{REPO}/resolve/main/{name}"], check=True)
    return time.perf_counter() - started


def serve(model: Path) -> None:
    """The child process: the loopback Hub with the starter, its address on stdout, until stdin closes."""
    with FakeHub() as hub:
        hub.add_repo(FakeRepo(REPO, {model.name: model}))
        print(hub.url, flush=True)
        sys.stdin.read()


def timed_rounds(model: Path, rounds: int, scratch: Path) -> None:
    size = model.stat().st_size
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(model)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout and child.stdin
    url = child.stdout.readline().strip()
    try:
        app_times, curl_times = [], []
        for round_number in range(rounds):
            curl_times.append(curl_download(url, model.name, scratch / "curl.gguf"))
            app_times.append(app_download(url, scratch / f"app{round_number}"))
            shutil.rmtree(scratch / f"app{round_number}")
    finally:
        child.stdin.close()
        child.wait()
    app, curl = statistics.median(app_times), statistics.median(curl_times)
    print(f"file {size / 1e6:.1f} MB, rounds={rounds}")
    print(f"download   curl {curl:.3f} s ({size / curl / 1e6:.0f} MB/s)  app {app:.3f} s  ratio {app / curl:.3f}")


def resumed_bytes(model: Path, scratch: Path) -> None:
    size = model.stat().st_size
    with FakeHub() as hub:
        hub.add_repo(FakeRepo(REPO, {model.name: model}))
        hub.faults.cut_at, hub.faults.cuts = size // 2, 1
        app_download(hub.url, scratch / "cut")
        served = hub.bytes_served(model.name)
    missing_after_cut = size - size // 2
    resumed = served - size // 2
    print(
        f"after a cut at half: fetched {resumed:,} bytes for {missing_after_cut:,} missing"
        f"  ratio {resumed / missing_after_cut:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    model = ensure_starter()
    with tempfile.TemporaryDirectory() as scratch:
        timed_rounds(model, args.rounds, Path(scratch))
        resumed_bytes(model, Path(scratch))


if __name__ == "__main__":
    main()
