"""Secrets the app keeps for the user (the local API's key, remote servers' keys): one JSON file readable by the
user only, never settings.json, which people paste into bug reports."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from localai_app.core.atomic import write_text_atomic

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"


class Credentials:
    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / CREDENTIALS_FILE

    def _read(self) -> dict[str, str]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            log.warning("credentials: %s is unreadable (%s); treating it as empty", self.path, error)
            return {}
        if not isinstance(raw, dict):
            return {}
        return {str(key): value for key, value in raw.items() if isinstance(value, str)}

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def set(self, name: str, secret: str | None) -> None:
        """Store `secret` under `name`; None or an empty string forgets it."""
        stored = self._read()
        if secret:
            stored[name] = secret
        else:
            stored.pop(name, None)
        # mkstemp creates the file 0600 and the rename keeps that mode, so the secret is never readable by others.
        write_text_atomic(self.path, json.dumps(stored, indent=2, sort_keys=True) + "\n")
