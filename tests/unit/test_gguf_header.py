from __future__ import annotations

import resource
import struct
from pathlib import Path

import gguf
import pytest

from localai_app.core.errors import ModelFileError
from localai_app.core.gguf_header import GGML_BLOCK_SIZES, SkippedArray, read_header
from localai_app.core.library import FILE_TYPES
from tests.fakes.gguf_builder import EMBEDDING, LAYERS, gguf_string, write_header


def test_reads_metadata_and_tensors_of_a_real_file(tiny_chat_model: Path) -> None:
    header = read_header(tiny_chat_model)
    assert header.string("general.architecture") == "llama"
    assert header.integer("llama.block_count") == LAYERS
    assert header.integer("llama.embedding_length") == EMBEDDING
    assert header.has_key("tokenizer.chat_template")
    assert header.metadata["tokenizer.ggml.tokens"] == [
        "<unk>", "<s>", "</s>", *[f"<0x{v:02X}>" for v in range(256)], "\u2581"
    ]  # fmt: skip
    assert header.parameter_count == sum(int(t.n_elements) for t in gguf.GGUFReader(tiny_chat_model).tensors)


def test_long_arrays_are_summarised_not_kept(tmp_path: Path) -> None:
    count = 100_000
    kv = gguf_string("big") + struct.pack("<IIQ", 9, 4, count) + b"\0" * (4 * count)
    header = read_header(write_header(tmp_path / "a.gguf", tensors=0, kv=kv, kv_count=1))
    assert header.metadata["big"] == SkippedArray(element_type=4, length=count)


@pytest.mark.parametrize(
    ("name", "kv", "kv_count", "tensors", "message"),
    [
        # The 43-byte file that made gguf-py allocate without bound: a 2**62-element array.
        ("huge-array", gguf_string("a") + struct.pack("<IIQ", 9, 4, 2**62), 1, 0, "array of"),
        ("huge-string-array", gguf_string("a") + struct.pack("<IIQ", 9, 8, 2**40), 1, 0, "array of"),
        ("huge-string", gguf_string("a") + struct.pack("<IQ", 8, 2**60), 1, 0, "string"),
        ("huge-key", struct.pack("<Q", 2**63) + b"\0" * 16, 1, 0, "string"),
        ("huge-kv-count", b"", 2**63, 0, "metadata entries"),
        ("huge-tensor-count", b"", 0, 2**60, "tensors"),
        ("nested-arrays", gguf_string("a") + struct.pack("<IIQIIQIIQ", 9, 9, 1, 9, 1, 9, 9, 1, 0), 1, 0, "nested"),
        ("unknown-type", gguf_string("a") + struct.pack("<I", 99), 1, 0, "unknown value type"),
    ],
)
def test_crafted_headers_fail_fast_without_exhausting_memory(
    tmp_path: Path, name: str, kv: bytes, kv_count: int, tensors: int, message: str
) -> None:
    path = write_header(tmp_path / f"{name}.gguf", tensors=tensors, kv=kv, kv_count=kv_count)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelFileError, match=message):
        read_header(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50_000


def test_truncated_download_is_caught_from_the_header(tmp_path: Path, tiny_model: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        read_header(cut)


def test_file_cut_inside_the_header(tmp_path: Path, tiny_model: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="past the end of the file"):
        read_header(cut)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"hello world", "does not start with 'GGUF'"), (b"GGUF\x01\0\0\0", "version 1")],
)
def test_not_gguf(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        read_header(path)


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        read_header(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileError, match="is a folder"):
        read_header(tmp_path)


def test_block_sizes_match_gguf_py() -> None:
    expected = {int(kind): sizes for kind, sizes in gguf.GGML_QUANT_SIZES.items()}
    assert expected == GGML_BLOCK_SIZES


def test_file_type_names_match_gguf_py() -> None:
    expected = {
        int(kind): kind.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        for kind in gguf.LlamaFileType
        if kind.name != "GUESSED"
    }
    assert expected == FILE_TYPES
