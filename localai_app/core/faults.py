"""What a dead engine's exit status and last stderr lines mean, in one sentence for the user.

A pure function over real llama.cpp and OS messages, so it is tested with tables of real inputs.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass

OUT_OF_MEMORY = "out_of_memory"
BAD_FILE = "bad_file"
CRASH = "crash"
KILLED = "killed"
STOPPED = "stopped"

_MEMORY_SIGNS = (
    "failed to allocate",
    "out of memory",
    "cudamalloc failed",
    "std::bad_alloc",
    "memoryerror",
    "unable to allocate",
    "cannot allocate memory",
)
_FILE_SIGNS = (
    "failed to load model",
    "gguf_init_from_file",
    "invalid magic",
    "tensor data is not within",
    "failed to read",
    "unknown model architecture",
    "error loading model",
    "corrupted",
    "not a usable gguf",
)


@dataclass(frozen=True)
class EngineFault:
    kind: str
    sentence: str
    exit_code: int | None


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def classify_exit(exit_code: int | None, stderr_tail: Sequence[str], model_name: str) -> EngineFault:
    """`exit_code` as subprocess reports it: negative for a signal on POSIX."""
    text = "\n".join(stderr_tail).lower()
    if any(sign in text for sign in _MEMORY_SIGNS):
        return EngineFault(
            OUT_OF_MEMORY,
            f"The engine ran out of memory with {model_name}; try a smaller model, quantization or context length.",
            exit_code,
        )
    if any(sign in text for sign in _FILE_SIGNS):
        return EngineFault(
            BAD_FILE,
            f"llama.cpp could not read {model_name}: the file looks damaged or is not a supported model.",
            exit_code,
        )
    if exit_code == -signal.SIGKILL:
        return EngineFault(
            KILLED,
            f"The engine running {model_name} was killed (by the system's out-of-memory killer or another program).",
            exit_code,
        )
    if exit_code is not None and exit_code < 0:
        return EngineFault(CRASH, f"The engine running {model_name} crashed ({_signal_name(exit_code)}).", exit_code)
    if exit_code == 0:
        return EngineFault(STOPPED, f"The engine running {model_name} stopped.", exit_code)
    return EngineFault(CRASH, f"The engine running {model_name} exited unexpectedly (code {exit_code}).", exit_code)
