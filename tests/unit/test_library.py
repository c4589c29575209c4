from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from localai_app.core import starter
from localai_app.core.errors import AppError, ModelFileError, UnknownModelError
from localai_app.core.library import BUNDLED, IN_LIBRARY, REFERENCED, Library, format_bytes
from localai_app.core.paths import AppPaths


def test_lists_models_with_their_metadata(tiny_library_paths: AppPaths) -> None:
    models = {model.name: model for model in Library(tiny_library_paths, include_starter=False).models()}
    assert set(models) == {"tiny-base", "tiny-chat"}
    chat = models["tiny-chat"]
    assert (chat.architecture, chat.quantization, chat.context_length) == ("llama", "F32", 512)
    assert chat.title == "Tiny Test"
    assert chat.licence == "Apache 2.0"
    assert chat.has_chat_template and not models["tiny-base"].has_chat_template
    assert chat.source == IN_LIBRARY and chat.usable
    assert chat.file_size == (tiny_library_paths.models / "tiny-chat.gguf").stat().st_size


def test_metadata_cache_notices_a_changed_file(tiny_library_paths: AppPaths, tiny_chat_model: Path) -> None:
    library = Library(tiny_library_paths, include_starter=False)
    assert not library.find("tiny-base").has_chat_template
    shutil.copyfile(tiny_chat_model, tiny_library_paths.models / "tiny-base.gguf")
    assert library.find("tiny-base").has_chat_template


def test_split_model_counts_once_and_missing_part_is_reported(app_paths: AppPaths, tiny_model: Path) -> None:
    for index in (1, 2):
        shutil.copyfile(tiny_model, app_paths.models / f"big-0000{index}-of-00002.gguf")
    (model,) = Library(app_paths, include_starter=False).models()
    assert model.name == "big" and len(model.parts) == 2
    assert model.file_size == 2 * tiny_model.stat().st_size
    (app_paths.models / "big-00002-of-00002.gguf").unlink()
    (broken,) = Library(app_paths, include_starter=False).models()
    assert broken.problem is not None and "2 parts but 1" in broken.problem


def test_unusable_files_are_listed_with_the_reason(app_paths: AppPaths) -> None:
    (app_paths.models / "notes.gguf").write_text("not a model")
    (model,) = Library(app_paths, include_starter=False).models()
    assert not model.usable and "does not start with 'GGUF'" in str(model.problem)


def test_import_by_copy_and_removal_frees_its_bytes(app_paths: AppPaths, tiny_model: Path) -> None:
    library = Library(app_paths, include_starter=False)
    model = library.import_file(tiny_model, copy=True)
    assert model.source == IN_LIBRARY and (app_paths.models / tiny_model.name).exists()
    plan = library.removal_plan(model)
    assert plan.bytes_freed == tiny_model.stat().st_size
    assert f"frees {format_bytes(tiny_model.stat().st_size)}" in plan.describe()
    library.remove(plan)
    assert library.models() == [] and tiny_model.exists()


def test_import_by_reference_keeps_the_file_in_place(app_paths: AppPaths, tiny_model: Path) -> None:
    library = Library(app_paths, include_starter=False)
    model = library.import_file(tiny_model, copy=False)
    assert model.source == REFERENCED and model.path == tiny_model
    assert list(app_paths.models.iterdir()) == []
    plan = library.removal_plan(model)
    assert plan.bytes_freed == 0 and "stays where it is" in plan.describe()
    library.remove(plan)
    assert library.models() == [] and tiny_model.exists()


def test_import_refuses_a_bad_file(app_paths: AppPaths, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF")
    with pytest.raises(ModelFileError):
        Library(app_paths).import_file(bad, copy=True)
    assert list(app_paths.models.iterdir()) == []


def test_sha256_is_computed_on_demand_and_remembered(tiny_library_paths: AppPaths) -> None:
    library = Library(tiny_library_paths, include_starter=False)
    model = library.find("tiny-chat")
    assert model.sha256 is None
    expected = hashlib.sha256(model.path.read_bytes()).hexdigest()
    assert library.compute_sha256(model) == expected
    assert library.find("tiny-chat").sha256 == expected


def test_find_unknown_name_lists_what_exists(tiny_library_paths: AppPaths) -> None:
    with pytest.raises(UnknownModelError, match="available: tiny-base, tiny-chat"):
        Library(tiny_library_paths, include_starter=False).find("llama-70b")


def test_starter_appears_in_every_fresh_library_without_a_copy(tmp_path: Path, starter_model: Path) -> None:
    for base in ("one", "two"):
        paths = AppPaths.under(tmp_path / base).create()
        (model,) = Library(paths).models()
        assert model.source == BUNDLED and model.path == starter_model
        assert model.licence == starter.LICENCE_NAME and not model.has_chat_template
        assert model.sha256 == starter.expected_sha256()
        assert list(paths.models.iterdir()) == []
        with pytest.raises(AppError, match="shared by every library"):
            Library(paths).removal_plan(model)
