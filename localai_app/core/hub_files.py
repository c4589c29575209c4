"""What a Hub repository's file list means to a user: safe local names, quantizations, split parts, projectors,
and the choice to recommend on this machine. Pure functions over the listing; no network."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from localai_app.core.errors import AppError
from localai_app.core.estimate import BITS_PER_WEIGHT, FITS, TIGHT

# Names as quantizers write them: Q4_K_M, IQ4_XS, Q8_0, F16, BF16, unsloth's UD-Q4_K_XL, gpt-oss's MXFP4.
_QUANTIZATION = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:IQ[1-4]_(?:XXS|XS|S|M|NL)|Q[2-8]_K(?:_(?:XL|S|M|L))?|Q[4-8]_[01]|TQ[12]_0"
    r"|MXFP4(?:_MOE)?|BF16|F16|F32))(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_DRIVE = re.compile(r"^[A-Za-z]:")
# Above this, a quantization costs speed for quality few can tell apart; below it, quality drops noticeably.
PREFERRED_MAX_BITS = BITS_PER_WEIGHT["Q6_K"]
PREFERRED_MIN_BITS = BITS_PER_WEIGHT["Q4_K_M"]


class UnsafeNameError(AppError):
    """A name from the Hub that could write outside the models folder."""


@dataclass(frozen=True)
class RemoteFile:
    path: str  # as the Hub lists it, relative to the repository
    size: int
    sha256: str | None  # the LFS object id; None for files stored in git (never model weights)


@dataclass(frozen=True)
class QuantChoice:
    """One downloadable model: a single GGUF or all parts of a split one, or a projector (`mmproj`) file."""

    quantization: str  # "Q4_K_M"; "" when the name does not say
    files: tuple[RemoteFile, ...]  # split parts in order
    projector: bool

    @property
    def name(self) -> str:
        first = PurePosixPath(self.files[0].path).name
        split = _SPLIT.match(first)
        return f"{split['stem']}.gguf" if split else first

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    @property
    def bits(self) -> float | None:
        return BITS_PER_WEIGHT.get(self.quantization.upper().removeprefix("UD-"))


def check_repo_id(repo_id: str) -> str:
    """`owner/name` as the Hub allows it; the local folder is named after it, so nothing else gets through."""
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise UnsafeNameError(f"'{repo_id}' is not a Hub repository name (expected owner/name).")
    return repo_id


def local_name(remote_path: str) -> str:
    """The file name a Hub file gets in the models folder, after refusing any name that could escape it:
    `..`, absolute paths, drive letters, UNC and other backslash paths, control characters."""
    problem = None
    if not remote_path or len(remote_path) > 1000:
        problem = "an empty or overlong name"
    elif any(ord(character) < 32 or character == "\\" for character in remote_path):
        problem = "a backslash or control character"
    elif remote_path.startswith("/") or _DRIVE.match(remote_path):
        problem = "an absolute path"
    elif any(part in ("", ".", "..") for part in remote_path.split("/")):
        problem = "a relative path component"
    if problem:
        raise UnsafeNameError(f"The Hub listed a file named {remote_path!r}, which has {problem}; it was skipped.")
    name = PurePosixPath(remote_path).name
    if len(name.encode()) > 255:
        raise UnsafeNameError(f"The Hub listed a file name too long for this disk: {name[:40]}…; it was skipped.")
    return name


def quantization_of(file_name: str) -> str:
    match = _QUANTIZATION.search(file_name)
    return match.group(1).upper() if match else ""


def group_files(files: list[RemoteFile]) -> tuple[list[QuantChoice], list[str]]:
    """The repository's GGUF choices, smallest first (split parts as one, projectors marked), and a sentence for
    each file left out (an unsafe name, a split model with parts missing)."""
    problems: list[str] = []
    singles: list[QuantChoice] = []
    splits: dict[tuple[str, str], list[tuple[int, int, RemoteFile]]] = {}
    for file in files:
        if not file.path.lower().endswith(".gguf"):
            continue
        try:
            name = local_name(file.path)
        except UnsafeNameError as error:
            problems.append(str(error))
            continue
        split = _SPLIT.match(name)
        if split:
            folder = str(PurePosixPath(file.path).parent)
            key = (folder, split["stem"])
            splits.setdefault(key, []).append((int(split["index"]), int(split["count"]), file))
        else:
            singles.append(QuantChoice(quantization_of(name), (file,), "mmproj" in name.lower()))
    for (_, stem), parts in splits.items():
        parts.sort(key=lambda part: part[0])
        expected = parts[0][1]
        if [index for index, _, _ in parts] != list(range(1, expected + 1)):
            problems.append(f"{stem} is split into {expected} parts but the repository lists {len(parts)}; skipped.")
            continue
        singles.append(QuantChoice(quantization_of(stem), tuple(file for _, _, file in parts), False))
    return sorted(singles, key=lambda choice: (choice.projector, choice.size)), problems


def recommend(choices: list[QuantChoice], verdicts: Mapping[str, str]) -> tuple[QuantChoice | None, str]:
    """The choice to suggest on this machine, and why. `verdicts` maps a choice's name to its fit level.

    Among the choices that fit with room to spare: the largest between Q4_K_M and Q6_K (good quality at a good
    speed); else the largest smaller one that fits; else, if something only fits tightly, the smallest of those.
    """
    models = [choice for choice in choices if not choice.projector]
    fitting = [choice for choice in models if verdicts.get(choice.name) == FITS]
    preferred = [
        choice
        for choice in fitting
        if choice.bits is not None and PREFERRED_MIN_BITS <= choice.bits <= PREFERRED_MAX_BITS
    ]
    if preferred:
        best = max(preferred, key=lambda choice: choice.size)
        return best, f"{best.quantization}: the best quality between Q4_K_M and Q6_K that fits with room to spare."
    smaller = [choice for choice in fitting if choice.bits is None or choice.bits < PREFERRED_MIN_BITS]
    if smaller:
        best = max(smaller, key=lambda choice: choice.size)
        return best, f"{best.quantization or best.name}: the largest that fits; larger ones do not fit here."
    if fitting:
        best = min(fitting, key=lambda choice: choice.size)
        return best, f"{best.quantization or best.name}: the smallest available, and it fits."
    tight = [choice for choice in models if verdicts.get(choice.name) == TIGHT]
    if tight:
        best = min(tight, key=lambda choice: choice.size)
        return best, f"{best.quantization or best.name}: fits only tightly; close other programs first."
    return None, "None of these files fits this machine's free memory."
