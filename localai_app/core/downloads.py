"""Downloads that never lose or corrupt a byte: resumed from what is on disk after anything (a dropped connection,
a server error, quitting, a crash, a reboot), verified against the Hub's SHA-256 while the bytes arrive, and
moved into the library only once verified.

Layout: partial data lives in `models/.partial/<sha256>.part` (named by content, so a restarted app finds it), the
queue in `data/downloads.json`, and a finished model in `models/<owner>/<repo>/` with `source.json` recording
repo, commit, file name, size and SHA-256 for each file. No Qt here: the GUI listens through `listener`, which is
called from download threads.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import queue
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from localai_app.core.atomic import write_text_atomic
from localai_app.core.errors import AppError, HubError, TransientError
from localai_app.core.hub_files import QuantChoice, RemoteFile, check_repo_id, local_name
from localai_app.core.library import DOWNLOAD_RECORD, format_bytes
from localai_app.core.paths import AppPaths

if TYPE_CHECKING:  # the Hub gateway imports huggingface_hub (~0.4 s): only the downloads themselves need it
    from localai_app.core.hub import Hub

log = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"
QUEUE_FILE = "downloads.json"
CHUNK = 1 << 20
SYNC_EVERY = 16 << 20  # bytes between fsyncs of the partial file, which bound what a power cut can lose
# Blocks received but not yet written or hashed (a read is at most 1 MiB, see core/hub.py): a kill loses at most
# these and the block in hand, and the threads still run smoothly with so few.
WRITE_QUEUE_BLOCKS = 2
SPACE_MARGIN = 256 << 20  # left free on the disk after a download, for the rest of the system
RATE_WINDOW = 5.0  # seconds of transfer the displayed speed averages over
PROGRESS_INTERVAL = 0.1  # seconds between progress reports of one download
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}

QUEUED, RUNNING, PAUSED, FAILED, DONE, CANCELLED = "queued", "running", "paused", "failed", "done", "cancelled"


class DownloadError(AppError):
    """A download stopped for a reason the user must know; its partial data is kept unless the text says not."""


class NoSpaceError(DownloadError):
    pass


class ChecksumError(DownloadError):
    pass


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # consecutive failures without a new byte before giving up
    base_delay: float = 1.0  # seconds, doubled after each failure
    max_delay: float = 60.0
    max_retry_after: float = 300.0  # a longer Retry-After is taken as a refusal

    def delay(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        backoff: float = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        return backoff * random.uniform(0.5, 1.0)  # jitter: many clients retrying together would hit at once


@dataclass
class Job:
    """One queued model: a single GGUF or every part of a split one. What is saved to the queue file."""

    repo_id: str
    commit: str
    name: str  # the model's file name (the first part's, without the split suffix)
    files: list[RemoteFile]
    state: str = QUEUED
    error: str = ""

    @property
    def job_id(self) -> str:
        return f"{self.repo_id}@{self.commit[:12]}/{self.name}"

    @property
    def total(self) -> int:
        return sum(file.size for file in self.files)


@dataclass(frozen=True)
class Progress:
    job_id: str
    repo_id: str
    name: str
    state: str
    done: int
    total: int
    bytes_per_second: float = 0.0
    error: str = ""
    destination: Path | None = None  # the first file, once done

    @property
    def seconds_left(self) -> float | None:
        if self.bytes_per_second <= 0:
            return None
        return (self.total - self.done) / self.bytes_per_second


@dataclass
class _Running:
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    done: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, done) for the speed

    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (start, first), (end, last) = self.samples[0], self.samples[-1]
        return (last - first) / (end - start) if end > start else 0.0

    def record(self, done: int) -> None:
        now = time.monotonic()
        self.done = done
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW:
            self.samples.pop(0)


class _StopRequestedError(Exception):
    """The user paused or cancelled, or the app is closing: not an error."""


def model_folder(paths: AppPaths, repo_id: str) -> Path:
    owner, name = check_repo_id(repo_id).split("/")
    return paths.models / owner / name


def partial_path(paths: AppPaths, file: RemoteFile) -> Path:
    return paths.models / PARTIAL_DIR / f"{file.sha256}.part"


def check_space(paths: AppPaths, files: Iterable[RemoteFile]) -> None:
    """Refuse before the first byte when the disk cannot take what is still missing."""
    missing = 0
    for file in files:
        partial = partial_path(paths, file)
        missing += file.size - (partial.stat().st_size if partial.exists() else 0)
    paths.models.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(paths.models).free
    if missing + SPACE_MARGIN > free:
        raise NoSpaceError(
            f"Not enough disk space: this download needs {format_bytes(missing)} more "
            f"(plus {format_bytes(SPACE_MARGIN)} to spare) and {format_bytes(free)} is free in {paths.models}."
        )


class Transfer:
    """Fetches one file into its partial file, resuming, retrying and hashing as the bytes arrive."""

    def __init__(
        self, hub: Hub, job: Job, policy: RetryPolicy, stop: threading.Event, on_bytes: Callable[[int], None]
    ) -> None:
        self._hub = hub
        self._job = job
        self._policy = policy
        self._stop = stop
        self._on_bytes = on_bytes  # called with this file's byte count so far

    def fetch(self, file: RemoteFile, part: Path) -> None:
        """Leave `part` complete and verified, or raise. A checksum mismatch deletes it."""
        if not file.sha256:
            raise DownloadError(f"The Hub lists no SHA-256 for {file.path}, so it cannot be verified; not downloaded.")
        part.parent.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.sha256()
        offset = self._hash_existing(part, file, hasher)
        failures = 0
        while offset < file.size:
            if self._stop.is_set():
                raise _StopRequestedError
            try:
                offset = self._receive(file, part, offset, hasher)
            except TransientError as error:
                # What was written was hashed too, so the file's size is where to go on; new bytes restart the count.
                written = _size_of(part)
                failures = 1 if written > offset else failures + 1
                offset = written
                if failures >= self._policy.attempts:
                    gave_up = f"Gave up after {failures} tries; the download can be resumed."
                    raise DownloadError(f"{error} {gave_up}") from None
                log.info("download %s: %s; retrying", file.path, error)
                if self._stop.wait(self._policy.delay(failures, error.retry_after)):
                    raise _StopRequestedError from None
        if hasher.hexdigest() != file.sha256:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"{local_name(file.path)} arrived damaged (its SHA-256 does not match the Hub's), so the downloaded "
                "data was deleted. Try again; if it keeps happening, the mirror or a proxy is corrupting it."
            )

    def _hash_existing(self, part: Path, file: RemoteFile, hasher: Any) -> int:
        """Resume after a restart: the bytes already on disk enter the hash once (a hash's state cannot be saved)."""
        if not part.exists():
            return 0
        if part.stat().st_size > file.size:
            part.unlink()
            return 0
        with part.open("rb") as handle:
            while block := handle.read(CHUNK):
                hasher.update(block)
        size = part.stat().st_size
        self._on_bytes(size)
        return size

    def _receive(self, file: RemoteFile, part: Path, offset: int, hasher: Any) -> int:
        """One request from `offset`; returns the new offset. Transport trouble is raised as TransientError."""
        try:
            opened = self._hub.open(self._job.repo_id, self._job.commit, file.path, start=offset)
            with opened as response, _PartWriter(part, hasher) as writer:
                skip = offset if response.status_code == 200 else 0  # the server ignored the range: drop what we have
                for received in response.iter_raw():  # as it arrives: a cut loses nothing already received
                    if self._stop.is_set():
                        raise _StopRequestedError
                    dropped = min(skip, len(received))
                    block, skip = received[dropped:], skip - dropped
                    if offset + len(block) > file.size:
                        raise TransientError(f"The server sent more of {file.path} than the Hub lists.")
                    writer.write(block)
                    offset += len(block)
                    self._on_bytes(offset)
        except OSError as error:
            if error.errno in _NO_ROOM:
                part.unlink(missing_ok=True)
                raise NoSpaceError(
                    f"The disk filled up while downloading {local_name(file.path)}; the partial data was deleted "
                    "to give the space back. Free some space and download again."
                ) from None
            raise
        if offset < file.size:
            raise TransientError(f"The connection ended before the end of {file.path}.")
        return offset


class _PartWriter:
    """Appends received blocks to the partial file and hashes them, each on a thread of its own, so that the disk,
    SHA-256 and the network reads overlap (file I/O and hashlib release the GIL). Few blocks wait in between, so a
    kill loses little of what was received. Leaving the `with` block waits until every block is written, hashed
    and synced; a write error is raised in the receiving thread."""

    def __init__(self, part: Path, hasher: Any) -> None:
        self._part = part
        self._hasher = hasher
        self._to_disk: queue.Queue[bytes | None] = queue.Queue(maxsize=WRITE_QUEUE_BLOCKS)
        self._to_hash: queue.Queue[bytes | None] = queue.Queue(maxsize=WRITE_QUEUE_BLOCKS)
        self._error: OSError | None = None
        self._threads = [
            threading.Thread(target=self._write_out, name="download-write", daemon=True),
            threading.Thread(target=self._digest, name="download-hash", daemon=True),
        ]

    def __enter__(self) -> _PartWriter:
        for thread in self._threads:
            thread.start()
        return self

    def write(self, block: bytes) -> None:
        if self._error:
            raise self._error
        self._to_disk.put(block)
        self._to_hash.put(block)

    def __exit__(
        self, kind: type[BaseException] | None, exception: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._to_disk.put(None)
        self._to_hash.put(None)
        for thread in self._threads:
            thread.join()
        if self._error and exception is None:
            raise self._error

    def _digest(self) -> None:
        while (block := self._to_hash.get()) is not None:
            self._hasher.update(block)

    def _write_out(self) -> None:
        unsynced = 0
        syncing: threading.Thread | None = None
        try:
            with self._part.open("ab") as out:
                while (block := self._to_disk.get()) is not None:
                    out.write(block)
                    unsynced += len(block)
                    if unsynced >= SYNC_EVERY and not (syncing and syncing.is_alive()):
                        out.flush()
                        # Flushing to the disk waits on it: in the background, while the writes go on.
                        syncing = threading.Thread(target=os.fsync, args=(out.fileno(),), name="download-sync")
                        syncing.start()
                        unsynced = 0
                out.flush()
                if syncing:
                    syncing.join()
                os.fsync(out.fileno())
        except OSError as error:
            self._error = error
            while self._to_disk.get() is not None:  # keep the receiver from blocking on a full queue
                pass


class DownloadManager:
    """The queue: several downloads at once, pause, resume, cancel, restored at the next start."""

    def __init__(
        self,
        paths: AppPaths,
        hub_factory: Callable[[], Hub],
        *,
        parallel: int = 2,
        policy: RetryPolicy | None = None,
        listener: Callable[[Progress], None] | None = None,
    ) -> None:
        self._paths = paths
        self._hub_factory = hub_factory
        self._parallel = parallel
        self._policy = policy or RetryPolicy()
        self._listener = listener or (lambda progress: None)
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {job.job_id: job for job in read_queue(paths)}
        self._running: dict[str, _Running] = {}

    # -- the queue ------------------------------------------------------------------------------------------------

    def jobs(self) -> list[Progress]:
        with self._lock:
            return [self._progress(job) for job in self._jobs.values()]

    def add(self, repo_id: str, commit: str, choice: QuantChoice) -> str:
        """Queue a model; refused at once when the disk cannot hold it. Adding a queued model again resumes it."""
        for file in choice.files:
            local_name(file.path)
        job = Job(repo_id, commit, choice.name, list(choice.files))
        with self._lock:
            existing = self._jobs.get(job.job_id)
            if existing and existing.state in (QUEUED, RUNNING):
                return job.job_id
            check_space(self._paths, job.files)
            self._jobs[job.job_id] = job
            self._save()
        self._notify(job)
        return job.job_id

    def start(self) -> None:
        """Run what is queued (including downloads interrupted by quitting or a crash), up to `parallel` at once."""
        with self._lock:
            for job in self._jobs.values():
                if job.state == RUNNING:
                    job.state = QUEUED
            self._schedule()

    def pause(self, job_id: str) -> None:
        """Returns at once; the transfer stops at its next block and keeps its partial data."""
        with self._lock:
            job = self._jobs[job_id]
            if job.state in (QUEUED, RUNNING):
                job.state = PAUSED
                self._save()
            self._signal_stop(job_id)
        self._notify(job)

    def resume(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs[job_id]
            if job.state in (PAUSED, FAILED):
                job.state, job.error = QUEUED, ""
                self._save()
            self._schedule()
        self._notify(job)

    def cancel(self, job_id: str) -> None:
        """Forget a download and delete its partial data (a finished model stays in the library). Returns at once;
        a running transfer finishes the cancellation when it stops."""
        with self._lock:
            job = self._jobs[job_id]
            if job.state == DONE:
                del self._jobs[job_id]
                self._save()
                return
            job.state = CANCELLED
            if not self._signal_stop(job_id):
                self._forget(job)

    def clear_finished(self) -> None:
        with self._lock:
            self._jobs = {key: job for key, job in self._jobs.items() if job.state != DONE}
            self._save()

    def shutdown(self, wait: float = 10.0) -> None:
        """Stop every transfer (their partial data stays; they resume at the next start) and wait for them a while.
        A transfer stuck in a network read is a daemon thread and does not keep the process alive."""
        with self._lock:
            running = list(self._running.values())
            for state in running:
                state.stop.set()
        deadline = time.monotonic() + wait
        for state in running:
            if state.thread:
                state.thread.join(max(0.0, deadline - time.monotonic()))

    def run(self, job_id: str) -> Progress:
        """Download in the calling thread (the CLI); returns the final progress."""
        with self._lock:
            job = self._jobs[job_id]
            job.state, job.error = RUNNING, ""
            self._running[job_id] = _Running()
        self._work(job)
        with self._lock:
            return self._progress(job)

    # -- internals ------------------------------------------------------------------------------------------------

    def _schedule(self) -> None:
        with self._lock:
            active = sum(1 for state in self._running.values() if state.thread)
            for job in self._jobs.values():
                if active >= self._parallel:
                    break
                if job.state == QUEUED and job.job_id not in self._running:
                    running = _Running()
                    running.thread = threading.Thread(target=self._work, args=(job,), name="download", daemon=True)
                    self._running[job.job_id] = running
                    job.state = RUNNING
                    active += 1
                    running.thread.start()
            self._save()

    def _signal_stop(self, job_id: str) -> bool:
        """Ask a running transfer to stop; False when none runs."""
        running = self._running.get(job_id)
        if running:
            running.stop.set()
        return running is not None

    def _forget(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.job_id, None)
            self._save()
        for file in job.files:
            partial_path(self._paths, file).unlink(missing_ok=True)
        self._listener(self._progress(job))

    def _work(self, job: Job) -> None:
        running = self._running[job.job_id]
        hub = self._hub_factory()
        sizes_before = [0] * len(job.files)

        last_report = [0.0]

        def counted(index: int) -> Callable[[int], None]:
            def on_bytes(done: int) -> None:
                sizes_before[index] = done
                running.done = sum(sizes_before)
                now = time.monotonic()
                if now - last_report[0] >= PROGRESS_INTERVAL:  # a fast link delivers thousands of reads a second
                    last_report[0] = now
                    running.record(running.done)
                    self._notify(job)

            return on_bytes

        try:
            check_space(self._paths, job.files)
            for index, file in enumerate(job.files):
                transfer = Transfer(hub, job, self._policy, running.stop, counted(index))
                transfer.fetch(file, partial_path(self._paths, file))
            self._install(job)
            outcome, error = DONE, ""
        except _StopRequestedError:  # paused or cancelled (the state says which), or the app is closing
            outcome, error = job.state if job.state != RUNNING else QUEUED, ""
        except (HubError, DownloadError) as failure:
            outcome, error = FAILED, str(failure)
        except OSError as failure:
            outcome, error = FAILED, f"The download could not be written: {failure.strerror or failure}."
        finally:
            hub.close()
        with self._lock:
            self._running.pop(job.job_id, None)
            if job.state == CANCELLED:
                self._forget(job)
                return
            job.state, job.error = outcome, error
            self._save()
            if running.thread:  # a background download hands its slot on; the CLI's own run() does not
                self._schedule()
        self._notify(job)

    def _install(self, job: Job) -> None:
        """Move the verified parts into the library (the first part last: the model appears whole or not at all)
        and record where they came from."""
        folder = model_folder(self._paths, job.repo_id)
        folder.mkdir(parents=True, exist_ok=True)
        for file in reversed(job.files):
            os.replace(partial_path(self._paths, file), folder / local_name(file.path))
        _sync_directory(folder)
        sources_file = folder / DOWNLOAD_RECORD
        try:
            document = json.loads(sources_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            document = {}
        files = document.get("files") if isinstance(document.get("files"), dict) else {}
        for file in job.files:
            files[local_name(file.path)] = {
                "repo": job.repo_id,
                "commit": job.commit,
                "file": file.path,
                "size": file.size,
                "sha256": file.sha256,
                "downloaded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        write_text_atomic(sources_file, json.dumps({"schema_version": 1, "files": files}, indent=2) + "\n")

    def _progress(self, job: Job) -> Progress:
        running = self._running.get(job.job_id)
        if job.state == DONE:
            done = job.total
        elif running:
            done = running.done
        else:
            done = sum(_size_of(partial_path(self._paths, file)) for file in job.files)
        folder = model_folder(self._paths, job.repo_id)
        destination = folder / local_name(job.files[0].path) if job.state == DONE else None
        return Progress(
            job.job_id,
            job.repo_id,
            job.name,
            job.state,
            done,
            job.total,
            running.rate() if running else 0.0,
            job.error,
            destination,
        )

    def _notify(self, job: Job) -> None:
        with self._lock:
            progress = self._progress(job)
        self._listener(progress)

    def _save(self) -> None:
        jobs = [asdict(job) for job in self._jobs.values()]
        write_text_atomic(self._paths.data / QUEUE_FILE, json.dumps({"schema_version": 1, "jobs": jobs}, indent=2))


def read_queue(paths: AppPaths) -> list[Job]:
    """The saved queue; an unreadable one is logged and treated as empty (the partial files stay)."""
    try:
        document = json.loads((paths.data / QUEUE_FILE).read_text(encoding="utf-8"))
        return [
            Job(
                item["repo_id"],
                item["commit"],
                item["name"],
                [RemoteFile(**file) for file in item["files"]],
                item["state"],
                item.get("error", ""),
            )
            for item in document["jobs"]
        ]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("downloads: the queue file is unreadable (%s); starting with an empty queue", error)
        return []


def unfinished(paths: AppPaths) -> bool:
    """Whether the saved queue holds downloads to go on with (cheap: the GUI asks at start)."""
    return any(job.state in (QUEUED, RUNNING) for job in read_queue(paths))


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _sync_directory(folder: Path) -> None:
    """Make the renames durable: without this a crash can forget them."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
