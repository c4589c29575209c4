from __future__ import annotations

import json
from pathlib import Path

from localai_app.core.estimate import Overrides
from localai_app.core.settings import SCHEMA_VERSION, Settings, load_settings, save_settings


def test_round_trip(tmp_path: Path) -> None:
    settings = Settings()
    settings.sampling.temperature = 0.2
    settings.sampling.seed = 42
    settings.last_model = "tiny"
    save_settings(tmp_path, settings)
    assert load_settings(tmp_path) == settings
    assert json.loads((tmp_path / "settings.json").read_text())["schema_version"] == SCHEMA_VERSION


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path) == Settings()


def test_damaged_file_is_moved_aside_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text("{ not json")
    assert load_settings(tmp_path) == Settings()
    (aside,) = tmp_path.glob("settings.json.damaged-*")
    assert aside.read_text() == "{ not json"


def test_wrong_types_fall_back_per_field(tmp_path: Path) -> None:
    document = {"schema_version": 1, "context_length": "big", "sampling": {"temperature": 1, "max_tokens": True}}
    (tmp_path / "settings.json").write_text(json.dumps(document))
    settings = load_settings(tmp_path)
    assert settings.context_length == Settings().context_length
    assert settings.sampling.temperature == 1
    assert settings.sampling.max_tokens == Settings().sampling.max_tokens


def test_newer_schema_is_left_alone(tmp_path: Path) -> None:
    text = json.dumps({"schema_version": SCHEMA_VERSION + 1, "context_length": 99})
    (tmp_path / "settings.json").write_text(text)
    assert load_settings(tmp_path) == Settings()
    assert (tmp_path / "settings.json").read_text() == text


def test_version_1_fixed_context_becomes_automatic(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text(json.dumps({"schema_version": 1, "context_length": 4096, "threads": 3}))
    settings = load_settings(tmp_path)
    assert settings.context_length is None and settings.threads == 3
    assert settings.overrides() == Overrides(context=None, threads=3, gpu_layers=None)
    (tmp_path / "settings.json").write_text(json.dumps({"schema_version": 1, "context_length": 2048}))
    assert load_settings(tmp_path).context_length == 2048  # a value the user chose by hand is kept
