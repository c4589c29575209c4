from __future__ import annotations

import signal

import pytest

from localai_app.core.faults import BAD_FILE, CRASH, KILLED, OUT_OF_MEMORY, STOPPED, classify_exit


@pytest.mark.parametrize(
    ("exit_code", "stderr", "kind", "words"),
    [
        (
            -signal.SIGABRT,
            ["ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 8589934592"],
            OUT_OF_MEMORY,
            "ran out of memory",
        ),
        (1, ["std::bad_alloc"], OUT_OF_MEMORY, "ran out of memory"),
        (
            -signal.SIGABRT,
            ["gguf_init_from_file_impl: tensor 'blk.0.attn_q.weight' data is not within the file bounds"],
            BAD_FILE,
            "looks damaged",
        ),
        (1, ["llama_model_load: error loading model: unknown model architecture: 'nonsense'"], BAD_FILE, "damaged"),
        (-signal.SIGKILL, [], KILLED, "was killed"),
        (-signal.SIGSEGV, ["decode: something"], CRASH, "crashed (SIGSEGV)"),
        (-signal.SIGABRT, ["GGML_ASSERT(x) failed"], CRASH, "crashed (SIGABRT)"),
        (0, [], STOPPED, "stopped"),
        (7, [], CRASH, "code 7"),
    ],
)
def test_classify(exit_code: int, stderr: list[str], kind: str, words: str) -> None:
    fault = classify_exit(exit_code, stderr, "model.gguf")
    assert fault.kind == kind
    assert words in fault.sentence and "model.gguf" in fault.sentence
