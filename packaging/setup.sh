#!/usr/bin/env bash
# One-step set-up on a fresh Debian/Ubuntu machine with Python 3.11:
#   bash packaging/setup.sh run    install everything, then open the app (starter model included, offline)
#   bash packaging/setup.sh test   install everything, then run the whole test suite
# GPU builds: set CMAKE_ARGS before running (see README), e.g. CMAKE_ARGS="-DGGML_CUDA=on".
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:-run}"
shift || true
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

# System libraries: a compiler and CMake for llama.cpp, and what Qt's xcb/offscreen platforms load.
debian_packages=(build-essential cmake python3-venv libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1
  libdbus-1-3 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0
  libxcb-render-util0 libxcb-image0)
if command -v dpkg-query >/dev/null && command -v apt-get >/dev/null; then
  missing=()
  for package in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "Installing system packages: ${missing[*]}"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# llama-cpp-python builds from source (about 5 minutes on 2 cores); pip caches the wheel afterwards.
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}" \
  .venv/bin/python -m pip install -q -e ".[test]"
# pip byte-compiles what it installs, but not an editable project: do it here, so start-up never recompiles the
# app (measured: ~10 ms of the first frame, and every start where PYTHONDONTWRITEBYTECODE is set).
.venv/bin/python -m compileall -q localai_app
.venv/bin/python -m localai_app.core.starter >/dev/null  # assemble the starter model once (checks its SHA-256)

case "$action" in
  run)
    exec .venv/bin/localai-app "$@"
    ;;
  test)
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy
    .venv/bin/lint-imports
    status=0
    QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest "$@" || status=$?
    # pytest's 5 means "no tests collected": never a pass for this suite.
    [ "$status" -eq 5 ] && echo "pytest collected no tests" >&2 && exit 1
    exit "$status"
    ;;
  *)
    echo "usage: bash packaging/setup.sh run|test [arguments]" >&2
    exit 2
    ;;
esac
