"""Remote servers: the stored list (keys kept apart), address checks, and each connection problem explained in one
sentence, from real failures on loopback: a closed port, an unresolvable name, TLS, 401, a server that never
answers, a model that disappears."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from localai_app.core.credentials import Credentials
from localai_app.core.errors import AppError, EngineError, TokenCountUnavailableError
from localai_app.core.remote import (
    SERVERS_FILE,
    RemoteBackend,
    RemoteServers,
    connect,
    key_sent_in_clear,
    list_models,
    normalise_url,
    probe,
    remote_model,
)
from localai_app.core.replies import Delta, ReplyStats, SamplingOptions

KEY = "sk-test-123"


class _OpenAIServer(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible server whose model list a test can change, and which can demand a key."""

    models: ClassVar[list[str]] = ["alpha", "beta"]
    api_key: ClassVar[str | None] = None
    bodies: ClassVar[list[dict[str, Any]]] = []

    def _authorised(self) -> bool:
        if self.api_key is None or self.headers.get("Authorization") == f"Bearer {self.api_key}":
            return True
        self._json(401, {"error": {"message": "Invalid API key"}})
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": model, "object": "model"} for model in self.models]})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self._authorised():
            return
        self.bodies.append(body)
        if self.path != "/v1/chat/completions":
            self._json(404, {"detail": "Not Found"})
        elif body.get("model") not in self.models:
            self._json(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
        else:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for delta, finish in (({"content": "Hel"}, None), ({"content": "lo"}, None), ({}, "stop")):
                chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

    def _json(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _WebPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = b"<html>router login</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def openai_server() -> Iterator[str]:
    _OpenAIServer.models = ["alpha", "beta"]
    _OpenAIServer.api_key = None
    _OpenAIServer.bodies = []
    with serving(_OpenAIServer) as url:
        yield url


def closed_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


def one_sentence(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message and message.endswith(".")
    assert message[0].isupper()
    return message


def problem(url: str, api_key: str = "") -> str:
    with pytest.raises(AppError) as raised:
        probe(url, api_key)
    return one_sentence(str(raised.value))


# -- the stored list ---------------------------------------------------------------------------------------------


def test_servers_round_trip_and_keys_stay_out_of_the_list(tmp_path: Path) -> None:
    servers = RemoteServers(tmp_path)
    servers.add("gpu-box", "http://192.168.1.20:8080/v1/", KEY)
    servers.add("laptop", " https://laptop.example ")

    again = RemoteServers(tmp_path)
    assert [(server.name, server.url) for server in again.servers()] == [
        ("gpu-box", "http://192.168.1.20:8080"),
        ("laptop", "https://laptop.example"),
    ]
    assert again.api_key(again.find("gpu-box")) == KEY and again.api_key(again.find("laptop")) is None
    assert KEY not in (tmp_path / SERVERS_FILE).read_text()
    assert Credentials(tmp_path).get("remote:gpu-box") == KEY
    assert stat.S_IMODE(Credentials(tmp_path).path.stat().st_mode) == 0o600

    again.remove("gpu-box")
    assert [server.name for server in RemoteServers(tmp_path).servers()] == ["laptop"]
    assert Credentials(tmp_path).get("remote:gpu-box") is None


def test_names_must_be_given_and_distinct(tmp_path: Path) -> None:
    servers = RemoteServers(tmp_path)
    servers.add("gpu-box", "http://10.0.0.5:8080")
    with pytest.raises(AppError, match="already listed"):
        servers.add("GPU-box", "http://10.0.0.6:8080")
    with pytest.raises(AppError, match="Give the server a name"):
        servers.add("  ", "http://10.0.0.6:8080")
    with pytest.raises(AppError, match="no remote server named laptop"):
        servers.find("laptop")


def test_an_unreadable_list_lists_nothing(tmp_path: Path) -> None:
    (tmp_path / SERVERS_FILE).write_text("{not json")
    assert RemoteServers(tmp_path).servers() == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://192.168.1.20:8080", "http://192.168.1.20:8080"),
        ("http://localhost:11434/v1", "http://localhost:11434"),
        ("HTTPS://gpu.example/openai/v1/", "https://gpu.example/openai"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
    ],
)
def test_addresses_are_normalised(given: str, expected: str) -> None:
    assert normalise_url(given) == expected


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "Enter the server's address"),
        ("localhost:8080", "must start with http:// or https://"),
        ("ftp://files.example", "must start with http:// or https://"),
        ("http://", "names no host"),
        ("http://gpu.example:99999", "invalid port"),
    ],
)
def test_bad_addresses_are_refused_with_a_reason(tmp_path: Path, given: str, why: str) -> None:
    with pytest.raises(AppError, match=why) as raised:
        RemoteServers(tmp_path).add("box", given)
    one_sentence(str(raised.value))
    assert RemoteServers(tmp_path).servers() == []


@pytest.mark.parametrize(
    ("url", "key", "in_clear"),
    [
        ("http://192.168.1.20:8080", KEY, True),
        ("http://gpu.example", KEY, True),
        ("https://gpu.example", KEY, False),
        ("http://127.0.0.1:8080", KEY, False),
        ("http://localhost:8080", KEY, False),
        ("http://[::1]:8080", KEY, False),
        ("http://192.168.1.20:8080", "", False),
    ],
)
def test_a_key_over_plain_http_to_another_machine_is_flagged(url: str, key: str, in_clear: bool) -> None:
    assert key_sent_in_clear(url, key) is in_clear


# -- connection problems, one sentence each ----------------------------------------------------------------------


def test_refused_connection(tmp_path: Path) -> None:
    port = closed_port()
    assert problem(f"http://127.0.0.1:{port}") == (
        f"The connection to 127.0.0.1:{port} was refused: the server is not running there, or listens on another port."
    )


def test_unknown_host() -> None:
    assert "The host name nonexistent.invalid cannot be found" in problem("http://nonexistent.invalid:8080")


def test_https_to_a_plain_http_port(openai_server: str) -> None:
    message = problem(openai_server.replace("http://", "https://"))
    assert "secure (https) connection" in message and "try http://" in message


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_untrusted_certificate(tmp_path: Path) -> None:
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    with serving(_OpenAIServer, tls=context) as url:
        message = problem(url)
    assert "TLS certificate" in message and "not trusted" in message and "self-signed" in message


def test_missing_or_wrong_key(openai_server: str) -> None:
    _OpenAIServer.api_key = KEY
    assert "(HTTP 401): the API key is missing or wrong" in problem(openai_server)
    assert "(HTTP 401)" in problem(openai_server, "wrong")
    assert probe(openai_server, KEY) == ["alpha", "beta"]


def test_server_that_never_answers() -> None:
    with socket.socket() as listener:  # the kernel accepts connections; nobody ever reads or writes
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client = connect(url, None, "the server slow", timeout=0.3)
        try:
            with pytest.raises(EngineError) as raised:
                client.models()
        finally:
            client.close()
    assert one_sentence(str(raised.value)) == f"The server slow at {url[7:]} did not answer within 0.3 seconds."
    assert raised.value.kind == "timeout"


def test_something_that_is_not_an_openai_server(openai_server: str) -> None:
    with serving(_WebPage) as url:
        assert "did not answer like an OpenAI-compatible server" in problem(url)
    assert "has no /elsewhere/v1/models (HTTP 404)" in problem(f"{openai_server}/elsewhere")


def test_a_model_that_disappears_is_explained(tmp_path: Path, openai_server: str) -> None:
    servers = RemoteServers(tmp_path)
    server = servers.add("box", openai_server)
    backend = RemoteBackend(servers)
    beta = remote_model(server, "beta")
    replies = list(backend.stream(beta, [{"role": "user", "content": "hi"}], SamplingOptions(max_tokens=5)))
    assert "".join(event.text for event in replies if isinstance(event, Delta)) == "Hello"
    assert isinstance(replies[-1], ReplyStats) and replies[-1].finish_reason == "stop"
    assert _OpenAIServer.bodies[-1]["model"] == "beta"  # remote servers need to be told which model
    with pytest.raises(TokenCountUnavailableError):  # no /v1/tokenize: the window goes without its gauge
        backend.count_tokens(beta, "hi")

    _OpenAIServer.models = ["alpha"]  # unloaded while the app was using it: the server answers 404
    with pytest.raises(EngineError) as raised:
        list(backend.stream(beta, [{"role": "user", "content": "hi"}], SamplingOptions(max_tokens=5)))
    assert one_sentence(str(raised.value)) == "The server box no longer offers beta."
    with pytest.raises(EngineError) as raised:  # the next attempt asks the server's list first
        backend.load(beta)
    assert one_sentence(str(raised.value)) == "The server box no longer offers beta (it offers alpha)."
    backend.shutdown()


def test_a_server_that_is_down_leaves_only_its_own_models_out(tmp_path: Path, openai_server: str) -> None:
    servers = RemoteServers(tmp_path)
    servers.add("up", openai_server)
    servers.add("down", f"http://127.0.0.1:{closed_port()}")
    models, problems = list_models(servers)
    assert [model.name for model in models] == ["alpha @ up", "beta @ up"]
    assert all(model.server == "up" and model.has_chat_template and model.usable for model in models)
    assert len(problems) == 1 and "the server down is not running there" in problems[0]
