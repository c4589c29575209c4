"""Download speed through the app vs curl, from the same loopback Hub, interleaved (A, B, A, B, ...), medians;
and the bytes a resumed download fetches after a cut, against the bytes that were still missing.

The app's side is the whole path a user's download takes: hub gateway, redirect, SHA-256 while receiving,
fsyncs, the atomic move into the library. curl only writes the bytes.

    PYTHONPATH=. .venv/bin/python benchmarks/download_vs_curl.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
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


def app_download(hub: FakeHub, basedir: Path) -> float:
    paths = AppPaths.under(basedir).create()
    with Hub(hub.url) as client:
        details = client.repository(REPO)
    (choice,), _ = group_files(details.files)
    manager = DownloadManager(paths, lambda: Hub(hub.url))
    started = time.perf_counter()
    final = manager.run(manager.add(REPO, details.commit, choice))
    elapsed = time.perf_counter() - started
    if final.state != "done":
        raise SystemExit(f"app download failed: {final.error}")
    return elapsed


def curl_download(hub: FakeHub, name: str, target: Path) -> float:
    url = f"{hub.url}/{REPO}/resolve/main/{name}"
    started = time.perf_counter()
    subprocess.run(["curl", "-sSfL", "-o", str(target), url], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    model = ensure_starter()
    size = model.stat().st_size
    with FakeHub() as hub, tempfile.TemporaryDirectory() as scratch:
        hub.add_repo(FakeRepo(REPO, {model.name: model}))
        app_times, curl_times = [], []
        for round_number in range(args.rounds):
            curl_times.append(curl_download(hub, model.name, Path(scratch) / "curl.gguf"))
            app_times.append(app_download(hub, Path(scratch) / f"app{round_number}"))
            shutil.rmtree(Path(scratch) / f"app{round_number}")
        app, curl = statistics.median(app_times), statistics.median(curl_times)
        print(f"file {size / 1e6:.1f} MB, rounds={args.rounds}")
        print(f"download   curl {curl:.3f} s ({size / curl / 1e6:.0f} MB/s)  app {app:.3f} s  ratio {app / curl:.3f}")

        hub.faults.cut_at, hub.faults.cuts = size // 2, 1
        before = hub.bytes_served(model.name)
        app_download(hub, Path(scratch) / "cut")
        served = hub.bytes_served(model.name) - before
        missing_after_cut = size - size // 2
        resumed = served - size // 2
        print(
            f"after a cut at half: fetched {resumed:,} bytes for {missing_after_cut:,} missing"
            f"  ratio {resumed / missing_after_cut:.4f}"
        )


if __name__ == "__main__":
    main()
