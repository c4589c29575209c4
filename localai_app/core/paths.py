"""Every directory the app writes to, derived in one place so that `--basedir` moves all of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "localai-app"


@dataclass(frozen=True)
class AppPaths:
    config: Path
    data: Path
    models: Path
    cache: Path
    logs: Path

    @classmethod
    def for_user(cls) -> AppPaths:
        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        data = Path(dirs.user_data_dir)
        return cls(
            config=Path(dirs.user_config_dir),
            data=data,
            models=data / "models",
            cache=Path(dirs.user_cache_dir),
            logs=Path(dirs.user_log_dir),
        )

    @classmethod
    def under(cls, basedir: Path) -> AppPaths:
        base = basedir.expanduser().resolve()
        return cls(
            config=base / "config",
            data=base / "data",
            models=base / "data" / "models",
            cache=base / "cache",
            logs=base / "logs",
        )

    def create(self) -> AppPaths:
        for directory in (self.config, self.data, self.models, self.cache, self.logs):
            directory.mkdir(parents=True, exist_ok=True)
        return self
