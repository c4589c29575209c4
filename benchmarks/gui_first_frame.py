"""Time from process start to the first painted frame: localai-app's main window vs a bare PySide6 window.

Each side is a fresh child process (imports included), launched alternately (A, B, A, B, ...); the parent times
from just before the launch to the child's "painted" line. Medians and their ratio are printed. The app's modules
are byte-compiled first, as an installed app's are (pip compiles them), so source compilation is not counted even
where PYTHONDONTWRITEBYTECODE is set.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_first_frame.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication, QMainWindow

import localai_app


class _FirstPaint(QObject):
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            print("painted", flush=True)
            os._exit(0)  # the parent has its figure; tearing Qt down is not part of it
        return False


def child(kind: str, basedir: str) -> None:
    app = QApplication(sys.argv)
    if kind == "bare":
        window = QMainWindow()
        window.resize(1100, 760)
    else:
        from localai_app.app import build_window
        from localai_app.core.paths import AppPaths

        window = build_window(AppPaths.under(Path(basedir)).create())
    painted = _FirstPaint(window)
    window.installEventFilter(painted)
    window.show()
    app.exec()


def launch(kind: str, basedir: str) -> float:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "--child", kind, basedir], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    elapsed = (time.perf_counter() - started) * 1000
    process.kill()
    process.wait()
    if line.strip() != "painted":
        raise SystemExit(f"{kind} child did not paint")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "BASEDIR"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    compileall.compile_dir(Path(localai_app.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as basedir:
        launch("bare", basedir), launch("app", basedir)  # warm the OS file cache for both
        bare, app = [], []
        for _ in range(args.rounds):
            bare.append(launch("bare", basedir))
            app.append(launch("app", basedir))
    print(f"rounds={args.rounds} platform={os.environ.get('QT_QPA_PLATFORM', 'default')}")
    print(
        f"first frame  bare PySide6 {statistics.median(bare):.0f} ms  localai-app {statistics.median(app):.0f} ms"
        f"  ratio {statistics.median(app) / statistics.median(bare):.2f}"
    )


if __name__ == "__main__":
    main()
