"""User settings: a versioned JSON file, migrated forward, written atomically.

A damaged file is moved aside (never overwritten in place) and the defaults are used, so a bad edit by hand
costs the user their preferences but never stops the app from starting.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from localai_app.core.atomic import write_text_atomic
from localai_app.core.estimate import Overrides
from localai_app.core.serving import DEFAULT_MAX_QUEUE, DEFAULT_PORT

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
SETTINGS_FILE = "settings.json"
# Presenter mode's text size, times the system font: 2.5 makes a 9 pt body font 30 px high, readable from the back
# of a classroom on a 1920x1080 projector (the aim is at least 28 px; tests/gui/test_presenter_mode.py measures it).
DEFAULT_PRESENTER_SCALE = 2.5


@dataclass
class Sampling:
    temperature: float = 0.7
    max_tokens: int = 512
    seed: int | None = None


@dataclass
class LocalApi:
    """The local API's address and limits (core/serving.py). Its key lives in credentials.json, not here."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allowed_origins: list[str] = field(default_factory=list)
    max_queue: int = DEFAULT_MAX_QUEUE


@dataclass
class Settings:
    sampling: Sampling = field(default_factory=Sampling)
    last_model: str | None = None
    # None: chosen at each load from the model and the free memory (core/estimate.py), and said why.
    context_length: int | None = None
    threads: int | None = None
    gpu_layers: int | None = None
    ui_scale: float = 1.0
    presenter_scale: float = DEFAULT_PRESENTER_SCALE  # its own: a classroom's size must not change the desk's
    # None: HF_ENDPOINT from the environment, else the public Hub. A mirror's address otherwise.
    hub_endpoint: str | None = None
    local_api: LocalApi = field(default_factory=LocalApi)

    def overrides(self) -> Overrides:
        return Overrides(context=self.context_length, threads=self.threads, gpu_layers=self.gpu_layers)


# Each step takes the raw dict of version N and returns the dict of version N + 1.
def _context_chosen_automatically(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 1 always stored the fixed default 4096; from version 2, no value means "choose what fits"."""
    if raw.get("context_length") == 4096:
        raw = {key: value for key, value in raw.items() if key != "context_length"}
    return raw


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _context_chosen_automatically}


def _coerce(cls: type[Any], raw: object) -> Any:
    """Build dataclass `cls` from `raw`, keeping each field's default where the stored value has the wrong type."""
    result = cls()
    if not isinstance(raw, dict):
        return result
    hints = get_type_hints(cls)
    for item in fields(cls):
        if item.name not in raw:
            continue
        value = raw[item.name]
        expected = hints[item.name]
        if is_dataclass(expected):
            setattr(result, item.name, _coerce(expected, value))  # type: ignore[arg-type]
        elif _matches(value, (expected,) if get_origin(expected) is list else get_args(expected) or (expected,)):
            setattr(result, item.name, value)
        else:
            log.warning("settings: ignoring %s=%r (expected %s)", item.name, value, expected)
    return result


def _matches(value: object, allowed: tuple[Any, ...]) -> bool:
    if isinstance(value, list):  # list[str] is the only list a setting holds
        return all(isinstance(item, str) for item in value) and any(get_origin(kind) is list for kind in allowed)
    if isinstance(value, bool):  # bool is an int subclass; only a bool field takes it
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True
    return any(isinstance(value, kind) for kind in allowed if isinstance(kind, type))


def load_settings(config_dir: Path) -> Settings:
    path = config_dir / SETTINGS_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        _move_aside(path, error)
        return Settings()
    if not isinstance(raw, dict):
        _move_aside(path, ValueError("not a JSON object"))
        return Settings()
    version = raw.get("schema_version", 0)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        # Written by a newer app: keep the file for that app and run on defaults without touching it.
        log.warning("settings: schema version %r is newer than %d; using defaults", version, SCHEMA_VERSION)
        return Settings()
    while version < SCHEMA_VERSION:
        raw = MIGRATIONS[version](raw) if version in MIGRATIONS else raw
        version += 1
    settings: Settings = _coerce(Settings, raw)
    return settings


def save_settings(config_dir: Path, settings: Settings) -> None:
    document = {"schema_version": SCHEMA_VERSION, **asdict(settings)}
    write_text_atomic(config_dir / SETTINGS_FILE, json.dumps(document, indent=2) + "\n")


def _move_aside(path: Path, error: Exception) -> None:
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    log.warning("settings: %s is unreadable (%s); moved to %s, using defaults", path, error, aside)
    path.replace(aside)
