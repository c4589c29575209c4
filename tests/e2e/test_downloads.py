"""Downloads against the loopback Hub, one test per fault: what the user sees and what is on disk afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localai_app.core import downloads
from localai_app.core.downloads import DONE, FAILED, PAUSED, DownloadManager, NoSpaceError, Progress, RetryPolicy
from localai_app.core.hub import Hub
from localai_app.core.hub_files import QuantChoice, RemoteFile, group_files
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from tests.fakes.hub_server import FakeHub, FakeRepo

REPO = "tester/Tiny-GGUF"
FILE = "Tiny-Q4_K_M.gguf"
SIZE = 3 * (1 << 20) + 12345  # several transfer blocks, not a round number
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


@pytest.fixture
def content() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def hub(fake_hub: FakeHub, content: bytes) -> FakeHub:
    fake_hub.add_repo(FakeRepo(REPO, {FILE: content, "README.md": b"# Tiny\n"}))
    return fake_hub


class Recorder:
    """Collects progress reports from the download threads."""

    def __init__(self) -> None:
        self.reports: list[Progress] = []
        self.changed = threading.Condition()

    def __call__(self, progress: Progress) -> None:
        with self.changed:
            self.reports.append(progress)
            self.changed.notify_all()

    def wait_for(self, state: str, timeout: float = 20.0) -> Progress:
        with self.changed:
            found = self.changed.wait_for(lambda: self.reports and self.reports[-1].state == state, timeout)
            assert found, f"no {state!r} report; last: {self.reports[-1:] or None}"
            return self.reports[-1]


def manager_for(
    paths: AppPaths, hub: FakeHub, recorder: Recorder | None = None, token: str | None = None
) -> DownloadManager:
    return DownloadManager(paths, lambda: Hub(hub.url, token), policy=FAST, listener=recorder)


def the_choice(hub: FakeHub, name: str = FILE) -> tuple[str, QuantChoice]:
    with Hub(hub.url) as client:
        details = client.repository(REPO)
    choices, _ = group_files(details.files)
    return details.commit, next(choice for choice in choices if choice.name == name)


def download(paths: AppPaths, hub: FakeHub, token: str | None = None) -> Progress:
    commit, choice = the_choice(hub)
    manager = manager_for(paths, hub, token=token)
    return manager.run(manager.add(REPO, commit, choice))


def installed(paths: AppPaths) -> Path:
    return paths.models / "tester" / "Tiny-GGUF" / FILE


def partial_files(paths: AppPaths) -> list[Path]:
    folder = paths.models / downloads.PARTIAL_DIR
    return sorted(folder.iterdir()) if folder.exists() else []


def test_a_download_is_verified_installed_and_recorded(app_paths: AppPaths, hub: FakeHub, content: bytes) -> None:
    final = download(app_paths, hub)
    assert final.state == DONE, final.error
    assert installed(app_paths).read_bytes() == content
    assert final.destination == installed(app_paths)
    assert partial_files(app_paths) == []
    record = json.loads((installed(app_paths).parent / "source.json").read_text())["files"][FILE]
    assert record["repo"] == REPO
    assert record["commit"] == hub.commit_of(REPO)
    assert record["file"] == FILE
    assert record["size"] == SIZE
    assert record["sha256"] == hashlib.sha256(content).hexdigest()
    assert hub.bytes_served(FILE) == SIZE
    # The library names where it came from with the whole commit hash: the evaluation report's provenance.
    (model,) = Library(app_paths, include_starter=False).models()
    assert model.origin == f"{REPO}@{hub.commit_of(REPO)}" and len(hub.commit_of(REPO)) == 40


def test_cut_three_times_in_a_row_resumes_each_time(app_paths: AppPaths, hub: FakeHub, content: bytes) -> None:
    hub.faults.cut_at, hub.faults.cuts = SIZE // 2, 3
    final = download(app_paths, hub)
    assert final.state == DONE, final.error
    assert installed(app_paths).read_bytes() == content
    ranges = [record.headers.get("range") for record in hub.requests if "/cdn/" in record.path]
    assert ranges[1:] == [f"bytes={SIZE // 2}-"] * 3  # every retry asked only for what was missing
    assert hub.bytes_served(FILE) == SIZE


def test_a_server_that_ignores_range_still_gives_a_verified_file(
    app_paths: AppPaths, hub: FakeHub, content: bytes
) -> None:
    hub.faults.cut_at, hub.faults.ignore_range = SIZE // 3, True
    final = download(app_paths, hub)
    assert final.state == DONE, final.error
    assert installed(app_paths).read_bytes() == content
    assert hub.bytes_served(FILE) == SIZE // 3 + SIZE  # it sent everything again; the app dropped the repeat


def test_a_flipped_byte_is_caught_and_the_data_deleted(app_paths: AppPaths, hub: FakeHub) -> None:
    hub.faults.flip_byte_at = 1000
    final = download(app_paths, hub)
    assert final.state == FAILED
    assert "damaged" in final.error
    assert "deleted" in final.error
    assert not installed(app_paths).exists()
    assert partial_files(app_paths) == []
    assert all(model.origin == "" for model in Library(app_paths).models())


def test_a_body_one_byte_short_is_completed(app_paths: AppPaths, hub: FakeHub, content: bytes) -> None:
    hub.faults.short_by_one = True
    final = download(app_paths, hub)
    # Every answer is one byte short, including the retry for the last byte: the app must give up cleanly.
    assert final.state == FAILED
    assert "can be resumed" in final.error
    assert not installed(app_paths).exists()
    (part,) = partial_files(app_paths)
    assert part.read_bytes() == content[:-1]  # kept for the resume
    hub.faults.reset()
    assert download(app_paths, hub).state == DONE
    assert installed(app_paths).read_bytes() == content
    assert hub.bytes_served(FILE) == SIZE  # the resume fetched the one missing byte


def test_server_errors_then_success(app_paths: AppPaths, hub: FakeHub, content: bytes) -> None:
    hub.faults.unavailable = 3
    final = download(app_paths, hub)
    assert final.state == DONE, final.error
    assert installed(app_paths).read_bytes() == content


def test_retry_after_is_honoured(app_paths: AppPaths, hub: FakeHub) -> None:
    hub.faults.rate_limited, hub.faults.retry_after = 1, 1
    started = time.monotonic()
    final = download(app_paths, hub)
    assert final.state == DONE, final.error
    assert time.monotonic() - started >= 1.0  # the fast test policy alone would have retried in 10 ms


def test_a_gated_repo_explains_the_licence_and_a_token_opens_it(
    app_paths: AppPaths, fake_hub: FakeHub, content: bytes
) -> None:
    fake_hub.add_repo(FakeRepo(REPO, {FILE: content}, gated=True, allowed_tokens={"hf_good"}))
    final = download(app_paths, fake_hub)
    assert final.state == FAILED
    assert f"accept its licence at {fake_hub.url}/{REPO}" in final.error
    assert partial_files(app_paths) == []

    final = download(app_paths, fake_hub, token="hf_good")
    assert final.state == DONE, final.error
    resolves = [record for record in fake_hub.requests if record.method == "GET" and "/resolve/" in record.path]
    assert resolves[-1].headers.get("authorization") == "Bearer hf_good"
    cdn = [record for record in fake_hub.requests if "/cdn/" in record.path]
    assert cdn
    assert all(record.host == "localhost" and "authorization" not in record.headers for record in cdn)


def test_a_commit_that_moves_after_listing_still_gives_the_listed_file(
    app_paths: AppPaths, hub: FakeHub, content: bytes
) -> None:
    commit, choice = the_choice(hub)
    hub.advance_commit(REPO, {FILE: b"GGUF" + os.urandom(1000)})
    manager = manager_for(app_paths, hub)
    assert manager.run(manager.add(REPO, commit, choice)).state == DONE
    assert installed(app_paths).read_bytes() == content  # pinned to the commit that was listed


def test_a_listed_commit_that_disappears_asks_to_list_again(app_paths: AppPaths, hub: FakeHub) -> None:
    commit, choice = the_choice(hub)
    hub.advance_commit(REPO, {FILE: b"GGUF" + os.urandom(1000)}, forget_old=True)
    manager = manager_for(app_paths, hub)
    final = manager.run(manager.add(REPO, commit, choice))
    assert final.state == FAILED
    assert "changed on the Hub" in final.error
    assert not installed(app_paths).exists()


def test_a_file_gone_from_the_repo_is_said_so(app_paths: AppPaths, hub: FakeHub) -> None:
    commit, choice = the_choice(hub)
    gone = QuantChoice(choice.quantization, (RemoteFile("Other-Q4_K_M.gguf", 10, "1" * 64),), False)
    manager = manager_for(app_paths, hub)
    final = manager.run(manager.add(REPO, commit, gone))
    assert final.state == FAILED
    assert "no longer in" in final.error


def test_too_little_space_is_refused_before_the_first_byte(
    app_paths: AppPaths, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit, choice = the_choice(hub)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=SIZE))
    with pytest.raises(NoSpaceError, match=r"needs 3\.\d MB more .* and 3\.\d MB is free"):
        manager_for(app_paths, hub).add(REPO, commit, choice)
    assert not [record for record in hub.requests if "/cdn/" in record.path]
    assert (
        not (app_paths.data / downloads.QUEUE_FILE).exists()
        or "Tiny" not in (app_paths.data / downloads.QUEUE_FILE).read_text()
    )


@pytest.fixture
def slow_cut(hub: FakeHub) -> Iterator[FakeHub]:
    """Cut the transfer at half, so a download is reliably mid-way when the test acts on it."""
    hub.faults.cut_at, hub.faults.cuts = SIZE // 2, 1
    yield hub


def start_until_cut(paths: AppPaths, hub: FakeHub) -> tuple[DownloadManager, str, Recorder]:
    """A background download, returned once it has reached the cut; its retry waits a minute, time to act on it."""
    commit, choice = the_choice(hub)
    recorder = Recorder()
    slow = RetryPolicy(base_delay=60.0, max_delay=60.0)
    manager = DownloadManager(paths, lambda: Hub(hub.url), policy=slow, listener=recorder)
    job = manager.add(REPO, commit, choice)
    manager.start()
    with recorder.changed:
        recorder.changed.wait_for(lambda: any(report.done >= SIZE // 2 for report in recorder.reports), 20)
    return manager, job, recorder


def test_pause_resume_and_a_restart_continue_from_the_bytes_on_disk(
    app_paths: AppPaths, slow_cut: FakeHub, content: bytes
) -> None:
    manager, job, recorder = start_until_cut(app_paths, slow_cut)
    manager.pause(job)
    paused = recorder.wait_for(PAUSED)
    assert paused.done == SIZE // 2
    manager.shutdown()

    # A new app start: the queue and the partial file are still there; resuming fetches only what is missing.
    recorder = Recorder()
    restarted = manager_for(app_paths, slow_cut, recorder)
    assert [(report.job_id, report.state, report.done) for report in restarted.jobs()] == [(job, PAUSED, SIZE // 2)]
    restarted.resume(job)
    recorder.wait_for(DONE)
    assert installed(app_paths).read_bytes() == content
    assert slow_cut.bytes_served(FILE) == SIZE


def test_cancel_deletes_the_partial_data(app_paths: AppPaths, slow_cut: FakeHub) -> None:
    manager, job, recorder = start_until_cut(app_paths, slow_cut)
    manager.cancel(job)
    recorder.wait_for(downloads.CANCELLED)
    assert manager.jobs() == []
    assert partial_files(app_paths) == []
    assert not installed(app_paths).exists()


def test_several_downloads_run_at_once(app_paths: AppPaths, fake_hub: FakeHub) -> None:
    files: dict[str, bytes | Path] = {f"Many-{quant}.gguf": os.urandom(SIZE) for quant in ("Q4_K_M", "Q5_K_M", "Q8_0")}
    fake_hub.add_repo(FakeRepo(REPO, files))
    with Hub(fake_hub.url) as client:
        details = client.repository(REPO)
    choices, _ = group_files(details.files)
    recorder = Recorder()
    manager = DownloadManager(app_paths, lambda: Hub(fake_hub.url), parallel=3, policy=FAST, listener=recorder)
    for choice in choices:
        manager.add(REPO, details.commit, choice)
    manager.start()
    deadline = time.monotonic() + 30
    while any(report.state != DONE for report in manager.jobs()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {report.state for report in manager.jobs()} == {DONE}
    for name, data in files.items():
        assert (app_paths.models / "tester" / "Tiny-GGUF" / name).read_bytes() == data
    names = {model.name for model in Library(app_paths, include_starter=False).models()}
    assert names == {name.removesuffix(".gguf") for name in files}
