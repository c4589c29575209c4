"""The task set's checkers on tables of right and wrong answers, the bundled set itself, windows, and the
perplexity gap between models."""

from __future__ import annotations

from typing import Any

import pytest

from localai_app.core.quality import (
    TEXT_ID,
    WINDOW,
    check_answer,
    load_tasks,
    load_text,
    perplexity_gap,
    windows,
)

NUMBER_42 = {"type": "number", "value": 42}
NUMBER_5000 = {"type": "number", "value": 5000}
OSLO = {"type": "text", "value": "Oslo"}
YES_IN_CAPITALS = {"type": "text", "value": "YES", "case_sensitive": True}
COMMAS = {"type": "regex", "pattern": "1, ?2, ?3"}
PERSON = {"type": "json", "value": {"name": "Peter", "age": 34}}
OK_TRUE = {"type": "json", "value": {"ok": True}}
COLOURS = {"type": "json", "value": ["red", "blue"]}


@pytest.mark.parametrize(
    ("check", "answer"),
    [
        (NUMBER_42, "42"),
        (NUMBER_42, " 42.\n"),
        (NUMBER_42, "17 + 25 = 42"),
        (NUMBER_42, "The answer is 42.0"),
        (NUMBER_5000, "5,000"),
        (NUMBER_5000, "5000"),
        (OSLO, "Oslo"),
        (OSLO, "oslo."),
        (OSLO, '"Oslo"'),
        (OSLO, "`Oslo`"),
        (YES_IN_CAPITALS, "YES"),
        (YES_IN_CAPITALS, "YES."),
        (COMMAS, "1, 2, 3"),
        (COMMAS, "1,2,3"),
        (PERSON, '{"name": "Peter", "age": 34}'),
        (PERSON, '{"age": 34, "name": "Peter"}'),
        (PERSON, '```json\n{"name": "Peter", "age": 34}\n```'),
        (PERSON, '{"name": "Peter", "age": 34.0}'),
        (OK_TRUE, '{"ok": true}'),
        (COLOURS, '["red", "blue"]'),
    ],
)
def test_right_answers_pass(check: dict[str, Any], answer: str) -> None:
    assert check_answer(check, answer)


@pytest.mark.parametrize(
    ("check", "answer"),
    [
        (NUMBER_42, ""),
        (NUMBER_42, "forty-two"),
        (NUMBER_42, "42 or 43"),
        (NUMBER_42, "420"),
        (NUMBER_42, "-42"),
        (NUMBER_5000, "5,0000"),
        (OSLO, "Lisbon"),
        (OSLO, "Maria flew to Oslo."),
        (OSLO, "Oslo, Norway"),
        (YES_IN_CAPITALS, "yes"),
        (YES_IN_CAPITALS, "YES, it is"),
        (COMMAS, "1, 2, 3, 4"),
        (COMMAS, "1 2 3"),
        (PERSON, '{"name": "Peter", "age": "34"}'),
        (PERSON, '{"name": "Peter"}'),
        (PERSON, '{"name": "Peter", "age": 34, "city": "Oslo"}'),
        (PERSON, "name: Peter, age: 34"),
        (PERSON, '{"name": "Peter", "age": 34'),
        (OK_TRUE, '{"ok": 1}'),
        (OK_TRUE, '{"ok": "true"}'),
        (COLOURS, '["blue", "red"]'),
        (COLOURS, '{"colours": ["red", "blue"]}'),
    ],
)
def test_wrong_answers_fail(check: dict[str, Any], answer: str) -> None:
    assert not check_answer(check, answer)


def test_an_unknown_check_is_an_error_not_a_fail() -> None:
    with pytest.raises(ValueError, match="unknown check type"):
        check_answer({"type": "vibes"}, "42")


def test_the_bundled_set_loads_and_every_reference_passes_its_own_check() -> None:
    tasks = load_tasks()
    assert 20 <= len(tasks.items) <= 30
    assert len({task.id for task in tasks.items}) == len(tasks.items)
    assert {task.kind for task in tasks.items} == {"arithmetic", "extraction", "format"}
    for task in tasks.items:
        assert task.passes(task.reference), task.id
        assert task.kind in tasks.shots, task.id
    for shots in tasks.shots.values():
        # A shot's answer is one line: completion form reads the answer up to the first line break.
        assert shots and all("\n" not in answer for _, answer in shots)
    assert all("\n" not in task.reference for task in tasks.items)


def test_completion_form_ends_where_the_answer_comes() -> None:
    tasks = load_tasks()
    task = tasks.items[0]
    prompt = tasks.completion_prompt(task)
    assert prompt.endswith(f"Question: {task.prompt}\nAnswer:")
    assert prompt.count("Question:") == len(tasks.shots[task.kind]) + 1


def test_the_bundled_text_is_there() -> None:
    text = load_text()
    assert text.startswith("The Constitution of the United States of America")
    assert TEXT_ID == "us-constitution-article-1"


def test_windows_follow_llama_cpp() -> None:
    tokens = list(range(100, 100 + 2 * WINDOW + 7))
    cut = list(windows(tokens, bos=1))
    assert [len(chunk) for chunk in cut] == [WINDOW, WINDOW]  # the remainder is dropped
    assert cut[1][0] == 1 and cut[1][1:] == tokens[WINDOW + 1 : 2 * WINDOW]  # BOS replaces the first token
    assert list(windows(tokens[:10], bos=None)) == [tokens[:10]]  # shorter than a window: one of its own length


def _model(name: str, perplexity: float | None, tokens: int = 1020) -> dict[str, Any]:
    quality = None if perplexity is None else {"text": TEXT_ID, "perplexity": perplexity, "perplexity_tokens": tokens}
    return {"name": name, "quality": quality}


def test_perplexity_gap_is_percent_above_the_best_among_comparable_models() -> None:
    gaps = perplexity_gap(
        [
            _model("q8", 10.0),
            _model("q4", 11.0),
            _model("no-quality", None),
            _model("other-tokenizer", 20.0, tokens=1275),
        ]
    )
    assert gaps == pytest.approx({"q8": 0.0, "q4": 10.0, "other-tokenizer": 0.0})
