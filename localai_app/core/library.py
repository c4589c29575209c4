"""The model library: the app's models folder, files the user imported by reference, and the starter model.

Metadata comes from the bounded GGUF header reader and is cached by (path, size, mtime), because parsing a
large vocabulary takes a noticeable fraction of a second per model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from localai_app.core import starter
from localai_app.core.atomic import write_text_atomic
from localai_app.core.errors import AppError, ModelFileError, UnknownModelError
from localai_app.core.gguf_header import GGUFHeader, read_header
from localai_app.core.model_shape import ModelShape, shape_from_headers
from localai_app.core.paths import AppPaths
from localai_app.core.reasoning import template_opens_reasoning

log = logging.getLogger(__name__)

DOWNLOAD_RECORD = "source.json"  # written by core/downloads.py next to the files it installs
BUNDLED = "bundled"
IN_LIBRARY = "library"
REFERENCED = "referenced"
REMOTE = "remote"  # on a remote server (core/remote.py): no file here

_SPLIT_NAME = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_QUANT_IN_NAME = re.compile(r"(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|F16|BF16|F32)(?:[-_.]|$)", re.IGNORECASE)
REFERENCES_FILE = "library.json"
METADATA_CACHE_FILE = "gguf-metadata.json"
CACHE_VERSION = 3  # 2: adds each model's shape (for memory and speed estimates); 3: where replies start

# llama.cpp's LLAMA_FTYPE values (general.file_type) as users know them. Checked against gguf-py in the tests.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}  # fmt: skip


@dataclass(frozen=True)
class ModelInfo:
    name: str  # unique in the library; what the CLI accepts
    title: str  # the model's own name, for display
    path: Path  # the file to load (first part of a split model)
    parts: tuple[Path, ...]
    source: str  # BUNDLED, IN_LIBRARY or REFERENCED
    file_size: int
    architecture: str = ""
    parameter_count: int = 0
    size_label: str = ""
    quantization: str = ""
    context_length: int = 0
    licence: str = ""
    has_chat_template: bool = False
    # The template opens the think block itself (DeepSeek-R1 distills): replies start inside the reasoning.
    replies_start_reasoning: bool = False
    sha256: str | None = None
    problem: str | None = None  # why the file cannot be used; None when it can
    shape: ModelShape | None = None  # what memory and speed estimates need; None when the header lacks it
    origin: str = ""  # "owner/repo@commit" (the full commit hash) for a model downloaded from the Hub
    # The remote server (core/remote.py) that runs it; "" for a file on this machine. A remote model has no file:
    # its path is empty and nothing local (load, estimates, removal, hashing) applies to it.
    server: str = ""

    @property
    def usable(self) -> bool:
        return self.problem is None

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["path"] = str(self.path)
        document["parts"] = [str(part) for part in self.parts]
        return document


@dataclass(frozen=True)
class RemovalPlan:
    model: ModelInfo
    files_to_delete: tuple[Path, ...]
    bytes_freed: int

    def describe(self) -> str:
        if not self.files_to_delete:
            return f"Remove {self.model.name} from the library? The file stays where it is ({self.model.path})."
        return f"Delete {self.model.name}? This frees {format_bytes(self.bytes_freed)}."


def format_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def format_parameters(count: int) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M" if count >= 1e6 else str(count)


@dataclass
class _Cache:
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)


class Library:
    def __init__(self, paths: AppPaths, *, include_starter: bool = True) -> None:
        self.paths = paths
        self.include_starter = include_starter
        self._references_file = paths.data / REFERENCES_FILE
        self._cache_file = paths.cache / METADATA_CACHE_FILE

    # -- listing -----------------------------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        cache = self._load_cache()
        found: list[ModelInfo] = []
        if self.include_starter and starter.starter_path().exists():
            found.append(self._describe((starter.starter_path(),), BUNDLED, cache))
        found += [self._describe(parts, IN_LIBRARY, cache) for parts in _group_parts(self._files_in_models())]
        found += [self._describe(parts, REFERENCED, cache) for parts in self._referenced_groups()]
        self._save_cache(cache)
        return _unique_names(found)

    def find(self, name_or_path: str) -> ModelInfo:
        """A library model by name (case-insensitive), or any GGUF file by path."""
        models = self.models()
        wanted = name_or_path.casefold()
        for model in models:
            if wanted in (model.name.casefold(), model.path.name.casefold()):
                return model
        candidate = Path(name_or_path).expanduser()
        if candidate.exists() or candidate.suffix.lower() == ".gguf" or "/" in name_or_path:
            return self.describe_file(candidate)
        names = ", ".join(model.name for model in models) or "none"
        raise UnknownModelError(f"No model named '{name_or_path}' in the library (available: {names}).")

    def describe_file(self, path: Path) -> ModelInfo:
        """Describe a file outside the library, raising ModelFileError if it cannot be used."""
        resolved = path.expanduser().resolve()
        if not resolved.exists():
            raise ModelFileError(f"{path} does not exist.")
        groups = _group_parts([resolved]) if not _SPLIT_NAME.match(resolved.name) else [_split_siblings(resolved)]
        info = self._describe(groups[0], REFERENCED, _Cache())
        if info.problem:
            raise ModelFileError(info.problem)
        return info

    # -- changing ----------------------------------------------------------------------------------------------

    def import_file(self, path: Path, *, copy: bool) -> ModelInfo:
        """Add a GGUF to the library: copied into the models folder, or referenced where it is."""
        info = self.describe_file(path)
        if copy:
            self.paths.models.mkdir(parents=True, exist_ok=True)
            for part in info.parts:
                target = self.paths.models / part.name
                if target.exists():
                    raise AppError(f"{target.name} is already in the library.")
                if shutil.disk_usage(self.paths.models).free < part.stat().st_size:
                    raise AppError(f"Not enough free space in {self.paths.models} to copy {part.name}.")
                temporary = target.with_name(target.name + ".partial")
                shutil.copyfile(part, temporary)
                temporary.replace(target)
            return self.find(info.name)
        references = self._references()
        if str(info.path) not in references:
            references.append(str(info.path))
            self._save_references(references)
        return next(model for model in self.models() if model.path == info.path)

    def removal_plan(self, model: ModelInfo) -> RemovalPlan:
        if model.source == BUNDLED:
            raise AppError(f"{model.name} is the bundled starter model; it is shared by every library.")
        if model.source == REFERENCED:
            return RemovalPlan(model, (), 0)
        existing = tuple(part for part in model.parts if part.exists())
        return RemovalPlan(model, existing, sum(part.stat().st_size for part in existing))

    def remove(self, plan: RemovalPlan) -> None:
        for part in plan.files_to_delete:
            part.unlink(missing_ok=True)
        references = [ref for ref in self._references() if ref != str(plan.model.path)]
        self._save_references(references)

    def compute_sha256(self, model: ModelInfo) -> str:
        """Hash the model's files (all parts, in order) and remember the result. Slow: run off the GUI thread."""
        digest = hashlib.sha256()
        for part in model.parts:
            with part.open("rb") as handle:
                while block := handle.read(4 * 1024 * 1024):
                    digest.update(block)
        value = digest.hexdigest()
        cache = self._load_cache()
        key = _cache_key(model.parts)
        if key in cache.entries:
            cache.entries[key]["sha256"] = value
            self._save_cache(cache)
        return value

    # -- internals ---------------------------------------------------------------------------------------------

    def _files_in_models(self) -> list[Path]:
        """GGUFs in the models folder and its subfolders (downloads go to `owner/repo/`), except hidden ones such
        as the partial downloads in `.partial/`."""
        if not self.paths.models.is_dir():
            return []
        return sorted(
            path
            for path in self.paths.models.rglob("*")
            if path.suffix.lower() == ".gguf"
            and not any(part.startswith(".") for part in path.relative_to(self.paths.models).parts)
        )

    def _referenced_groups(self) -> list[tuple[Path, ...]]:
        groups = []
        for reference in self._references():
            path = Path(reference)
            groups.append(_split_siblings(path) if _SPLIT_NAME.match(path.name) else (path,))
        return groups

    def _references(self) -> list[str]:
        try:
            document = json.loads(self._references_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            log.warning("library: %s unreadable (%s); no referenced models listed", self._references_file, error)
            return []
        references = document.get("referenced", []) if isinstance(document, dict) else []
        return [item for item in references if isinstance(item, str)]

    def _save_references(self, references: list[str]) -> None:
        document = {"schema_version": 1, "referenced": references}
        write_text_atomic(self._references_file, json.dumps(document, indent=2) + "\n")

    def _load_cache(self) -> _Cache:
        try:
            document = json.loads(self._cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return _Cache()
        if not isinstance(document, dict) or document.get("version") != CACHE_VERSION:
            return _Cache()
        entries = document.get("entries")
        return _Cache(entries if isinstance(entries, dict) else {})

    def _save_cache(self, cache: _Cache) -> None:
        try:
            document = {"version": CACHE_VERSION, "entries": cache.entries}
            write_text_atomic(self._cache_file, json.dumps(document) + "\n")
        except OSError as error:  # a cache that cannot be written only costs speed
            log.warning("library: cannot write metadata cache: %s", error)

    def _describe(self, parts: tuple[Path, ...], source: str, cache: _Cache) -> ModelInfo:
        first = parts[0]
        name = _model_name(first)
        try:
            sizes = [part.stat() for part in parts]
        except OSError:
            return ModelInfo(name, name, first, parts, source, 0, problem=f"{first} is missing.")
        key = _cache_key(parts)
        fingerprint = [[stat.st_size, stat.st_mtime_ns] for stat in sizes]
        cached = cache.entries.get(key)
        if cached and cached.get("fingerprint") == fingerprint:
            fields = dict(cached["fields"])
            fields["shape"] = ModelShape.from_json(fields["shape"]) if fields.get("shape") else None
            sha256 = cached.get("sha256")
        else:
            fields = _fields_from_headers(parts)
            sha256 = starter.expected_sha256() if source == BUNDLED else None
            stored = {**fields, "shape": fields["shape"].as_json() if fields.get("shape") else None}
            cache.entries[key] = {"fingerprint": fingerprint, "fields": stored, "sha256": sha256}
        origin = _download_record(first) if source == IN_LIBRARY else None
        if origin and origin.get("size") == sizes[0].st_size and isinstance(origin.get("sha256"), str):
            sha256 = sha256 or origin["sha256"]  # verified while downloading: no need to hash it again
        return ModelInfo(
            name=name,
            title=fields.pop("title", None) or name,
            path=first,
            parts=parts,
            source=source,
            file_size=sum(stat.st_size for stat in sizes),
            sha256=sha256,
            origin=f"{origin.get('repo')}@{origin.get('commit')}" if origin else "",
            **fields,
        )


def _fields_from_headers(parts: tuple[Path, ...]) -> dict[str, Any]:
    """ModelInfo fields read from every part's header, or a `problem` sentence."""
    expected = _split_count(parts[0])
    if expected and len(parts) != expected:
        return {"problem": f"{parts[0].name} is split into {expected} parts but {len(parts)} are present."}
    try:
        headers = [read_header(part) for part in parts]
    except ModelFileError as error:
        return {"problem": str(error)}
    return _fields_from(
        headers[0], sum(header.parameter_count for header in headers), parts[0], shape_from_headers(headers)
    )


def _fields_from(header: GGUFHeader, parameter_count: int, path: Path, shape: ModelShape | None) -> dict[str, Any]:
    architecture = header.string("general.architecture") or ""
    file_type = header.integer("general.file_type")
    quantization = FILE_TYPES.get(file_type, "") if file_type is not None else ""
    if not quantization:
        match = _QUANT_IN_NAME.search(path.name)
        quantization = match.group(1).upper() if match else ""
    licence = header.string("general.license") or ""
    return {
        "title": header.string("general.name") or "",
        "architecture": architecture,
        "parameter_count": parameter_count,
        "size_label": header.string("general.size_label") or format_parameters(parameter_count),
        "quantization": quantization,
        "context_length": header.integer(f"{architecture}.context_length") or 0,
        "licence": _licence_name(licence) if licence else "",
        "has_chat_template": header.has_key("tokenizer.chat_template"),
        "replies_start_reasoning": template_opens_reasoning(header.string("tokenizer.chat_template")),
        "shape": shape,
    }


def _download_record(first_part: Path) -> dict[str, Any] | None:
    """What core/downloads.py recorded about a downloaded file (repo, commit, size, SHA-256), if anything."""
    try:
        document = json.loads((first_part.parent / DOWNLOAD_RECORD).read_text(encoding="utf-8"))
        record = document["files"][first_part.name]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def _cache_key(parts: tuple[Path, ...]) -> str:
    return "|".join(str(part) for part in parts)


def _model_name(first_part: Path) -> str:
    match = _SPLIT_NAME.match(first_part.name)
    return match.group("stem") if match else first_part.stem


def _split_count(path: Path) -> int:
    match = _SPLIT_NAME.match(path.name)
    return int(match.group("count")) if match else 0


def _split_siblings(first: Path) -> tuple[Path, ...]:
    match = _SPLIT_NAME.match(first.name)
    assert match is not None
    count = int(match.group("count"))
    candidates = (first.with_name(f"{match.group('stem')}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1))
    return tuple(part for part in candidates if part.exists()) or (first,)


def _group_parts(files: list[Path]) -> list[tuple[Path, ...]]:
    """Split GGUFs (`x-00001-of-00003.gguf`, ...) become one group; other files stand alone."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        match = _SPLIT_NAME.match(path.name)
        key = str(path.with_name(match.group("stem"))) + "#split" if match else str(path)
        groups.setdefault(key, []).append(path)
    return [tuple(sorted(group)) for group in groups.values()]


def _unique_names(models: list[ModelInfo]) -> list[ModelInfo]:
    """Two files with the same stem (say, one imported by reference) get distinct names."""
    seen: dict[str, int] = {}
    unique = []
    for model in models:
        key = model.name.casefold()
        seen[key] = seen.get(key, 0) + 1
        unique.append(replace(model, name=f"{model.name}-{seen[key]}") if seen[key] > 1 else model)
    return unique


def _licence_name(licence: str) -> str:
    # The catalog (a JSON file and its checks) loads when a model's metadata is first read, not at start-up.
    from localai_app.core.catalog import licence_terms

    return licence_terms(licence).name
