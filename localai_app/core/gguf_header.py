"""A GGUF header reader that is safe on hostile files.

It reads metadata and tensor descriptions without touching weights, through a read-only memory map, and bounds
every count and length by the bytes left in the file before acting on it. gguf-py trusts the counts (a 43-byte
file declaring a 2**62-element array exhausted 1 GiB), and llama.cpp aborts the process on bad input, so this is
the only GGUF parser the GUI process uses.

Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from localai_app.core.errors import HeaderIncompleteError, ModelFileError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_NESTING = 2
# Strings longer than this are skipped rather than kept: real chat templates are tens of KiB.
MAX_KEPT_STRING = 4 * 1024 * 1024
# Arrays longer than this are summarised (type and length) instead of kept; vocabularies are skipped this way.
MAX_KEPT_ARRAY = 4096

# GGUF value type -> (struct format, size) for fixed-size scalars.
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING = 8
_ARRAY = 9

# ggml tensor type -> (elements per block, bytes per block). Checked against gguf-py in the tests.
GGML_BLOCK_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # NVFP4
    41: (128, 18),  # Q1_0
}


@dataclass(frozen=True)
class SkippedArray:
    """An array too long to keep: its element type and length are enough for the library."""

    element_type: int
    length: int


Value: TypeAlias = int | float | bool | str | list["Value"] | SkippedArray | None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def element_count(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def byte_size(self) -> int | None:
        """Bytes of data, or None for a tensor type this reader does not know."""
        if self.ggml_type not in GGML_BLOCK_SIZES:
            return None
        block_elements, block_bytes = GGML_BLOCK_SIZES[self.ggml_type]
        return (self.element_count // block_elements) * block_bytes


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Value]
    tensors: list[TensorInfo]
    data_offset: int
    file_size: int
    skipped_strings: list[str] = field(default_factory=list)

    def string(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return value if isinstance(value, str) else None

    def integer(self, key: str) -> int | None:
        value = self.metadata.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def has_key(self, key: str) -> bool:
        return key in self.metadata or key in self.skipped_strings

    @property
    def parameter_count(self) -> int:
        return sum(tensor.element_count for tensor in self.tensors)


class _Cursor:
    """Reads little-endian values from a buffer, refusing any read past its end."""

    def __init__(self, buffer: mmap.mmap | bytes, path: Path, file_size: int | None = None) -> None:
        self.buffer = buffer
        self.size = len(buffer)
        self.file_size = self.size if file_size is None else file_size  # the buffer may be the file's start only
        self.position = 0
        self.path = path

    def fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.path.name} is not a usable GGUF file: {what} (at byte {self.position}).")

    def need(self, count: int, what: str) -> None:
        if count < 0 or count > self.file_size - self.position:
            raise self.fail(f"{what} runs past the end of the file")
        if count > self.size - self.position:  # within the file, past the prefix we were given
            raise HeaderIncompleteError(f"{self.path.name}: the header continues past byte {self.size}.")

    def scalar(self, value_type: int) -> int | float | bool:
        fmt, size = _SCALARS[value_type]
        self.need(size, "a value")
        (value,) = struct.unpack_from(fmt, self.buffer, self.position)
        self.position += size
        return value  # type: ignore[no-any-return]

    def u32(self) -> int:
        return int(self.scalar(4))

    def u64(self) -> int:
        return int(self.scalar(10))

    def string_length(self) -> int:
        length = self.u64()
        self.need(length, "a string")
        return length

    def string(self) -> str:
        length = self.string_length()
        raw = bytes(self.buffer[self.position : self.position + length])
        self.position += length
        return raw.decode("utf-8", errors="replace")

    def skip(self, count: int) -> None:
        self.position += count


def read_header(path: Path) -> GGUFHeader:
    """Parse the header of one GGUF file. Raises ModelFileError with a user-facing sentence on any problem."""
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            if size == 0:
                raise ModelFileError(f"{path.name} is empty, not a GGUF model.")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
                return _parse(_Cursor(buffer, path))
    except FileNotFoundError:
        raise ModelFileError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a folder, not a GGUF file.") from None
    except PermissionError:
        raise ModelFileError(f"{path} cannot be read (permission denied).") from None
    except OSError as error:
        raise ModelFileError(f"{path} cannot be read: {error.strerror or error}.") from None


def parse_header_prefix(data: bytes, *, file_size: int, name: str) -> GGUFHeader:
    """Parse a header from the first bytes of a file of `file_size` bytes (a ranged download from the Hub).

    Raises HeaderIncompleteError when `data` ends inside the header: fetch more and try again.
    """
    return _parse(_Cursor(data, Path(name), file_size))


def _parse(cursor: _Cursor) -> GGUFHeader:
    if cursor.size < 4 or bytes(cursor.buffer[:4]) != MAGIC:
        raise ModelFileError(f"{cursor.path.name} is not a GGUF model file (it does not start with 'GGUF').")
    cursor.skip(4)
    version = cursor.u32()
    if version not in SUPPORTED_VERSIONS:
        raise cursor.fail(f"GGUF version {version} is not supported")
    tensor_count = cursor.u64()
    kv_count = cursor.u64()
    # Each key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor at least 8+4+4+8.
    if kv_count * 13 > cursor.file_size - cursor.position:
        raise cursor.fail(f"it declares {kv_count} metadata entries, more than the file can hold")
    if tensor_count * 24 > cursor.file_size - cursor.position:
        raise cursor.fail(f"it declares {tensor_count} tensors, more than the file can hold")

    metadata: dict[str, Value] = {}
    skipped: list[str] = []
    for _ in range(kv_count):
        key = cursor.string()
        value_type = cursor.u32()
        value = _read_value(cursor, value_type, depth=0)
        if value is None:
            skipped.append(key)
        else:
            metadata[key] = value

    tensors = [_read_tensor(cursor) for _ in range(tensor_count)]
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment % 8:
        raise cursor.fail(f"general.alignment {alignment!r} is invalid")
    data_offset = -(-cursor.position // alignment) * alignment
    header = GGUFHeader(version, metadata, tensors, data_offset, cursor.file_size, skipped)
    _check_tensor_data_fits(cursor, header)
    return header


def _read_value(cursor: _Cursor, value_type: int, depth: int) -> Value:
    """Read one value. Returns None for a string too long to keep (it is skipped, not loaded)."""
    if value_type in _SCALARS:
        return cursor.scalar(value_type)
    if value_type == _STRING:
        length = cursor.string_length()
        if length > MAX_KEPT_STRING:
            cursor.skip(length)
            return None
        cursor.position -= 8
        return cursor.string()
    if value_type == _ARRAY:
        if depth >= MAX_ARRAY_NESTING:
            raise cursor.fail("arrays are nested too deeply")
        element_type = cursor.u32()
        length = cursor.u64()
        if element_type in _SCALARS:
            total = length * _SCALARS[element_type][1]
            cursor.need(total, f"an array of {length} values")
            if length > MAX_KEPT_ARRAY:
                cursor.skip(total)
                return SkippedArray(element_type, length)
            return [cursor.scalar(element_type) for _ in range(length)]
        if element_type not in (_STRING, _ARRAY):
            raise cursor.fail(f"unknown array element type {element_type}")
        # Every string or nested array takes at least 8 bytes, which bounds the loop before it starts.
        cursor.need(length * 8, f"an array of {length} values")
        if length > MAX_KEPT_ARRAY:
            for _ in range(length):
                _skip_value(cursor, element_type, depth + 1)
            return SkippedArray(element_type, length)
        return [_read_value(cursor, element_type, depth + 1) for _ in range(length)]
    raise cursor.fail(f"unknown value type {value_type}")


def _skip_value(cursor: _Cursor, value_type: int, depth: int) -> None:
    if value_type == _STRING:
        cursor.skip(cursor.string_length())
    else:
        _read_value(cursor, value_type, depth)


def _read_tensor(cursor: _Cursor) -> TensorInfo:
    name = cursor.string()
    dimension_count = cursor.u32()
    if not 1 <= dimension_count <= MAX_DIMS:
        raise cursor.fail(f"tensor {name!r} has {dimension_count} dimensions")
    shape = tuple(cursor.u64() for _ in range(dimension_count))
    ggml_type = cursor.u32()
    offset = cursor.u64()
    return TensorInfo(name, shape, ggml_type, offset)


def _check_tensor_data_fits(cursor: _Cursor, header: GGUFHeader) -> None:
    """A truncated download keeps a valid header; catch it here rather than inside llama.cpp."""
    for tensor in header.tensors:
        size = tensor.byte_size
        if size is None:
            continue
        if header.data_offset + tensor.offset + size > header.file_size:
            raise ModelFileError(
                f"{cursor.path.name} is truncated: tensor {tensor.name!r} ends past the end of the file "
                f"({header.file_size:,} bytes). Download it again."
            )
