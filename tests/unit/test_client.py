"""The protocol client against a real loopback HTTP server that starts a reply and then sends nothing, as an
engine does during a long prompt pass."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from localai_app.core.client import EngineClient
from localai_app.core.errors import ConnectionLostError
from localai_app.core.replies import SamplingOptions


class _SilentStream(BaseHTTPRequestHandler):
    release = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.flush()
        self.release.wait(30)  # "still reading the prompt"

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def silent_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SilentStream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _SilentStream.release.set()
    server.shutdown()
    server.server_close()


def test_interrupt_ends_a_reply_that_has_no_token_yet(silent_server: str) -> None:
    client = EngineClient(silent_server, "key", timeout=30)
    outcome: list[BaseException | str] = []
    streaming = threading.Event()

    def read() -> None:
        try:
            for _ in client.stream_completion("a long prompt", SamplingOptions()):
                outcome.append("got an event")
        except ConnectionLostError as error:
            outcome.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    while not streaming.wait(0.01):  # interrupt only once the reply is being read
        with client._reading_lock:
            if client._reading:
                streaming.set()
    client.interrupt()
    reader.join(5)

    assert not reader.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionLostError)
    client.close()
