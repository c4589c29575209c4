"""The curated catalog of recommended open-weight models, browsable with no network, and the licence table.

The catalog ships as resources/catalog.json (installed as `localai_app.resources`). Each family lists GGUF
repositories on the Hugging Face Hub with the figures the app needs before anything is downloaded: parameter
count, context length, licence. The loader validates the file strictly, so a broken catalog is one sentence for
the user (CatalogError), never a traceback.

Hardware tiers are a rough, pre-download guide: once a file's header is known, core.estimate computes what a
load really needs. Here a model's need is

    Q4_K_M file size (parameters x bits per weight / 8) x 1.2 + 0.5 GiB

- the +20 % covers the KV cache at the app's default 8,192-token context (for grouped-query models it is 10-20 %
  of a Q4_K_M file: Llama 3.1 8B needs 1 GiB beside its 4.9 GB file) and the compute buffers that grow with it;
- the +0.5 GiB covers the engine process, the tokenizer and the fixed part of the compute buffers.

A tier is a machine with that much memory (RAM, or RAM plus a GPU's memory) of which 1.5 GiB is left to the
system and the app's own window; a model lands in the smallest tier whose remaining budget holds its need.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from localai_app.core.errors import AppError

SCHEMA_VERSION = 1
CATALOG_RESOURCE = "catalog.json"
DEFAULT_QUANTIZATION = "Q4_K_M"  # what the catalog's sizes assume: the usual balance of size and quality

GIB = 1024**3
KV_ALLOWANCE = 0.20  # share of the weights added for the KV cache and compute buffers at the default context
OVERHEAD_BYTES = GIB // 2  # engine process, tokenizer, fixed compute buffers
SYSTEM_RESERVE_BYTES = 3 * GIB // 2  # what a machine keeps for the system and the app itself

KINDS = ("instruct", "base", "reasoning", "code")
MIN_PARAMETERS = 1_000_000
MAX_PARAMETERS = 10_000_000_000_000  # 10 trillion: well above any open model, far below nonsense
MIN_CONTEXT = 512
MAX_CONTEXT = 16_777_216
MAX_TEXT = 1000

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_LICENCE_ID = re.compile(r"^[a-z0-9][a-z0-9.+_-]*$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")

Commercial = Literal["yes", "restricted", "no", "unknown"]


class CatalogError(AppError):
    """The model catalog is missing, unreadable or malformed."""


@dataclass(frozen=True)
class CatalogModel:
    repo: str  # Hugging Face repository id of a GGUF repository, "owner/name"
    title: str
    parameters: int  # total parameter count
    kind: str  # one of KINDS
    licence: str  # Hub licence id; see licence_terms()
    context_length: int
    active_parameters: int | None = None  # mixture-of-experts models only: parameters used per token
    languages: tuple[str, ...] = ()  # ISO 639 codes, when the makers name the languages
    note: str = ""

    @property
    def is_mixture_of_experts(self) -> bool:
        return self.active_parameters is not None


@dataclass(frozen=True)
class CatalogFamily:
    name: str
    maker: str
    summary: str  # one sentence: what the family is good at
    models: tuple[CatalogModel, ...]


@dataclass(frozen=True)
class Tier:
    key: str
    name: str
    memory: int  # the machine's memory in bytes (RAM, or RAM plus GPU memory)
    description: str

    @property
    def budget(self) -> int:
        """What a model may need on such a machine: its memory less what the system keeps."""
        return self.memory - SYSTEM_RESERVE_BYTES


TIERS: tuple[Tier, ...] = (
    Tier("any", "Any computer (4 GB)", 4 * GIB, "Small models that run on an old laptop or a mini PC."),
    Tier("8gb", "8 GB", 8 * GIB, "Capable 3-9B models for a typical laptop."),
    Tier("16gb", "16 GB", 16 * GIB, "12-20B models for a well-equipped laptop or desktop."),
    Tier("32gb", "32 GB", 32 * GIB, "24-35B models and mid-sized mixtures of experts."),
    Tier("64gb", "64 GB or more / large GPU", 64 * GIB, "70B-class models for workstations and large GPUs."),
)


@dataclass(frozen=True)
class LicenceTerms:
    id: str
    name: str  # human name, as shown in the library
    commercial: Commercial
    note: str  # one sentence: why


# ---------------------------------------------------------------------------------------------- loading


def load_catalog(path: Path | None = None) -> list[CatalogFamily]:
    """The catalog's families, in file order. Raises CatalogError with one sentence if it cannot be used."""
    if path is None:
        source = "the built-in catalog"
        resource = resources.files("localai_app.resources").joinpath(CATALOG_RESOURCE)
        try:
            text = resource.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CatalogError(f"The model catalog could not be read ({source}): {_reason(error)}.") from error
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CatalogError(f"The model catalog could not be read ({source}): {_reason(error)}.") from error
    return parse_catalog(text, source=source)


def parse_catalog(text: str, *, source: str = "the catalog") -> list[CatalogFamily]:
    """Parse and validate catalog JSON text (see load_catalog)."""
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise CatalogError(
            f"The model catalog ({source}) is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}."
        ) from error
    except (ValueError, RecursionError) as error:
        raise CatalogError(f"The model catalog ({source}) is not valid JSON: {_reason(error)}.") from error
    return _Validator(source).catalog(document)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number the catalog may use")


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error).rstrip(".") or type(error).__name__


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> CatalogError:
        prefix = f"{where}: " if where else ""
        return CatalogError(f"The model catalog ({self.source}) is malformed: {prefix}{problem}.")

    def catalog(self, document: object) -> list[CatalogFamily]:
        top = self.mapping(document, "", "the file must hold a JSON object")
        self.keys(top, "", required={"schema_version", "families"}, optional=set())
        version = top["schema_version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise self.fail("", f'"schema_version" must be a whole number, not {_show(version)}')
        if version != SCHEMA_VERSION:
            raise CatalogError(
                f"The model catalog ({self.source}) uses schema version {version}, but this version of the app "
                f"reads only version {SCHEMA_VERSION}."
            )
        raw_families = top["families"]
        if not isinstance(raw_families, list) or not raw_families:
            raise self.fail("", f'"families" must be a non-empty list, not {_show(raw_families)}')
        families = [self.family(raw, index) for index, raw in enumerate(raw_families, start=1)]
        self.unique(families)
        return families

    def family(self, raw: object, index: int) -> CatalogFamily:
        where = f"family {index}"
        item = self.mapping(raw, where, "each family must be a JSON object")
        self.keys(item, where, required={"name", "maker", "summary", "models"}, optional=set())
        name = self.text(item, "name", where)
        where = f'family {index} ("{name}")'
        maker = self.text(item, "maker", where)
        summary = self.text(item, "summary", where)
        raw_models = item["models"]
        if not isinstance(raw_models, list) or not raw_models:
            raise self.fail(where, f'"models" must be a non-empty list, not {_show(raw_models)}')
        models = tuple(self.model(raw, f"{where}, model {number}") for number, raw in enumerate(raw_models, start=1))
        return CatalogFamily(name=name, maker=maker, summary=summary, models=models)

    def model(self, raw: object, where: str) -> CatalogModel:
        item = self.mapping(raw, where, "each model must be a JSON object")
        self.keys(
            item,
            where,
            required={"repo", "title", "parameters", "kind", "licence", "context_length"},
            optional={"active_parameters", "languages", "note"},
        )
        repo = self.text(item, "repo", where)
        if not _REPO.match(repo):
            raise self.fail(where, f'"repo" must be a Hugging Face repository id such as "owner/name", not "{repo}"')
        if not repo.lower().endswith("gguf"):
            raise self.fail(where, f'"repo" must name a GGUF repository (ending in "GGUF"), not "{repo}"')
        where = f"{where} ({repo})"
        parameters = self.integer(item, "parameters", where, MIN_PARAMETERS, MAX_PARAMETERS)
        active: int | None = None
        if "active_parameters" in item:
            active = self.integer(item, "active_parameters", where, MIN_PARAMETERS, parameters - 1)
        kind = self.text(item, "kind", where)
        if kind not in KINDS:
            raise self.fail(where, f'"kind" must be one of {", ".join(KINDS)}, not "{kind}"')
        licence = self.text(item, "licence", where)
        if not _LICENCE_ID.match(licence):
            raise self.fail(
                where, f'"licence" must be a lower-case Hub licence id such as "apache-2.0", not "{licence}"'
            )
        languages: tuple[str, ...] = ()
        if "languages" in item:
            raw_languages = item["languages"]
            if not isinstance(raw_languages, list) or not all(
                isinstance(code, str) and _LANGUAGE.match(code) for code in raw_languages
            ):
                raise self.fail(
                    where, f'"languages" must be a list of language codes such as "en", not {_show(raw_languages)}'
                )
            languages = tuple(raw_languages)
        return CatalogModel(
            repo=repo,
            title=self.text(item, "title", where),
            parameters=parameters,
            kind=kind,
            licence=licence,
            context_length=self.integer(item, "context_length", where, MIN_CONTEXT, MAX_CONTEXT),
            active_parameters=active,
            languages=languages,
            note=self.text(item, "note", where) if "note" in item else "",
        )

    def mapping(self, value: object, where: str, problem: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"{problem}, not {_show(value)}")
        return value

    def keys(self, item: Mapping[str, Any], where: str, *, required: set[str], optional: set[str]) -> None:
        missing = sorted(required - item.keys())
        if missing:
            raise self.fail(where, f'the field "{missing[0]}" is missing')
        unknown = sorted(item.keys() - required - optional)
        if unknown:
            raise self.fail(where, f'the field "{unknown[0]}" is not one the catalog knows')

    def text(self, item: Mapping[str, Any], key: str, where: str) -> str:
        value = item[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f'"{key}" must be non-empty text, not {_show(value)}')
        if len(value) > MAX_TEXT:
            raise self.fail(where, f'"{key}" is longer than {MAX_TEXT} characters')
        return value.strip()

    def integer(self, item: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int:
        value = item[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(where, f'"{key}" must be a whole number from {low:,} to {high:,}, not {_show(value)}')
        return value

    def unique(self, families: list[CatalogFamily]) -> None:
        names: set[str] = set()
        repos: set[str] = set()
        for family in families:
            if family.name.lower() in names:
                raise self.fail("", f'the family "{family.name}" appears twice')
            names.add(family.name.lower())
            for model in family.models:
                if model.repo.lower() in repos:  # Hub ids are case-insensitive
                    raise self.fail("", f'the repository "{model.repo}" is listed twice')
                repos.add(model.repo.lower())


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value[:40]}"' if value else "empty text"
    if isinstance(value, int):
        text = str(value)
        return text if len(text) <= 20 else f"a {len(text)}-digit number"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------- sizes and tiers


def approximate_file_bytes(model: CatalogModel, bits_per_weight: float | None = None) -> int:
    """Size of the model's GGUF file at `bits_per_weight` (None: Q4_K_M, from core.estimate's table)."""
    if bits_per_weight is None:
        # Imported here: estimate imports library, which imports this module for licence names.
        from localai_app.core.estimate import BITS_PER_WEIGHT

        bits_per_weight = BITS_PER_WEIGHT[DEFAULT_QUANTIZATION]
    if not math.isfinite(bits_per_weight) or bits_per_weight <= 0:
        raise ValueError(f"bits per weight must be a positive number, not {bits_per_weight}")
    return math.ceil(model.parameters * bits_per_weight / 8)


def memory_needed(model: CatalogModel) -> int:
    """Rough memory a load at the default context needs: the Q4_K_M file + 20 % + 0.5 GiB (see the module doc)."""
    return math.ceil(approximate_file_bytes(model) * (1 + KV_ALLOWANCE)) + OVERHEAD_BYTES


def tier_of(model: CatalogModel) -> Tier:
    """The smallest tier whose budget holds the model; the largest tier ("or more") for anything bigger."""
    need = memory_needed(model)
    return next((tier for tier in TIERS if need <= tier.budget), TIERS[-1])


def group_by_tier(
    families: Iterable[CatalogFamily],
) -> list[tuple[Tier, list[tuple[CatalogFamily, CatalogModel]]]]:
    """Every tier in order (empty ones too), each with its models in catalog order."""
    groups: dict[str, list[tuple[CatalogFamily, CatalogModel]]] = {tier.key: [] for tier in TIERS}
    for family in families:
        for model in family.models:
            groups[tier_of(model).key].append((family, model))
    return [(tier, groups[tier.key]) for tier in TIERS]


def suits(model: CatalogModel, available_bytes: int) -> bool:
    """Whether the model should fit in `available_bytes` of free memory (RAM, or RAM plus GPU memory)."""
    return memory_needed(model) <= available_bytes


# ---------------------------------------------------------------------------------------------- licences

_PERMISSIVE = "Permissive: commercial use allowed, keeping the copyright and licence notices."
_COPYLEFT = "Copyleft: commercial use allowed, but changed versions you distribute must keep the same licence."
_RAIL = "Commercial use allowed, subject to the licence's list of prohibited uses."
_LLAMA = "Commercial use allowed below 700 million monthly users, with Meta's acceptable use policy."


def _terms(licence_id: str, name: str, commercial: Commercial, note: str) -> tuple[str, LicenceTerms]:
    return licence_id, LicenceTerms(licence_id, name, commercial, note)


LICENCES: dict[str, LicenceTerms] = dict(
    [
        _terms("apache-2.0", "Apache 2.0", "yes", _PERMISSIVE),
        _terms("mit", "MIT", "yes", _PERMISSIVE),
        _terms("bsd", "BSD", "yes", _PERMISSIVE),
        _terms("bsd-2-clause", "BSD 2-Clause", "yes", _PERMISSIVE),
        _terms("bsd-3-clause", "BSD 3-Clause", "yes", _PERMISSIVE),
        _terms("cc0-1.0", "CC0 1.0", "yes", "Public-domain dedication: no conditions at all."),
        _terms("unlicense", "The Unlicense", "yes", "Public-domain dedication: no conditions at all."),
        _terms("cc-by-4.0", "CC BY 4.0", "yes", "Commercial use allowed, crediting the authors."),
        _terms(
            "cc-by-sa-4.0",
            "CC BY-SA 4.0",
            "yes",
            "Commercial use allowed, crediting the authors and sharing adaptations under the same licence.",
        ),
        _terms("gpl-3.0", "GPL 3.0", "yes", _COPYLEFT),
        _terms("lgpl-3.0", "LGPL 3.0", "yes", _COPYLEFT),
        _terms("agpl-3.0", "AGPL 3.0", "yes", _COPYLEFT),
        _terms("gpl-2.0", "GPL 2.0", "yes", _COPYLEFT),
        _terms("lgpl-2.1", "LGPL 2.1", "yes", _COPYLEFT),
        _terms("mpl-2.0", "MPL 2.0", "yes", _COPYLEFT),
        _terms("isc", "ISC", "yes", _PERMISSIVE),
        _terms("openrail", "OpenRAIL", "restricted", _RAIL),
        _terms("openrail++", "OpenRAIL++", "restricted", _RAIL),
        _terms("creativeml-openrail-m", "CreativeML OpenRAIL-M", "restricted", _RAIL),
        _terms("bigscience-openrail-m", "BigScience OpenRAIL-M", "restricted", _RAIL),
        _terms("bigcode-openrail-m", "BigCode OpenRAIL-M", "restricted", _RAIL),
        _terms("llama2", "Llama 2 Community License", "restricted", _LLAMA),
        _terms("llama3", "Llama 3 Community License", "restricted", _LLAMA),
        _terms("llama3.1", "Llama 3.1 Community License", "restricted", _LLAMA),
        _terms("llama3.2", "Llama 3.2 Community License", "restricted", _LLAMA),
        _terms("llama3.3", "Llama 3.3 Community License", "restricted", _LLAMA),
        _terms("llama4", "Llama 4 Community License", "restricted", _LLAMA),
        _terms(
            "gemma",
            "Gemma Terms of Use",
            "restricted",
            "Commercial use allowed under Google's Gemma terms and prohibited-use policy.",
        ),
        _terms(
            "qwen",
            "Qwen License",
            "restricted",
            "Commercial use allowed below 100 million monthly active users; above that Alibaba Cloud's permission "
            "is needed.",
        ),
        _terms(
            "tongyi-qianwen",
            "Tongyi Qianwen License",
            "restricted",
            "Commercial use allowed below 100 million monthly active users; above that Alibaba Cloud's permission "
            "is needed.",
        ),
        _terms(
            "deepseek",
            "DeepSeek License",
            "restricted",
            "Commercial use allowed, subject to the licence's use restrictions.",
        ),
        _terms(
            "qwen-research",
            "Qwen Research License",
            "no",
            "Research and other non-commercial use only; commercial use needs Alibaba Cloud's permission.",
        ),
        _terms(
            "tongyi-qianwen-research",
            "Tongyi Qianwen Research License",
            "no",
            "Research and other non-commercial use only; commercial use needs Alibaba Cloud's permission.",
        ),
        _terms(
            "mrl",
            "Mistral Research License",
            "no",
            "Research and other non-commercial use only; commercial use needs a licence from Mistral AI.",
        ),
        _terms(
            "apple-amlr",
            "Apple Machine Learning Research Model License",
            "no",
            "Non-commercial scientific research only.",
        ),
        _terms(
            "fair-noncommercial-research-license",
            "FAIR Noncommercial Research License",
            "no",
            "Non-commercial research only.",
        ),
        _terms("unknown", "Unknown", "unknown", "The makers did not say; read the model card before using it."),
        _terms(
            "other",
            "Other (see the model card)",
            "unknown",
            "The makers use their own terms; read the model card before relying on it.",
        ),
    ]
)

_NON_COMMERCIAL = re.compile(r"^cc-by-nc(?:-(sa|nd))?-(\d+(?:\.\d+)?)$")


def licence_terms(licence_id: str) -> LicenceTerms:
    """What a Hub licence id allows (case-insensitive). Unknown ids keep their own text as the name."""
    key = licence_id.strip().lower()
    if key in LICENCES:
        return LICENCES[key]
    if match := _NON_COMMERCIAL.match(key):
        variant = f"-{match.group(1).upper()}" if match.group(1) else ""
        return LicenceTerms(
            key, f"CC BY-NC{variant} {match.group(2)} (non-commercial)", "no", "Non-commercial use only."
        )
    if not key:
        return LicenceTerms("", "Not stated", "unknown", "No licence is stated; read the model card before using it.")
    return LicenceTerms(
        licence_id, licence_id, "unknown", "The app does not know this licence; read the model card before using it."
    )
