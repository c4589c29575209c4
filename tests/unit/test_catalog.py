from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from localai_app.core import starter
from localai_app.core.catalog import (
    GIB,
    KINDS,
    TIERS,
    CatalogError,
    CatalogFamily,
    CatalogModel,
    approximate_file_bytes,
    group_by_tier,
    licence_terms,
    load_catalog,
    memory_needed,
    parse_catalog,
    suits,
    tier_of,
)
from localai_app.core.errors import AppError
from localai_app.core.estimate import BITS_PER_WEIGHT

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "catalog.json"


def _model(parameters: int, **changes: Any) -> CatalogModel:
    fields: dict[str, Any] = {
        "repo": "owner/Test-GGUF",
        "title": "Test",
        "parameters": parameters,
        "kind": "instruct",
        "licence": "apache-2.0",
        "context_length": 4096,
    }
    return CatalogModel(**(fields | changes))


def _document() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "families": [
            {
                "name": "Test family",
                "maker": "Someone",
                "summary": "Good at tests.",
                "models": [
                    {
                        "repo": "owner/Test-7B-GGUF",
                        "title": "Test 7B",
                        "parameters": 7_000_000_000,
                        "kind": "instruct",
                        "licence": "apache-2.0",
                        "context_length": 8192,
                    }
                ],
            }
        ],
    }


# -- the shipped catalog -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def families() -> list[CatalogFamily]:
    return load_catalog()


def test_the_packaged_catalog_loads_and_is_the_file_in_resources(families: list[CatalogFamily]) -> None:
    assert families == load_catalog(SHIPPED)
    assert len(families) >= 10
    assert 25 <= sum(len(family.models) for family in families) <= 40


def test_every_family_has_models_and_honest_text(families: list[CatalogFamily]) -> None:
    for family in families:
        assert family.models, family.name
        assert family.maker and family.summary.endswith(".")
        for model in family.models:
            assert model.kind in KINDS
            assert not model.note or model.note.endswith(".")


def test_repo_ids_name_gguf_repositories_once(families: list[CatalogFamily]) -> None:
    repos = [model.repo for family in families for model in family.models]
    for repo in repos:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", repo), repo
        assert repo.lower().endswith("gguf"), repo
    assert len({repo.lower() for repo in repos}) == len(repos)


def test_catalog_spans_tiny_to_seventy_billion(families: list[CatalogFamily]) -> None:
    sizes = [model.parameters for family in families for model in family.models]
    assert min(sizes) <= 200_000_000 and max(sizes) >= 70_000_000_000
    for family in families:
        for model in family.models:
            if model.active_parameters is not None:
                assert model.active_parameters < model.parameters


def test_every_catalog_licence_is_one_the_app_knows(families: list[CatalogFamily]) -> None:
    for family in families:
        for model in family.models:
            assert licence_terms(model.licence).commercial != "unknown", model.repo


# -- tiers -------------------------------------------------------------------------------------------------------


def test_tiers_are_ordered() -> None:
    memories = [tier.memory for tier in TIERS]
    assert memories == sorted(memories) and len(set(memories)) == len(memories)
    assert all(tier.budget > 0 for tier in TIERS)
    assert len({tier.key for tier in TIERS}) == len(TIERS)


def test_every_catalog_model_lands_in_one_tier_that_holds_it(families: list[CatalogFamily]) -> None:
    grouped = group_by_tier(families)
    assert [tier for tier, _ in grouped] == list(TIERS)
    placed = [model for _, items in grouped for _, model in items]
    assert sorted(model.repo for model in placed) == sorted(model.repo for f in families for model in f.models)
    for tier, items in grouped:
        for _, model in items:
            assert memory_needed(model) <= tier.budget, model.repo  # nothing is advertised beyond the largest tier
    assert all(items for _, items in grouped), "every tier should offer something"


@pytest.mark.parametrize(
    ("parameters", "tier_index"),
    [
        (135_000_000, 0),
        (500_000_000, 0),
        (1_700_000_000, 0),
        (8_000_000_000, 1),
        (14_000_000_000, 2),
        (32_000_000_000, 3),
        (70_000_000_000, 4),
        (400_000_000_000, 4),  # "or more": anything bigger still lands in the largest tier
    ],
)
def test_tier_of_known_sizes(parameters: int, tier_index: int) -> None:
    assert tier_of(_model(parameters)) == TIERS[tier_index]


def test_file_size_uses_the_estimate_table() -> None:
    model = _model(8_000_000_000)
    assert approximate_file_bytes(model) == pytest.approx(8e9 * BITS_PER_WEIGHT["Q4_K_M"] / 8, abs=1)
    assert approximate_file_bytes(model, 8.5) == 8_500_000_000
    # Llama 3.1 8B's Q4_K_M file is 4.92 GB.
    assert approximate_file_bytes(_model(8_030_000_000)) == pytest.approx(4.92e9, rel=0.02)
    with pytest.raises(ValueError):
        approximate_file_bytes(model, 0)


def test_memory_needed_adds_the_documented_allowance() -> None:
    model = _model(7_000_000_000)
    assert memory_needed(model) == pytest.approx(approximate_file_bytes(model) * 1.2 + GIB / 2, abs=2)


def test_suits_compares_with_available_memory() -> None:
    model = _model(7_000_000_000)
    assert suits(model, memory_needed(model))
    assert not suits(model, memory_needed(model) - 1)
    assert suits(_model(135_000_000), 2 * GIB)
    assert not suits(_model(70_000_000_000), 16 * GIB)


# -- malformed catalogs ------------------------------------------------------------------------------------------


def test_a_valid_document_parses() -> None:
    (family,) = parse_catalog(json.dumps(_document()))
    (model,) = family.models
    assert (model.repo, model.parameters, model.active_parameters, model.languages) == (
        "owner/Test-7B-GGUF",
        7_000_000_000,
        None,
        (),
    )


DELETE = object()
MODEL = ("families", 0, "models", 0)
FAMILY = ("families", 0)
SECOND_MODEL = {**_document()["families"][0]["models"][0], "repo": "OWNER/test-7b-gguf"}


def _changed(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    """The valid document with the value at `path` replaced, deleted (DELETE) or appended (index == length)."""
    document = _document()
    parent: Any = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if value is DELETE:
        del parent[last]
    elif isinstance(parent, list) and last == len(parent):
        parent.append(copy.deepcopy(value))
    else:
        parent[last] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ((*MODEL, "repo"), DELETE, 'the field "repo" is missing'),
        ((*FAMILY, "name"), DELETE, 'family 1: the field "name" is missing'),
        ((*MODEL, "size"), "7B", 'the field "size" is not one the catalog knows'),
        ((*MODEL, "parameters"), "7B", '"parameters" must be a whole number'),
        ((*MODEL, "parameters"), 7e9, '"parameters" must be a whole number'),
        ((*MODEL, "parameters"), True, '"parameters" must be a whole number'),
        ((*MODEL, "parameters"), -5, "not -5"),
        ((*MODEL, "parameters"), 10**40, "not a 41-digit number"),
        ((*MODEL, "context_length"), 2**62, '"context_length" must be a whole number'),
        ((*MODEL, "context_length"), 0, '"context_length" must be a whole number'),
        ((*MODEL, "active_parameters"), 8_000_000_000, '"active_parameters" must be a whole number'),
        ((*MODEL, "kind"), "chat", '"kind" must be one of instruct, base, reasoning, code'),
        ((*MODEL, "title"), "  ", '"title" must be non-empty text'),
        ((*MODEL, "title"), 7, '"title" must be non-empty text, not 7'),
        ((*MODEL, "repo"), "Test-7B-GGUF", '"repo" must be a Hugging Face repository id'),
        ((*MODEL, "repo"), "owner/Test-7B", '"repo" must name a GGUF repository'),
        ((*MODEL, "licence"), "Apache 2.0", '"licence" must be a lower-case Hub licence id'),
        ((*MODEL, "languages"), "en", '"languages" must be a list of language codes'),
        ((*FAMILY, "models"), [], '"models" must be a non-empty list'),
        ((*FAMILY, "models"), {"repo": "owner/x-GGUF"}, '"models" must be a non-empty list, not an object'),
        (FAMILY, ["Test"], "each family must be a JSON object, not a list"),
        (("families",), [], '"families" must be a non-empty list'),
        (("families", 0, "models", 1), SECOND_MODEL, 'the repository "OWNER/test-7b-gguf" is listed twice'),
        (("families", 1), _document()["families"][0], 'the family "Test family" appears twice'),
        (("schema_version",), DELETE, 'the field "schema_version" is missing'),
        (("schema_version",), "1", '"schema_version" must be a whole number'),
    ],
)
def test_malformed_catalog_is_one_sentence(path: tuple[str | int, ...], value: object, expected: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(json.dumps(_changed(path, value)), source="test.json")
    message = str(caught.value)
    assert isinstance(caught.value, AppError)
    assert message.startswith("The model catalog (test.json) is malformed: ") and message.endswith(".")
    assert expected in message
    assert "\n" not in message


def test_errors_say_where_the_problem_is() -> None:
    document = _document()
    document["families"][0]["models"][0]["parameters"] = -1
    with pytest.raises(CatalogError, match=r'family 1 \("Test family"\), model 1 \(owner/Test-7B-GGUF\)'):
        parse_catalog(json.dumps(document))


@pytest.mark.parametrize(
    "text", ["", "not json", '{"schema_version": 1, "families": [', "[1, 2]", "null", '{"schema_version": NaN}']
)
def test_text_that_is_not_a_catalog_raises_the_apps_error(text: str) -> None:
    with pytest.raises(CatalogError, match=r"^The model catalog \(the catalog\) (is not valid JSON|is malformed)"):
        parse_catalog(text)


def test_newer_schema_is_refused_with_a_sentence() -> None:
    document = _document() | {"schema_version": 2}
    with pytest.raises(CatalogError, match="uses schema version 2, but this version of the app reads only version 1"):
        parse_catalog(json.dumps(document))


def test_missing_or_undecodable_file_raises_the_apps_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="could not be read"):
        load_catalog(tmp_path / "absent.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CatalogError, match="could not be read"):
        load_catalog(binary)


# -- licences ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("licence_id", "commercial"),
    [
        ("apache-2.0", "yes"),
        ("Apache-2.0", "yes"),
        ("mit", "yes"),
        ("bsd-3-clause", "yes"),
        ("llama3.1", "restricted"),
        ("llama3.2", "restricted"),
        ("gemma", "restricted"),
        ("qwen", "restricted"),
        ("cc-by-nc-4.0", "no"),
        ("cc-by-nc-sa-4.0", "no"),
        ("cc-by-nc-nd-3.0", "no"),
        ("mrl", "no"),
        ("qwen-research", "no"),
        ("other", "unknown"),
        ("", "unknown"),
        ("made-up-licence", "unknown"),
        ("unknown", "unknown"),
        ("mpl-2.0", "yes"),
        ("isc", "yes"),
        ("gpl-2.0", "yes"),
        ("cc-by-4.0", "yes"),
        ("openrail", "restricted"),
        ("llama3.3", "restricted"),
        ("llama4", "restricted"),
        ("deepseek", "restricted"),
        ("apple-amlr", "no"),
        ("fair-noncommercial-research-license", "no"),
    ],
)
def test_licence_terms(licence_id: str, commercial: str) -> None:
    terms = licence_terms(licence_id)
    assert terms.commercial == commercial
    assert terms.name and terms.note.endswith(".")


def test_licence_notes_say_why() -> None:
    assert "700 million monthly users" in licence_terms("llama3.1").note
    assert "Gemma terms and prohibited-use policy" in licence_terms("gemma").note
    assert licence_terms("cc-by-nc-4.0").note == "Non-commercial use only."
    assert "model card" in licence_terms("other").note
    assert "model card" in licence_terms("").note


def test_unknown_licence_keeps_its_own_text_as_name() -> None:
    assert licence_terms("My-Own-Licence").name == "My-Own-Licence"


@pytest.mark.parametrize(
    ("licence_id", "name"),
    [
        # The names the library showed before the table moved here.
        ("gemma", starter.LICENCE_NAME),
        ("apache-2.0", "Apache 2.0"),
        ("mit", "MIT"),
        ("llama3", "Llama 3 Community License"),
        ("llama3.1", "Llama 3.1 Community License"),
        ("llama3.2", "Llama 3.2 Community License"),
        ("cc-by-nc-4.0", "CC BY-NC 4.0 (non-commercial)"),
        ("CC-BY-NC-4.0", "CC BY-NC 4.0 (non-commercial)"),
    ],
)
def test_library_licence_names_are_unchanged(licence_id: str, name: str) -> None:
    assert licence_terms(licence_id).name == name
