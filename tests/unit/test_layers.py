"""The GUI process never imports llama_cpp (llama.cpp aborts on bad input; that must only kill the engine)."""

from __future__ import annotations

import subprocess
import sys


def assert_imports_nothing_matching(modules: str, condition: str) -> None:
    """Import `modules` in a fresh interpreter; fail listing every loaded module `m` for which `condition` holds."""
    code = (
        f"import sys, {modules}; bad = sorted(m for m in sys.modules if {condition}); print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gui_and_cli_modules_do_not_import_llama_cpp() -> None:
    assert_imports_nothing_matching(
        "localai_app.app, localai_app.cli", "m.split('.')[0] == 'llama_cpp' or m.startswith('localai_app.engine')"
    )


def test_gui_start_does_not_import_heavy_libraries_it_only_needs_later() -> None:
    """numpy and psutil cost ~110 ms of a ~400 ms first frame; only measurements after the first paint use them.
    Pygments (code colours), the download machinery and the catalog load when first used, too."""
    heavy = "('numpy', 'psutil', 'huggingface_hub', 'pygments')"
    ours = "('localai_app.core.downloads', 'localai_app.core.catalog', 'localai_app.core.hub')"
    assert_imports_nothing_matching("localai_app.app", f"m.split('.')[0] in {heavy} or m in {ours}")
