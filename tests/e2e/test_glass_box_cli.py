"""`localai-app tokenize` and `localai-app chat --probs K --json` as their users run them: the real CLI, the real
engine, the tiny model for shapes and the starter model for probabilities against llama.cpp's raw logits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import llama_cpp
import pytest

from localai_app.core.replies import TokenChoice, TokenProbability
from tests.e2e.test_starter_and_cli import run_cli
from tests.engine.test_glass_box import check_against_raw_logits


def test_tokenize_prints_ids_pieces_and_the_count(tmp_path: Path, tiny_chat_model: Path) -> None:
    listed = run_cli("tokenize", str(tiny_chat_model), "Hi é", basedir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    # "▁" (the space SentencePiece puts first), H, i, ▁, and é as two partial bytes.
    assert lines[-1] == "6 tokens"
    assert lines[1].split() == ["75", '"H"'] and lines[-2].split() == ["172", "bytes", "a9"]

    as_json = run_cli("tokenize", str(tiny_chat_model), "Hi é", "--json", basedir=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    tokens = json.loads(as_json.stdout)
    assert tokens[1] == {"id": 75, "piece": "H"} and tokens[-1] == {"id": 172, "piece": [0xA9]}
    assert len(tokens) == 6


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [(["--probs", "21"], "--probs must be between 0 and 20."), (["--json"], "add --probs K.")],
)
def test_chat_probs_mistakes_are_one_line(tmp_path: Path, tiny_model: Path, flags: list[str], complaint: str) -> None:
    refused = run_cli("chat", str(tiny_model), "Hi", *flags, basedir=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith(complaint) and len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.starter
def test_chat_probs_json_match_the_starters_raw_logits(tmp_path: Path, starter_model: Path) -> None:
    prompt = "The capital of France is"
    ran = run_cli(
        "chat", str(starter_model), prompt, "--probs", "5", "--json", "--temperature", "0", "--max-tokens", "8",
        "--ctx", "512", "--threads", "2", basedir=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    assert len(lines) == 8
    for line in lines:
        assert set(line) == {"text", "id", "probability", "alternatives"}
        assert isinstance(line["probability"], float) and isinstance(line["id"], int)
        assert all(set(alt) == {"token", "id", "probability"} for alt in line["alternatives"])
    generated = [
        TokenProbability(
            line["text"],
            math.log(line["probability"]),
            [TokenChoice(alt["token"], math.log(alt["probability"]), alt["id"]) for alt in line["alternatives"]],
            line["id"],
        )
        for line in lines
    ]
    # The starter has no chat template: the engine reads the prompt as plain text, BOS first.
    vocabulary = llama_cpp.Llama(str(starter_model), vocab_only=True, verbose=False)
    try:
        prompt_ids = vocabulary.tokenize(prompt.encode(), add_bos=True, special=False)
    finally:
        vocabulary.close()
    check_against_raw_logits(starter_model, prompt_ids, generated)
