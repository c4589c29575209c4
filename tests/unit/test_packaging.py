from __future__ import annotations

import configparser
from pathlib import Path
from xml.etree import ElementTree

from localai_app.app import ICON

ROOT = Path(__file__).resolve().parents[2]


def test_desktop_entry_and_appstream_agree_on_the_app_id() -> None:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(ROOT / "packaging/linux/io.github.localai_app.desktop")
    section = entry["Desktop Entry"]
    assert section["Exec"] == "localai-app" and section["Icon"] == "io.github.localai_app"
    component = ElementTree.parse(ROOT / "packaging/linux/io.github.localai_app.metainfo.xml").getroot()
    assert component.findtext("id") == "io.github.localai_app"
    assert component.findtext("launchable") == "io.github.localai_app.desktop"


def test_the_icon_is_found_as_an_installed_resource() -> None:
    """resources/ is mapped into the package, so a wheel install finds it as an editable one does."""
    assert ICON.read_text().startswith("<svg")
