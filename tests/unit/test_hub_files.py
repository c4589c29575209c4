"""What a repository's file list means: safe names, quantizations, split parts, projectors, the recommendation."""

from __future__ import annotations

import pytest

from localai_app.core.estimate import FITS, TIGHT, WONT_FIT
from localai_app.core.hub_files import (
    QuantChoice,
    RemoteFile,
    UnsafeNameError,
    check_repo_id,
    group_files,
    local_name,
    quantization_of,
    recommend,
)

GB = 1_000_000_000


def remote(path: str, size: int = GB) -> RemoteFile:
    return RemoteFile(path, size, "0" * 64)


@pytest.mark.parametrize(
    "name",
    [
        "../evil.gguf",
        "sub/../../evil.gguf",
        "/etc/evil.gguf",
        "C:\\evil.gguf",
        "C:evil.gguf",
        "\\\\server\\share\\evil.gguf",
        "a\\..\\evil.gguf",
        "./evil.gguf",
        "sub//evil.gguf",
        "",
        "evil\x00.gguf",
        "x" * 300 + ".gguf",
    ],
)
def test_names_that_could_escape_the_models_folder_are_refused(name: str) -> None:
    with pytest.raises(UnsafeNameError, match="skipped"):
        local_name(name)


def test_a_file_in_a_subfolder_keeps_its_own_name() -> None:
    assert local_name("Q4_K_M/Model-Q4_K_M-00001-of-00002.gguf") == "Model-Q4_K_M-00001-of-00002.gguf"


@pytest.mark.parametrize("repo_id", ["../x", "owner", "owner/name/extra", "own er/name", "owner/..", "/abs/x"])
def test_repo_ids_that_are_not_owner_slash_name_are_refused(repo_id: str) -> None:
    with pytest.raises(UnsafeNameError):
        check_repo_id(repo_id)


@pytest.mark.parametrize(
    ("name", "quantization"),
    [
        ("Qwen2.5-7B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("gemma-3-1b-it-q8_0.gguf", "Q8_0"),
        ("Llama-3.2-3B-Instruct-IQ4_XS.gguf", "IQ4_XS"),
        ("model-f16.gguf", "F16"),
        ("model.BF16.gguf", "BF16"),
        ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("plain-model.gguf", ""),
    ],
)
def test_quantization_is_read_from_the_file_name(name: str, quantization: str) -> None:
    assert quantization_of(name) == quantization


def test_files_are_grouped_split_parts_as_one_projectors_marked_problems_reported() -> None:
    files = [
        remote("README.md", 10),
        remote("M-Q8_0.gguf", 8 * GB),
        remote("M-Q4_K_M.gguf", 4 * GB),
        remote("mmproj-M-f16.gguf", GB // 2),
        remote("big/M-F16-00002-of-00002.gguf", 8 * GB),
        remote("big/M-F16-00001-of-00002.gguf", 8 * GB),
        remote("M-Q2_K-00001-of-00003.gguf", GB),
        remote("../M-Q6_K.gguf", 6 * GB),
    ]
    choices, problems = group_files(files)
    assert [(choice.name, choice.quantization, choice.projector) for choice in choices] == [
        ("M-Q4_K_M.gguf", "Q4_K_M", False),
        ("M-Q8_0.gguf", "Q8_0", False),
        ("M-F16.gguf", "F16", False),
        ("mmproj-M-f16.gguf", "F16", True),
    ]
    split = choices[2]
    assert [file.path for file in split.files] == ["big/M-F16-00001-of-00002.gguf", "big/M-F16-00002-of-00002.gguf"]
    assert split.size == 16 * GB
    assert len(problems) == 2
    assert any("3 parts but the repository lists 1" in problem for problem in problems)
    assert any("'../M-Q6_K.gguf'" in problem for problem in problems)


def _choices() -> list[QuantChoice]:
    names = ["M-Q2_K.gguf", "M-Q4_K_M.gguf", "M-Q5_K_M.gguf", "M-Q6_K.gguf", "M-Q8_0.gguf", "mmproj-M-f16.gguf"]
    return group_files([remote(name, (index + 1) * GB) for index, name in enumerate(names)])[0]


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        # Everything fits: the largest of Q4_K_M..Q6_K, not Q8_0 (slower for little gain).
        (
            {
                "M-Q2_K.gguf": FITS,
                "M-Q4_K_M.gguf": FITS,
                "M-Q5_K_M.gguf": FITS,
                "M-Q6_K.gguf": FITS,
                "M-Q8_0.gguf": FITS,
            },
            "M-Q6_K.gguf",
        ),
        (
            {"M-Q2_K.gguf": FITS, "M-Q4_K_M.gguf": FITS, "M-Q5_K_M.gguf": TIGHT, "M-Q6_K.gguf": WONT_FIT},
            "M-Q4_K_M.gguf",
        ),
        ({"M-Q2_K.gguf": FITS, "M-Q4_K_M.gguf": TIGHT, "M-Q5_K_M.gguf": WONT_FIT}, "M-Q2_K.gguf"),
        ({"M-Q2_K.gguf": TIGHT, "M-Q4_K_M.gguf": TIGHT, "M-Q5_K_M.gguf": WONT_FIT}, "M-Q2_K.gguf"),
        ({"M-Q2_K.gguf": WONT_FIT, "M-Q4_K_M.gguf": WONT_FIT}, None),
    ],
)
def test_the_recommendation_prefers_good_quality_that_fits_with_room(
    verdicts: dict[str, str], expected: str | None
) -> None:
    choice, reason = recommend(_choices(), verdicts)
    assert (choice.name if choice else None) == expected
    assert reason.endswith(".")
