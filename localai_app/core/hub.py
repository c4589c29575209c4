"""The one module that talks to the Hugging Face Hub (or a mirror): search, repository listings, model cards,
ranged reads of GGUF headers, and the file transfers downloads build on.

Metadata goes through huggingface_hub, always with an explicit endpoint and token (it reads its environment at
import time). File content goes through our own HTTP client, because the app owns resuming and hashing
(core/downloads.py), follows redirects itself so that the token never reaches another host, and always verifies
TLS. Every failure becomes a HubError whose text is one sentence for the user.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
import httpx2
from huggingface_hub import HfApi, get_token, hf_hub_url
from huggingface_hub import constants as hub_constants
from huggingface_hub import errors as hub_errors

from localai_app.core.atomic import write_text_atomic
from localai_app.core.errors import (
    AccessError,
    AppError,
    HeaderIncompleteError,
    HubError,
    NotOnHubError,
    OfflineError,
    TransientError,
)
from localai_app.core.gguf_header import parse_header_prefix
from localai_app.core.hub_files import RemoteFile, check_repo_id
from localai_app.core.model_shape import ModelShape, shape_from_headers

PUBLIC_ENDPOINT = "https://huggingface.co"
SORTS: dict[str, Literal["downloads", "likes", "last_modified"]] = {
    "downloads": "downloads",
    "likes": "likes",
    "recent": "last_modified",
}
# Size classes by total parameters, in the Hub's own `num_parameters` filter syntax.
SIZE_CLASSES = {
    "tiny (< 2B)": "max:2B",
    "small (2-9B)": "min:2B,max:9B",
    "medium (9-35B)": "min:9B,max:35B",
    "large (> 35B)": "min:35B",
}
CARD_LIMIT = 512 * 1024  # a model card larger than this is cut: it is read in a text view, not parsed
HEADER_READS = (1 << 20, 8 << 20, 64 << 20)  # bytes to try: most headers fit in 1 MiB, big vocabularies need more
MAX_REDIRECTS = 5
# httpcore reads responses 64 KiB at a time, and then the Python work per read (HTTP parsing, the download loop)
# costs more than the bytes: with hashing and disk work already on other threads, 64 KiB reads kept a loopback
# download at 1.8x curl's time, 1 MiB reads at 1.04-1.08x (benchmarks/download_vs_curl.py). A read returns what
# has arrived, so small responses are not held back.
httpcore.HTTP11Connection.READ_NUM_BYTES = 1 << 20


@dataclass(frozen=True)
class RepoSummary:
    repo_id: str
    author: str
    downloads: int
    likes: int
    last_modified: datetime | None
    licence: str
    gated: bool
    base_model: str
    parameters: int  # from the Hub's GGUF summary; 0 when it has none


@dataclass(frozen=True)
class RepoDetails:
    summary: RepoSummary
    commit: str  # every later request for this listing is pinned to it
    files: list[RemoteFile]


def has_stored_token() -> bool:
    return Path(hub_constants.HF_TOKEN_PATH).is_file()


def save_token(token: str) -> None:
    """Store an access token where huggingface_hub keeps it (`hf auth login` uses the same file, readable by the
    user only), never in the app's settings. An empty token removes it."""
    path = Path(hub_constants.HF_TOKEN_PATH)
    if not token.strip():
        path.unlink(missing_ok=True)
        return
    write_text_atomic(path, token.strip())
    path.chmod(0o600)


class EndpointError(AppError):
    pass


def check_endpoint(text: str) -> str | None:
    """A Hub address as the user typed it, cleaned up; None (empty) means HF_ENDPOINT or the public Hub."""
    address = text.strip().rstrip("/")
    if not address:
        return None
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise EndpointError(
            f"{address!r} is not a Hub address: give one like https://huggingface.co or https://hf-mirror.example."
        )
    return address


def endpoint_from(setting: str | None) -> str:
    """The user's setting, else HF_ENDPOINT (mirrors, and the tests' loopback Hub), else the public Hub."""
    return (setting or os.environ.get("HF_ENDPOINT") or PUBLIC_ENDPOINT).rstrip("/")


class Hub:
    def __init__(self, endpoint: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        # huggingface_hub's own token handling: HF_TOKEN, or what `hf auth login` (or the app's setting) stored.
        self._token = token if token is not None else get_token()
        self._api = HfApi(endpoint=self.endpoint, token=self._token or False)
        # Proxies come from the environment (trust_env); TLS is verified, always.
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=False, verify=True)
        self._reachable = False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc

    def search(
        self, query: str, *, sort: str = "downloads", size_class: str | None = None, licence: str | None = None
    ) -> list[RepoSummary]:
        filters = ["gguf"] + ([f"license:{licence}"] if licence else [])
        self._check_reachable()
        with self._explained(query):
            found = self._api.list_models(
                search=query or None,
                filter=filters,
                sort=SORTS[sort],
                num_parameters=SIZE_CLASSES[size_class] if size_class else None,
                limit=50,
                expand=["author", "downloads", "likes", "lastModified", "gated", "cardData", "gguf", "tags"],
            )
            return [_summary(info) for info in found]

    def repository(self, repo_id: str) -> RepoDetails:
        check_repo_id(repo_id)
        self._check_reachable()
        with self._explained(repo_id):
            info = self._api.model_info(repo_id, files_metadata=True)
        files = [
            RemoteFile(sibling.rfilename, sibling.size or 0, sibling.lfs.sha256 if sibling.lfs else None)
            for sibling in info.siblings or []
        ]
        return RepoDetails(_summary(info), info.sha or "", files)

    def _check_reachable(self) -> None:
        """Say "offline" at once: huggingface_hub retries a refused connection with backoff for ~15 s first."""
        if not self._reachable:
            with self._transport_explained():
                self._http.head(self.endpoint, timeout=5.0)
            self._reachable = True

    def card(self, repo_id: str, commit: str) -> str:
        """The model card (README.md) as text, cut at CARD_LIMIT; "" when the repository has none."""
        try:
            with self.open(repo_id, commit, "README.md", end=CARD_LIMIT - 1) as response:
                data = _read_at_most(response, CARD_LIMIT)
        except NotOnHubError:
            return ""
        return data.decode("utf-8", errors="replace")

    def shape(self, repo_id: str, commit: str, file: RemoteFile) -> ModelShape | None:
        """The model's shape from its GGUF header, read with ranged requests (never the whole file)."""
        data = b""
        for length in HEADER_READS:
            end = min(length, file.size)
            with self.open(repo_id, commit, file.path, start=len(data), end=end - 1) as response:
                if response.status_code == 200:  # the server ignored the range and sends the file from its start
                    data = _read_at_most(response, end)
                else:
                    data += _read_at_most(response, end - len(data))
            try:
                return shape_from_headers([parse_header_prefix(data, file_size=file.size, name=file.path)])
            except HeaderIncompleteError:
                if end >= file.size:
                    raise
        return None  # a header beyond 64 MiB: no estimate rather than a large read

    @contextmanager
    def open(self, repo_id: str, commit: str, path: str, *, start: int = 0, end: int | None = None) -> Iterator[Any]:
        """A streaming GET of bytes start..end (inclusive) of a file at `commit`, redirects followed by hand.

        Yields the httpx response (status 200 when the server ignored the range, 206 when it honoured it). The
        token goes only to the endpoint's own origin, never to the host a redirect points at (the Hub sends file
        content from a CDN)."""
        url = hf_hub_url(repo_id, path, revision=commit, endpoint=self.endpoint)
        # Byte offsets must be the file's own: no compression in transit.
        headers = {"Accept-Encoding": "identity"}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        for _ in range(MAX_REDIRECTS + 1):
            authorised = dict(headers)
            if self._token and _origin(url) == _origin(self.endpoint):
                authorised["Authorization"] = f"Bearer {self._token}"
            with self._transport_explained(), self._http.stream("GET", url, headers=authorised) as response:
                served_commit = response.headers.get("X-Repo-Commit")
                if served_commit and _is_commit(commit) and served_commit != commit:
                    raise NotOnHubError(f"{repo_id} changed on the Hub since it was listed; open it again.")
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    continue
                _raise_for_status(response, repo_id, path, self.endpoint)
                yield response
                return
        raise HubError(f"The Hub redirected {path} too many times.")

    @contextmanager
    def _explained(self, subject: str) -> Iterator[None]:
        """Turn huggingface_hub's and the transport's errors into HubErrors."""
        try:
            with self._transport_explained():
                yield
        except hub_errors.GatedRepoError:
            raise AccessError(_gated_sentence(subject, self.endpoint)) from None
        except hub_errors.RepositoryNotFoundError:
            raise NotOnHubError(
                f"{subject} is not on {self.host}, or it is private (an access token in Settings opens it)."
            ) from None
        except hub_errors.RevisionNotFoundError:
            raise NotOnHubError(f"{subject} changed on the Hub while it was open; open it again.") from None
        except hub_errors.HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else 0
            raise _status_error(status, subject, self.host, None) from None

    @contextmanager
    def _transport_explained(self) -> Iterator[None]:
        try:
            yield
        except (httpx.ConnectError, httpx2.ConnectError, httpx.ConnectTimeout, httpx2.ConnectTimeout) as error:
            if "CERTIFICATE" in str(error).upper():
                raise HubError(f"{self.host}'s TLS certificate could not be verified, so nothing was sent.") from None
            raise OfflineError(
                f"Cannot reach {self.host}: you seem to be offline. Your library and the catalog still work."
            ) from None
        except (httpx.TransportError, httpx2.TransportError) as error:
            raise TransientError(f"The connection to {self.host} broke ({type(error).__name__}).") from None


def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The body's first `limit` bytes, without reading the rest (the server may be sending a whole model)."""
    chunks: list[bytes] = []
    received = 0
    for block in response.iter_raw():
        chunks.append(block)
        received += len(block)
        if received >= limit:
            break
    return b"".join(chunks)[:limit]


def _summary(info: Any) -> RepoSummary:
    card = info.card_data
    gguf = info.gguf if isinstance(info.gguf, dict) else {}
    base = card.get("base_model") if card else None
    return RepoSummary(
        repo_id=info.id,
        author=info.author or info.id.split("/")[0],
        downloads=info.downloads or 0,
        likes=info.likes or 0,
        last_modified=info.last_modified,
        licence=str(card.get("license") or "") if card else "",
        gated=bool(info.gated),
        base_model=", ".join(base) if isinstance(base, list) else str(base or ""),
        parameters=int(gguf.get("total") or 0),
    )


def _is_commit(revision: str) -> bool:
    return len(revision) == 40 and all(character in "0123456789abcdef" for character in revision)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _gated_sentence(repo_id: str, endpoint: str) -> str:
    return (
        f"{repo_id} is gated: accept its licence at {endpoint}/{repo_id} while logged in, then set your access "
        "token in Settings (or HF_TOKEN)."
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else None


def _raise_for_status(response: httpx.Response, repo_id: str, path: str, endpoint: str) -> None:
    if response.status_code in (200, 206):
        return
    code = response.headers.get("X-Error-Code", "")
    if response.status_code in (401, 403) and (code == "GatedRepo" or response.status_code == 403):
        raise AccessError(_gated_sentence(repo_id, endpoint))
    if response.status_code == 401:
        raise AccessError(f"{repo_id} is private or needs an access token: set one in Settings (or HF_TOKEN).")
    if response.status_code == 404:
        if code == "RevisionNotFound":
            raise NotOnHubError(f"{repo_id} changed on the Hub since it was listed; open it again.")
        raise NotOnHubError(f"{path} is no longer in {repo_id}.")
    raise _status_error(response.status_code, path, urlsplit(str(response.url)).netloc, _retry_after(response))


def _status_error(status: int, subject: str, host: str, retry_after: float | None) -> HubError:
    if status == 429:
        return TransientError(f"{host} asks to slow down (too many requests).", retry_after=retry_after)
    if status >= 500 or status == 408:
        return TransientError(f"{host} had a problem answering for {subject} (HTTP {status}).", retry_after=retry_after)
    return HubError(f"{host} refused the request for {subject} (HTTP {status}).")
