from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from localai_app.core import starter
from localai_app.core.client import EngineClient
from localai_app.core.engine_process import EngineOptions, EngineProcess
from localai_app.core.paths import AppPaths
from tests.fakes.gguf_builder import CHATML_TEMPLATE, write_tiny_model
from tests.fakes.hub_server import FakeHub

# Qt aborts without a display; a plain `pytest` (not only packaging/setup.sh) must work headless too.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
SERVER_START_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base model: no chat template, so the app must use text completion."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-base.gguf")


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-chat.gguf", chat_template=CHATML_TEMPLATE)


@pytest.fixture(scope="session")
def tiny_embedding_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-embed.gguf", embedding=True)


@pytest.fixture(scope="session")
def starter_model() -> Path:
    return starter.ensure_starter()


@pytest.fixture
def app_paths(tmp_path: Path) -> AppPaths:
    return AppPaths.under(tmp_path / "base").create()


@pytest.fixture
def tiny_library_paths(app_paths: AppPaths, tiny_model: Path, tiny_chat_model: Path) -> Iterator[AppPaths]:
    for model in (tiny_model, tiny_chat_model):
        (app_paths.models / model.name).write_bytes(model.read_bytes())
    yield app_paths


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    """A real HTTP server on 127.0.0.1 playing the Hugging Face Hub."""
    with FakeHub() as hub:
        yield hub


@pytest.fixture
def llama_cpp_server(tiny_chat_model: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m llama_cpp.server` on the tiny chat model (another implementation of the OpenAI protocol, without
    llama-server's glass-box routes); yields its address once /v1/models answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "llama-cpp-server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_chat_model), "--model_alias", "tiny-chat",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "llama_cpp.server did not start:\n" + (tmp_path / "llama-cpp-server.log").read_text()
                    ) from None
                time.sleep(0.2)
        yield url, process
    finally:
        process.kill()
        process.wait()
        log.close()


@contextmanager
def engine_client(model: Path, *, context_length: int = 512, threads: int = 1) -> Iterator[EngineClient]:
    """A client of a real engine process serving `model`; the engine is stopped afterwards."""
    process = EngineProcess(model, EngineOptions(context_length=context_length, threads=threads))
    endpoint = process.start()
    client = EngineClient(endpoint.base_url, endpoint.token)
    try:
        yield client
    finally:
        client.close()
        process.stop()
