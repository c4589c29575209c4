"""Remote servers: OpenAI-compatible endpoints (llama.cpp's llama-server, vLLM, Ollama's /v1, another localai-app)
whose models chat beside the local ones, with the same conversations, stats and exports.

The list lives in remote-servers.json in the config folder; API keys live in Credentials (a 0600 file), never in that
list, which people paste into bug reports. Every request goes through EngineClient, the one module that speaks the
protocol; httpx is imported on first use (see EngineManager.load), not when the GUI starts.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit, urlunsplit

from localai_app.core.atomic import write_text_atomic
from localai_app.core.credentials import Credentials
from localai_app.core.errors import AppError, ConnectionLostError, EngineError, TokenCountUnavailableError
from localai_app.core.library import REMOTE, ModelInfo
from localai_app.core.replies import ReplyStream, SamplingOptions

if TYPE_CHECKING:
    from localai_app.core.client import EngineClient
    from localai_app.core.engine_manager import EngineManager
    from localai_app.core.estimate import LoadPlan

log = logging.getLogger(__name__)

SERVERS_FILE = "remote-servers.json"
SCHEMA_VERSION = 1
LIST_TIMEOUT = 10.0  # seconds: listing models is quick on any server that is up; a reply may take minutes
REPLY_TIMEOUT = 600.0


@dataclass(frozen=True)
class RemoteServer:
    name: str
    url: str  # as normalise_url returns it: requests add /v1/...


def credential_name(server_name: str) -> str:
    """The name a server's API key is kept under in Credentials."""
    return f"remote:{server_name}"


def normalise_url(text: str) -> str:
    """The base URL that requests go under, or an AppError saying what is wrong with `text`."""
    url = text.strip()
    if not url:
        raise AppError("Enter the server's address, for example http://192.168.1.20:8080.")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise AppError(f"The address {url} must start with http:// or https://.")
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError:
        raise AppError(f"The address {url} has an invalid port number.") from None
    if not parts.hostname:
        raise AppError(f"The address {url} names no host: write it like http://192.168.1.20:8080.")
    path = parts.path.rstrip("/")
    # Servers document their address with /v1 (Ollama: http://host:11434/v1) or without; requests add it themselves.
    path = path.removesuffix("/v1")
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, "", ""))


def key_sent_in_clear(url: str, api_key: str) -> bool:
    """Whether `api_key` would cross the network unencrypted: plain http to a host other than this machine."""
    parts = urlsplit(url.strip())
    if not api_key or parts.scheme.lower() != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost" or parts.hostname.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return True


def remote_model(server: RemoteServer, model_id: str) -> ModelInfo:
    """A model as the picker, conversations and exports know it: named "id @ server", unique across servers and
    stable, since conversations store the name and reopening one switches back to it."""
    return ModelInfo(
        name=f"{model_id} @ {server.name}",
        title=model_id,  # the id the server knows it by, which requests name (see RemoteBackend)
        path=Path(),
        parts=(),
        source=REMOTE,
        file_size=0,
        has_chat_template=True,  # an OpenAI-compatible server applies the model's template itself
        server=server.name,
    )


class RemoteServers:
    """The servers the user added, and clients for them."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / SERVERS_FILE
        self._credentials = Credentials(config_dir)

    def servers(self) -> list[RemoteServer]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            log.warning("remote servers: %s is unreadable (%s); none listed", self.path, error)
            return []
        entries = document.get("servers") if isinstance(document, dict) else None
        return [
            RemoteServer(entry["name"], entry["url"])
            for entry in entries or []
            if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("url"), str)
        ]

    def find(self, name: str) -> RemoteServer:
        for server in self.servers():
            if server.name == name:
                return server
        raise AppError(f"There is no remote server named {name} any more; add it again under Remote servers.")

    def add(self, name: str, url: str, api_key: str = "") -> RemoteServer:
        name = name.strip()
        if not name:
            raise AppError("Give the server a name, such as the machine it runs on.")
        known = self.servers()
        if any(server.name.casefold() == name.casefold() for server in known):
            raise AppError(f"A server named {name} is already listed: choose another name, or remove that one first.")
        server = RemoteServer(name, normalise_url(url))
        self._credentials.set(credential_name(name), api_key.strip() or None)
        self._save([*known, server])
        return server

    def remove(self, name: str) -> None:
        self._save([server for server in self.servers() if server.name != name])
        self._credentials.set(credential_name(name), None)

    def api_key(self, server: RemoteServer) -> str | None:
        return self._credentials.get(credential_name(server.name))

    def client(self, server: RemoteServer, *, model: str | None = None, timeout: float = LIST_TIMEOUT) -> EngineClient:
        return connect(server.url, self.api_key(server), f"the server {server.name}", model=model, timeout=timeout)

    def _save(self, servers: list[RemoteServer]) -> None:
        document = {
            "schema_version": SCHEMA_VERSION,
            "servers": [{"name": server.name, "url": server.url} for server in servers],
        }
        write_text_atomic(self.path, json.dumps(document, indent=2) + "\n")


def connect(
    url: str, api_key: str | None, label: str, *, model: str | None = None, timeout: float = LIST_TIMEOUT
) -> EngineClient:
    from localai_app.core.client import EngineClient  # httpx loads on first use, not while the GUI starts

    return EngineClient(url, api_key, timeout=timeout, model=model, label=label)


def offered(client: EngineClient) -> list[str]:
    """The ids of the models a server offers now (its /v1/models)."""
    return [str(entry["id"]) for entry in client.models() if entry.get("id")]


def probe(url: str, api_key: str = "") -> list[str]:
    """What "Test connection" shows before a server is added: the ids of its models, or an AppError saying why
    they cannot be listed."""
    client = connect(normalise_url(url), api_key.strip() or None, "the server")
    try:
        return offered(client)
    finally:
        client.close()


def list_models(servers: RemoteServers) -> tuple[list[ModelInfo], list[str]]:
    """Every server's models, and one sentence for each server that could not be listed. Servers are asked at the
    same time, so one that does not answer delays the others by nothing."""

    def one(server: RemoteServer) -> tuple[list[ModelInfo], str | None]:
        client = servers.client(server)
        try:
            return [remote_model(server, model_id) for model_id in offered(client)], None
        except AppError as error:
            return [], f"{error} Its models are not listed."
        finally:
            client.close()

    known = servers.servers()
    if not known:
        return [], []
    with ThreadPoolExecutor(max_workers=len(known), thread_name_prefix="remote-list") as pool:
        results = list(pool.map(one, known))
    return [model for models, _ in results for model in models], [problem for _, problem in results if problem]


class Backend(Protocol):
    """What EngineWorker asks of where a model runs: EngineManager for files here, RemoteBackend for servers."""

    @property
    def loaded_model(self) -> ModelInfo | None: ...

    @property
    def last_plan(self) -> LoadPlan | None: ...

    def load(self, model: ModelInfo, *, insist: bool = False) -> None: ...

    def count_tokens(self, model: ModelInfo, prompt: str | list[dict[str, str]]) -> tuple[int, int]: ...

    def client_for(self, model: ModelInfo) -> EngineClient: ...

    def stream(
        self, model: ModelInfo, prompt: str | list[dict[str, str]], sampling: SamplingOptions, *, insist: bool = False
    ) -> ReplyStream: ...

    def interrupt(self) -> None: ...

    def shutdown(self) -> None: ...


class RemoteBackend:
    """Remote models, behind the Backend surface. There is nothing to load: "load" checks that the server answers
    and still offers the model, so that a problem is one sentence before the user waits for a reply."""

    def __init__(self, servers: RemoteServers) -> None:
        self._servers = servers
        self._client: EngineClient | None = None
        self._model: ModelInfo | None = None
        self._checked: tuple[str, RemoteServer, str | None] | None = None  # model, server and key of that client
        self._counts_tokens = True  # False once the server turned out to lack /v1/tokenize
        self._lock = threading.Lock()
        self._interrupted = threading.Event()  # the current reply's broken connection is Stop, not a fault

    @property
    def loaded_model(self) -> ModelInfo | None:
        return self._model

    @property
    def last_plan(self) -> LoadPlan | None:
        return None  # the server chose its own context and hardware

    def load(self, model: ModelInfo, *, insist: bool = False) -> None:
        """Blocks for a round trip: call it off the GUI thread. `insist` is for local loads; nothing is refused."""
        with self._lock:
            server = self._servers.find(model.server)
            wanted = (model.name, server, self._servers.api_key(server))
            if self._client is not None and self._checked == wanted:
                return
            self._forget_locked()
            lister = self._servers.client(server)
            try:
                ids = offered(lister)
            finally:
                lister.close()
            if model.title not in ids:
                raise EngineError(_gone(model, ids), kind="not_found")
            self._client = self._servers.client(server, model=model.title, timeout=REPLY_TIMEOUT)
            self._model, self._checked, self._counts_tokens = model, wanted, True

    def count_tokens(self, model: ModelInfo, prompt: str | list[dict[str, str]]) -> tuple[int, int]:
        client = self.client_for(model)
        if not self._counts_tokens:  # asked once per model: every later prompt would cost a wasted request
            raise TokenCountUnavailableError(f"The server {model.server} cannot count tokens.", kind="no_tokenizer")
        try:
            return client.count_tokens(prompt)
        except TokenCountUnavailableError:
            self._counts_tokens = False
            raise
        except ConnectionLostError:
            self._forget()
            raise

    def stream(
        self, model: ModelInfo, prompt: str | list[dict[str, str]], sampling: SamplingOptions, *, insist: bool = False
    ) -> ReplyStream:
        """Stream a reply (see EngineClient.stream); closing the iterator stops the server generating it."""
        client = self.client_for(model)
        self._interrupted.clear()
        events = client.stream(prompt, sampling)
        try:
            yield from events
        except ConnectionLostError:
            if self._interrupted.is_set():
                raise EngineError("Stopped.", kind="stopped") from None
            self._forget()  # the next request checks the server afresh
            raise
        except EngineError as error:
            if error.kind != "not_found":
                raise
            self._forget()
            raise EngineError(_gone(model, None), kind="not_found") from None
        finally:
            events.close()

    def interrupt(self) -> None:
        """Thread-safe: end the reply being streamed now (see EngineClient.interrupt)."""
        self._interrupted.set()
        client = self._client
        if client is not None:
            client.interrupt()

    def shutdown(self) -> None:
        self._forget()

    def client_for(self, model: ModelInfo) -> EngineClient:
        """The client of `model`'s server, for requests beyond a reply (the glass box's routes)."""
        self.load(model)
        client = self._client
        if client is None:  # shut down from another thread since
            raise EngineError("Stopped.", kind="stopped")
        return client

    def _forget(self) -> None:
        with self._lock:
            self._forget_locked()

    def _forget_locked(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._model = self._checked = None


def _gone(model: ModelInfo, ids: list[str] | None) -> str:
    offers = "" if ids is None else f" (it offers {', '.join(ids) or 'no models'})"
    return f"The server {model.server} no longer offers {model.title}{offers}."


class Backends:
    """Sends each model's requests where it runs: files on this machine to the EngineManager's engine, remote
    models to their server. The local engine keeps running while a remote model answers, ready to switch back."""

    def __init__(self, local: EngineManager, remote: RemoteBackend) -> None:
        self._local = local
        self._remote = remote
        self._last: Backend = local  # where the latest load went: what loaded_model and last_plan describe

    def _for(self, model: ModelInfo) -> Backend:
        return self._remote if model.server else self._local

    @property
    def loaded_model(self) -> ModelInfo | None:
        return self._last.loaded_model

    @property
    def last_plan(self) -> LoadPlan | None:
        return self._last.last_plan

    def load(self, model: ModelInfo, *, insist: bool = False) -> None:
        backend = self._for(model)
        backend.load(model, insist=insist)
        self._last = backend

    def count_tokens(self, model: ModelInfo, prompt: str | list[dict[str, str]]) -> tuple[int, int]:
        return self._for(model).count_tokens(model, prompt)

    def client_for(self, model: ModelInfo) -> EngineClient:
        """The client of wherever `model` runs (loading it if needed), for the glass box's routes."""
        self.load(model)
        return self._for(model).client_for(model)

    def stream(
        self, model: ModelInfo, prompt: str | list[dict[str, str]], sampling: SamplingOptions, *, insist: bool = False
    ) -> ReplyStream:
        return self._for(model).stream(model, prompt, sampling, insist=insist)

    def interrupt(self) -> None:
        self._local.interrupt()
        self._remote.interrupt()

    def shutdown(self) -> None:
        self._local.shutdown()
        self._remote.shutdown()
