"""A loopback imitation of the Hugging Face Hub, for tests that must not reach the internet.

It is a real HTTP/1.1 server on 127.0.0.1 so that huggingface_hub and our httpx downloader go through their whole
network stack: redirects, keep-alive, Range requests, status codes and the Hub's `X-Error-Code` header. LFS files
(`.gguf`) redirect to `cdn_url`, the same server under the host name `localhost`, so the redirect crosses origins as
the real one does and clients must drop the `Authorization` header. `Faults` breaks file transfers on demand.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import sys
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from types import TracebackType
from typing import Any, get_args
from urllib.parse import parse_qs, quote, unquote, urlsplit

from huggingface_hub.hf_api import ExpandModelProperty_T

CHUNK = 1024 * 1024
REPO_NOT_FOUND = "RepoNotFound"
REVISION_NOT_FOUND = "RevisionNotFound"
ENTRY_NOT_FOUND = "EntryNotFound"
GATED_REPO = "GatedRepo"

# What `expand` may ask for on the real Hub (huggingface_hub keeps the list); anything else is a 400 there, so a typo
# fails here too.
EXPANDABLE = frozenset(get_args(ExpandModelProperty_T))
# The fields the Hub answers in a listing when neither `expand` nor `full` is given: no gguf, no cardData.
LIST_FIELDS = (
    "_id",
    "id",
    "likes",
    "trendingScore",
    "private",
    "downloads",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
    "modelId",
)
FULL_LIST_FIELDS = (*LIST_FIELDS, "author", "sha", "lastModified", "gated", "disabled", "siblings")
SORT_KEYS = {
    "downloads": "downloads",
    "likes": "likes",
    "lastModified": "last_modified",
    "createdAt": "created_at",
    "trendingScore": "trending_score",
}
PARAMETER_SUFFIXES = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass
class FakeRepo:
    """A model repository as the tests describe it; its commits live in the hub (`FakeHub.commit_of`)."""

    repo_id: str
    files: dict[str, bytes | Path]
    gated: bool = False
    allowed_tokens: set[str] = field(default_factory=set)
    private: bool = False
    downloads: int = 0
    likes: int = 0
    trending_score: int = 0
    last_modified: str = "2025-01-01T00:00:00.000Z"
    created_at: str = "2024-06-01T00:00:00.000Z"
    licence: str = "apache-2.0"
    base_model: str | None = None
    tags: list[str] = field(default_factory=lambda: ["gguf"])
    parameters: int = 0

    @property
    def author(self) -> str:
        return self.repo_id.split("/")[0]

    def all_tags(self) -> list[str]:
        """The tags the Hub derives from the card as well as the declared ones: `filter` matches on these."""
        derived = [f"license:{self.licence}"] + ([f"base_model:{self.base_model}"] if self.base_model else [])
        return list(dict.fromkeys([*self.tags, *derived]))


@dataclass
class RequestRecord:
    """One request as the server saw it. `host` is the host name the client used, without the port.
    `content_sha256` names the file content a response streamed (None for anything else)."""

    method: str
    path: str
    headers: dict[str, str]
    host: str
    status: int
    content_sha256: str | None = None
    body_bytes_sent: int = 0


class Faults:
    """Misbehaviour of the file-content answers, settable from a test while the server runs.

    `unavailable` and `rate_limited` count answers to any request on a resolve or cdn URL (HEAD included). The
    others only touch content GETs (cdn, and resolve of files kept in git). A cut happens on a GET whose byte span
    holds offset `cut_at`: the bytes before it are sent, then the socket is shut down; `cuts` (1 unless set) says how
    many times.
    """

    cut_at: int | None
    cuts: int
    ignore_range: bool
    flip_byte_at: int | None
    short_by_one: bool
    unavailable: int
    rate_limited: int
    retry_after: int

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.cut_at = None
            self.cuts = 1
            self.ignore_range = False
            self.flip_byte_at = None
            self.short_by_one = False
            self.unavailable = 0
            self.rate_limited = 0
            self.retry_after = 1

    def _take_refusal(self) -> _Response | None:
        """The 503 or 429 this request gets, if any are left: a busy server refuses before looking at anything."""
        with self._lock:
            if self.unavailable > 0:
                self.unavailable -= 1
                return _json_response(503, {"error": "Service Unavailable"})
            if self.rate_limited > 0:
                self.rate_limited -= 1
                return _json_response(429, {"error": "Too Many Requests"}, {"Retry-After": str(self.retry_after)})
        return None

    def _plan(self, start: int, end: int) -> tuple[int, int | None]:
        """Where the body of a GET for bytes [start, end) stops, and which byte it flips."""
        with self._lock:
            stop = end
            if self.cut_at is not None and self.cuts > 0 and start <= self.cut_at < end:
                self.cuts -= 1
                stop = self.cut_at
            if self.short_by_one and end > start:
                stop = min(stop, end - 1)
            return stop, self.flip_byte_at


@dataclass(frozen=True)
class _Blob:
    """File content with the hashes the Hub reports for it, computed once (a Path is read in chunks)."""

    source: bytes | Path
    size: int
    sha256: str
    git_oid: str

    @classmethod
    def of(cls, source: bytes | Path) -> _Blob:
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        sha256 = hashlib.sha256()
        git = hashlib.sha1(b"blob %d\0" % size)
        for _, chunk in _read_chunks(source, 0, size):
            sha256.update(chunk)
            git.update(chunk)
        return cls(source, size, sha256.hexdigest(), git.hexdigest())


@dataclass(frozen=True)
class _Entry:
    """A file in a commit. GGUF files are in LFS, so git holds a pointer and the Hub redirects to its CDN."""

    path: str
    blob: _Blob

    @property
    def lfs(self) -> bool:
        return self.path.lower().endswith(".gguf")

    @property
    def pointer(self) -> bytes:
        spec = "version https://git-lfs.github.com/spec/v1"
        return f"{spec}\noid sha256:{self.blob.sha256}\nsize {self.blob.size}\n".encode()

    @property
    def oid(self) -> str:
        """The git object id: of the pointer for LFS files, as on the Hub."""
        if not self.lfs:
            return self.blob.git_oid
        return hashlib.sha1(b"blob %d\0" % len(self.pointer) + self.pointer).hexdigest()


@dataclass(frozen=True)
class _Commit:
    sha: str
    entries: dict[str, _Entry]

    @classmethod
    def of(cls, repo_id: str, parent: str, files: dict[str, bytes | Path]) -> _Commit:
        """A commit whose sha depends on the content and the parent, so re-uploading the same files still moves."""
        entries = {path: _Entry(path, _Blob.of(source)) for path, source in files.items()}
        digest = hashlib.sha1(f"{repo_id}\n{parent}\n".encode())
        for path in sorted(entries):
            digest.update(f"{path}\0{entries[path].oid}\n".encode())
        return cls(digest.hexdigest(), entries)


@dataclass
class _RepoState:
    repo: FakeRepo
    commits: dict[str, _Commit]
    head: str

    def resolve(self, revision: str) -> _Commit | None:
        return self.commits.get(self.head if revision == "main" else revision)


@dataclass(frozen=True)
class _Span:
    """File bytes [start, end) announced in Content-Length, of which [start, stop) are sent."""

    blob: _Blob
    start: int
    end: int
    stop: int
    flip_at: int | None


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    span: _Span | None = None


def _json_response(status: int, data: object, headers: dict[str, str] | None = None) -> _Response:
    body = json.dumps(data, separators=(",", ":")).encode()
    content = {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(body))}
    return _Response(status, {**(headers or {}), **content}, body)


def _error(status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> _Response:
    """An error the way the Hub words it: huggingface_hub picks its exception class from `X-Error-Code`."""
    extra = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {}), **(headers or {})}
    return _json_response(status, {"error": message}, extra)


def _read_chunks(source: bytes | Path, start: int, stop: int) -> Generator[tuple[int, bytes]]:
    """(offset, bytes) pieces of [start, stop), so a 250 MB model never sits in memory."""
    if isinstance(source, bytes):
        for offset in range(start, stop, CHUNK):
            yield offset, source[offset : min(offset + CHUNK, stop)]
        return
    with source.open("rb") as file:
        file.seek(start)
        offset = start
        while offset < stop and (chunk := file.read(min(CHUNK, stop - offset))):
            yield offset, chunk
            offset += len(chunk)


def _flipped(chunk: bytes, offset: int, flip_at: int | None) -> bytes:
    if flip_at is None or not offset <= flip_at < offset + len(chunk):
        return chunk
    index = flip_at - offset
    return chunk[:index] + bytes([chunk[index] ^ 0xFF]) + chunk[index + 1 :]


def _requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single-range `Range` header; None when absent or malformed, which RFC 9110 says to ignore.
    A start at or past `size` is returned as is: the caller answers 416."""
    match = RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:
        return max(size - int(last), 0), size
    if last and int(last) < int(first):
        return None
    return int(first), min(int(last) + 1, size) if last else size


def _parameter_count(text: str) -> int:
    """'1.5B' -> 1500000000, as the Hub's num_parameters filter reads it."""
    text = text.strip().upper()
    multiplier = PARAMETER_SUFFIXES.get(text[-1:], 1)
    return int(float(text[:-1] if text[-1:] in PARAMETER_SUFFIXES else text) * multiplier)


def _parameter_bounds(value: str) -> tuple[int, int]:
    """'min:1B,max:8B' -> inclusive bounds; either side may be left out."""
    bounds = {"min": 0, "max": sys.maxsize}
    for part in value.split(","):
        name, _, amount = part.partition(":")
        if name.strip() not in bounds:
            raise ValueError(part)
        bounds[name.strip()] = _parameter_count(amount)
    return bounds["min"], bounds["max"]


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() in {"true", "1", ""}


def _sibling(entry: _Entry, *, blobs: bool) -> dict[str, object]:
    if not blobs:
        return {"rfilename": entry.path}
    lfs = {"sha256": entry.blob.sha256, "size": entry.blob.size, "pointerSize": len(entry.pointer)}
    return {
        "rfilename": entry.path,
        "blobId": entry.oid,
        "size": entry.blob.size,
        **({"lfs": lfs} if entry.lfs else {}),
    }


def _model_fields(repo: FakeRepo, commit: _Commit, *, blobs: bool) -> dict[str, object]:
    """Every field the fake knows for a model, under the Hub's JSON names."""
    card: dict[str, object] = {"license": repo.licence, **({"base_model": repo.base_model} if repo.base_model else {})}
    return {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.author,
        "sha": commit.sha,
        "lastModified": repo.last_modified,
        "createdAt": repo.created_at,
        "private": repo.private,
        "disabled": False,
        "gated": "auto" if repo.gated else False,
        "downloads": repo.downloads,
        "likes": repo.likes,
        "trendingScore": repo.trending_score,
        "library_name": "gguf",
        "pipeline_tag": "text-generation",
        "tags": repo.all_tags(),
        "cardData": card,
        "gguf": {"total": repo.parameters, "architecture": "llama", "context_length": 4096},
        "siblings": [_sibling(entry, blobs=blobs) for entry in commit.entries.values()],
        "usedStorage": sum(entry.blob.size for entry in commit.entries.values()),
    }


def _pick(fields: dict[str, object], names: tuple[str, ...] | list[str]) -> dict[str, object]:
    return {name: fields[name] for name in names if name in fields}


def _tree_directories(path: str) -> list[str]:
    """The folders a path sits in. Hostile segments ('', '.', '..') end the walk, so '/etc/x.gguf' or
    '../x.gguf' are listed as files of the root, name unchanged: rejecting them is the client's job."""
    folders: list[str] = []
    for segment in path.split("/")[:-1]:
        if segment in {"", ".", ".."}:
            break
        folders.append(f"{folders[-1]}/{segment}" if folders else segment)
    return folders


def _parent_of(path: str) -> str:
    folders = _tree_directories(path)
    return folders[-1] if folders else ""


def _is_under(path: str, folder: str) -> bool:
    return not folder or path.startswith(f"{folder}/")


def _bearer(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class FakeHub:
    """The fake Hub. Start it (or use it as a context manager), add repos, point clients at `url`."""

    def __init__(self) -> None:
        self.faults = Faults()
        self._lock = threading.Lock()
        self._repos: dict[str, _RepoState] = {}
        self._blobs: dict[str, _Blob] = {}
        self._requests: list[RequestRecord] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._server = _Server(("127.0.0.1", 0), partial(_Handler, self))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops serving and drops open keep-alive connections, so a pooled client sees the Hub go away."""
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeHub is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        """The same server under another host name: a different origin for redirects."""
        return f"http://localhost:{self.port}"

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def add_repo(self, repo: FakeRepo) -> FakeRepo:
        commit = _Commit.of(repo.repo_id, "", repo.files)
        with self._lock:
            if repo.repo_id in self._repos:
                raise ValueError(f"{repo.repo_id} is already on the hub")
            self._repos[repo.repo_id] = _RepoState(repo, {commit.sha: commit}, commit.sha)
            self._keep_blobs(commit)
        return repo

    def advance_commit(self, repo_id: str, files: dict[str, bytes | Path], *, forget_old: bool = False) -> str:
        """Pushes a new commit that becomes "main". Older ones stay resolvable by sha unless `forget_old`."""
        commit = _Commit.of(repo_id, self.commit_of(repo_id), files)  # hashing a big file must not stall the server
        with self._lock:
            state = self._repos[repo_id]
            if forget_old:
                state.commits.clear()
            state.commits[commit.sha] = commit
            state.head = commit.sha
            state.repo.files = dict(files)
            self._keep_blobs(commit)
        return commit.sha

    def commit_of(self, repo_id: str) -> str:
        with self._lock:
            return self._repos[repo_id].head

    def bytes_served(self, path_suffix: str) -> int:
        """Body bytes handed to the socket for content GETs of files whose path ends with `path_suffix`, in any
        repo and commit, through the CDN or not. Files with identical content are counted together."""
        with self._lock:
            contents = {
                entry.blob.sha256
                for state in self._repos.values()
                for commit in state.commits.values()
                for entry in commit.entries.values()
                if entry.path.endswith(path_suffix)
            }
            records = list(self._requests)
        return sum(r.body_bytes_sent for r in records if r.method == "GET" and r.content_sha256 in contents)

    def _keep_blobs(self, commit: _Commit) -> None:
        for entry in commit.entries.values():
            self._blobs[entry.blob.sha256] = entry.blob

    def _record(self, method: str, path: str, headers: dict[str, str], response: _Response) -> RequestRecord:
        host = urlsplit(f"//{headers.get('host', '')}").hostname or ""
        content = response.span.blob.sha256 if response.span else None
        record = RequestRecord(method, path, headers, host, response.status, content)
        with self._lock:
            self._requests.append(record)
        return record

    def _count_sent(self, record: RequestRecord, size: int) -> None:
        """Counted before the write, so a client that has read the bytes always finds them in the log."""
        with self._lock:
            record.body_bytes_sent += size

    def _answer(self, method: str, target: str, headers: dict[str, str]) -> _Response:
        """Routes a request to the Hub URL it imitates."""
        split = urlsplit(target)
        parts = split.path.split("/")[1:]
        query = parse_qs(split.query, keep_blank_values=True)
        token = _bearer(headers)
        if parts[:2] == ["api", "models"]:
            return self._api(parts[2:], query, token)
        if len(parts) == 2 and parts[0] == "cdn":
            return self.faults._take_refusal() or self._cdn(method, parts[1], headers)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, revision, path = f"{parts[0]}/{parts[1]}", unquote(parts[3]), unquote("/".join(parts[4:]))
            return self.faults._take_refusal() or self._resolve(method, repo_id, revision, path, headers)
        return _error(404, None, "Not Found")

    def _api(self, parts: list[str], query: dict[str, list[str]], token: str | None) -> _Response:
        if not parts or parts == [""]:
            return self._list_models(query, token)
        repo_id, rest = "/".join(parts[:2]), parts[2:]
        if not rest:
            return self._model_info(repo_id, "main", query, token)
        if rest[0] == "revision" and len(rest) == 2:
            return self._model_info(repo_id, unquote(rest[1]), query, token)
        if rest[0] == "tree" and len(rest) >= 2:
            return self._tree(repo_id, unquote(rest[1]), unquote("/".join(rest[2:])), query, token)
        return _error(404, None, "Not Found")

    def _visible(self, repo_id: str, token: str | None) -> _RepoState | _Response:
        """The repo, or the answer the Hub gives when it is missing, or private and the token is not allowed."""
        with self._lock:
            state = self._repos.get(repo_id)
        if state is None:
            return _error(404, REPO_NOT_FOUND, "Repository not found")
        if state.repo.private and token not in state.repo.allowed_tokens:
            return _error(401, REPO_NOT_FOUND, "Repository not found")
        return state

    def _revision(self, repo_id: str, revision: str, token: str | None) -> tuple[_RepoState, _Commit] | _Response:
        state = self._visible(repo_id, token)
        if isinstance(state, _Response):
            return state
        with self._lock:
            commit = state.resolve(revision)
        if commit is None:
            return _error(404, REVISION_NOT_FOUND, f"Invalid rev id: {revision}")
        return state, commit

    def _list_models(self, query: dict[str, list[str]], token: str | None) -> _Response:
        try:
            names = self._listed_fields(query)
            bounds = _parameter_bounds(query["num_parameters"][-1]) if "num_parameters" in query else None
            limit = int(query.get("limit", ["1000"])[-1])
        except ValueError as problem:
            return _error(400, None, f"Invalid query: {problem}")
        sort = query.get("sort", [""])[-1]
        if sort and sort not in SORT_KEYS:
            return _error(400, None, f"Invalid sort: {sort}")
        with self._lock:
            heads = [(s.repo, s.commits[s.head]) for s in self._repos.values()]
        matches = [(repo, head) for repo, head in heads if self._listable(repo, query, token, bounds)]
        if sort:
            descending = query.get("direction", ["-1"])[-1] != "1"
            matches.sort(key=lambda match: getattr(match[0], SORT_KEYS[sort]), reverse=descending)
        documents = [_pick(_model_fields(repo, head, blobs=False), names) for repo, head in matches[:limit]]
        return _json_response(200, documents)

    @staticmethod
    def _listed_fields(query: dict[str, list[str]]) -> tuple[str, ...]:
        expand = query.get("expand", [])
        if unknown := set(expand) - EXPANDABLE:
            raise ValueError(f"expand {sorted(unknown)}")
        if expand:
            return ("_id", "id", *expand)
        names = FULL_LIST_FIELDS if _flag(query, "full") else LIST_FIELDS
        return (*names, "cardData") if _flag(query, "cardData") else names

    @staticmethod
    def _listable(
        repo: FakeRepo, query: dict[str, list[str]], token: str | None, bounds: tuple[int, int] | None
    ) -> bool:
        """Whether a repo passes the listing filters. A repo with no parameter count never passes num_parameters."""
        tags = repo.all_tags()
        return (
            (not repo.private or token in repo.allowed_tokens)
            and query.get("search", [""])[-1].lower() in repo.repo_id.lower()
            and query.get("author", [repo.author])[-1] == repo.author
            and all(wanted in tags for wanted in query.get("filter", []))
            and (bounds is None or (repo.parameters > 0 and bounds[0] <= repo.parameters <= bounds[1]))
        )

    def _model_info(self, repo_id: str, revision: str, query: dict[str, list[str]], token: str | None) -> _Response:
        found = self._revision(repo_id, revision, token)
        if isinstance(found, _Response):
            return found
        state, commit = found
        fields = _model_fields(state.repo, commit, blobs=_flag(query, "blobs"))
        expand = query.get("expand", [])
        if unknown := set(expand) - EXPANDABLE:
            return _error(400, None, f"Invalid expand: {sorted(unknown)}")
        return _json_response(200, _pick(fields, ["_id", "id", *expand]) if expand else fields)

    def _tree(
        self, repo_id: str, revision: str, folder: str, query: dict[str, list[str]], token: str | None
    ) -> _Response:
        """Files and folders under `folder`. No `Link` header: the whole listing is one page."""
        found = self._revision(repo_id, revision, token)
        if isinstance(found, _Response):
            return found
        state, commit = found
        folders = sorted({f for path in commit.entries for f in _tree_directories(path)})
        if folder and folder not in folders:
            return _error(404, ENTRY_NOT_FOUND, f"{folder} does not exist on {revision}", {"X-Repo-Commit": commit.sha})
        recursive = _flag(query, "recursive")
        listed = [f for f in folders if _is_under(f, folder) and (recursive or _parent_of(f) == folder)]
        files = [
            e
            for e in commit.entries.values()
            if _is_under(e.path, folder) and (recursive or _parent_of(e.path) == folder)
        ]
        last_commit = {"id": commit.sha, "title": "Upload folder", "date": state.repo.last_modified}
        extra: dict[str, object] = {"lastCommit": last_commit} if _flag(query, "expand") else {}
        items = [self._folder_item(commit, f, extra) for f in listed] + [self._file_item(e, extra) for e in files]
        return _json_response(200, items)

    @staticmethod
    def _folder_item(commit: _Commit, folder: str, extra: dict[str, object]) -> dict[str, object]:
        oid = hashlib.sha1(f"{commit.sha}/{folder}".encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": folder, **extra}

    @staticmethod
    def _file_item(entry: _Entry, extra: dict[str, object]) -> dict[str, object]:
        item: dict[str, object] = {"type": "file", "oid": entry.oid, "size": entry.blob.size, "path": entry.path}
        if entry.lfs:
            item["lfs"] = {"oid": entry.blob.sha256, "size": entry.blob.size, "pointerSize": len(entry.pointer)}
        return {**item, **extra}

    def _resolve(self, method: str, repo_id: str, revision: str, path: str, headers: dict[str, str]) -> _Response:
        token = _bearer(headers)
        found = self._revision(repo_id, revision, token)
        if isinstance(found, _Response):
            return found
        state, commit = found
        if state.repo.gated and token not in state.repo.allowed_tokens:
            return self._gated(repo_id, token)
        repo_commit = {"X-Repo-Commit": commit.sha}
        entry = commit.entries.get(path)
        if entry is None:
            return _error(404, ENTRY_NOT_FOUND, "Entry not found", repo_commit)
        if not entry.lfs:
            return self._content(method, entry.blob, f'"{entry.oid}"', headers, repo_commit)
        return self._redirect(entry, commit)

    def _gated(self, repo_id: str, token: str | None) -> _Response:
        restricted = f"Access to model {repo_id} is restricted"
        if token is None:
            message = f"{restricted}. You must have access to it and be authenticated to access it. Please log in."
            return _error(401, GATED_REPO, message)
        message = f"{restricted} and you are not in the authorized list. Visit {self.url}/{repo_id} to ask for access."
        return _error(403, GATED_REPO, message)

    def _redirect(self, entry: _Entry, commit: _Commit) -> _Response:
        """The Hub's answer for an LFS file: a signed CDN URL on another host; the file's size and sha256 ride on
        X-Linked-* headers because a client must not follow the redirect to learn them."""
        name = quote(entry.path.rsplit("/", 1)[-1], safe="")
        signature = hashlib.sha1(f"{commit.sha}{entry.blob.sha256}".encode()).hexdigest()
        location = f"{self.cdn_url}/cdn/{entry.blob.sha256}?filename={name}&Expires=4102444800&Signature={signature}"
        headers = {
            "Location": location,
            "X-Repo-Commit": commit.sha,
            "X-Linked-Etag": f'"{entry.blob.sha256}"',
            "X-Linked-Size": str(entry.blob.size),
            "ETag": f'"{entry.oid}"',
            "Content-Length": "0",
        }
        return _Response(302, headers)

    def _cdn(self, method: str, sha256: str, headers: dict[str, str]) -> _Response:
        """Signed URLs need no token: anyone holding the URL gets the bytes."""
        with self._lock:
            blob = self._blobs.get(sha256)
        if blob is None:
            return _error(404, None, "Not Found")
        return self._content(method, blob, f'"{sha256}"', headers, {})

    def _content(
        self, method: str, blob: _Blob, etag: str, headers: dict[str, str], extra: dict[str, str]
    ) -> _Response:
        asked = None if self.faults.ignore_range else _requested_range(headers.get("range"), blob.size)
        common = {**extra, "Accept-Ranges": "bytes", "ETag": etag}
        if asked is not None and asked[0] >= blob.size:
            return _Response(416, {**common, "Content-Range": f"bytes */{blob.size}", "Content-Length": "0"})
        start, end = asked or (0, blob.size)
        common |= {"Content-Type": "application/octet-stream", "Content-Length": str(end - start)}
        if asked is not None:
            common["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
        stop, flip_at = self.faults._plan(start, end) if method == "GET" else (end, None)
        return _Response(200 if asked is None else 206, common, span=_Span(blob, start, end, stop, flip_at))


class _Server(ThreadingHTTPServer):
    """Tracks open connections so that stop() can close them; stays quiet about clients that hang up."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Skips HTTPServer's reverse DNS lookup of the address, which can stall on a machine without a resolver."""
        TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def __init__(self, hub: FakeHub, *args: Any) -> None:
        self._hub = hub
        super().__init__(*args)

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the hub keeps its own request log, and tests make many requests."""

    def _serve(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        response = self._hub._answer(self.command, self.path, headers)
        record = self._hub._record(self.command, self.path, headers, response)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.span is None:
            self._write(record, response.body)
        else:
            self._stream(record, response.span)

    def _write(self, record: RequestRecord, data: bytes) -> None:
        self._hub._count_sent(record, len(data))
        self.wfile.write(data)

    def _stream(self, record: RequestRecord, span: _Span) -> None:
        """Closes the file at once even when the client hangs up mid-stream."""
        if isinstance(span.blob.source, Path) and span.flip_at is None:
            self._send_file(record, span.blob.source, span.start, span.stop)
        else:
            with contextlib.closing(_read_chunks(span.blob.source, span.start, span.stop)) as chunks:
                for offset, chunk in chunks:
                    self._write(record, _flipped(chunk, offset, span.flip_at))
        if span.stop < span.end:
            self._cut()

    def _send_file(self, record: RequestRecord, path: Path, start: int, stop: int) -> None:
        """Zero-copy, as a CDN serves: a Python read-and-write loop would take a core from the client, and the
        download benchmark compares clients."""
        with path.open("rb") as file:
            for offset in range(start, stop, CHUNK):
                count = min(CHUNK, stop - offset)
                self._hub._count_sent(record, count)
                self.connection.sendfile(file, offset, count)

    def _cut(self) -> None:
        """Ends the connection mid-body, so the client sees fewer bytes than Content-Length promised."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
