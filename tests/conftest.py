from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from localai_app.core import starter
from localai_app.core.paths import AppPaths
from tests.fakes.gguf_builder import CHATML_TEMPLATE, write_tiny_model
from tests.fakes.hub_server import FakeHub

# Qt aborts without a display; a plain `pytest` (not only packaging/setup.sh) must work headless too.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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
