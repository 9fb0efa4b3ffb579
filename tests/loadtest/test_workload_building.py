"""Workloads: seeded synthetic prompts of the asked lengths; prompt files (text, JSONL) with clear errors."""

import json

import pytest

from loadtest.errors import LoadTestError
from loadtest.workloads import WORDS, FileWorkload, SyntheticWorkload, build_workload


def test_synthetic_is_reproducible_and_seeded():
    spec = SyntheticWorkload(input_tokens=32, output_tokens=16, spread=0.5, count=20, seed=7)
    first, again = build_workload(spec), build_workload(spec)
    assert first == again
    other = build_workload(spec.model_copy(update={"seed": 8}))
    assert [r.prompt for r in other] != [r.prompt for r in first]
    assert [r.index for r in first] == list(range(20))


def test_synthetic_lengths_stay_within_the_spread():
    requests = build_workload(SyntheticWorkload(input_tokens=100, output_tokens=40, spread=0.25, count=200))
    inputs = [r.input_tokens for r in requests]
    outputs = [r.max_tokens for r in requests]
    assert min(inputs) >= 75 and max(inputs) <= 125 and len(set(inputs)) > 10
    assert min(outputs) >= 30 and max(outputs) <= 50
    assert all(len(r.prompt.split()) == r.input_tokens for r in requests)  # one word per intended token
    fixed = build_workload(SyntheticWorkload(input_tokens=10, output_tokens=5, count=3))
    assert {r.max_tokens for r in fixed} == {5} and {len(r.prompt.split()) for r in fixed} == {10}


@pytest.fixture(scope="module")
def smollm_tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def test_word_approximation_holds_for_a_real_tokenizer(smollm_tokenizer):
    """The documented approximation: every built-in word is one token (after a space) in SmolLM2's vocabulary,
    so an N-word prompt is N tokens, give or take the first word."""
    tok = smollm_tokenizer
    assert all(len(tok.encode(" " + w, add_special_tokens=False)) == 1 for w in WORDS)
    for r in build_workload(SyntheticWorkload(input_tokens=128, count=10, seed=1)):
        assert abs(len(tok.encode(r.prompt, add_special_tokens=False)) - 128) <= 1


def test_tokenizer_counts_exactly(embedded_model_dir, smollm_tokenizer):
    spec = SyntheticWorkload(input_tokens=50, count=5, tokenizer=str(embedded_model_dir))
    for r in build_workload(spec):
        assert abs(len(smollm_tokenizer.encode(r.prompt, add_special_tokens=False)) - 50) <= 1


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(LoadTestError, match="cannot load a tokenizer"):
        build_workload(SyntheticWorkload(tokenizer=str(tmp_path / "nope")))


def test_text_and_jsonl_prompt_files(tmp_path):
    text = tmp_path / "prompts.txt"
    text.write_text("first prompt\n\n  second prompt  \n")
    requests = build_workload(FileWorkload(path=text, max_tokens=9))
    assert [(r.index, r.prompt, r.max_tokens) for r in requests] == [
        (0, "first prompt", 9),
        (1, "second prompt", 9),
    ]

    jsonl = tmp_path / "prompts.jsonl"
    lines = [
        '"plain string"',
        json.dumps({"prompt": "with budget", "max_tokens": 3}),
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
    ]
    jsonl.write_text("\n".join(lines) + "\n")
    a, b, c = build_workload(FileWorkload(path=jsonl, max_tokens=7))
    assert (a.prompt, a.max_tokens) == ("plain string", 7)
    assert (b.prompt, b.max_tokens) == ("with budget", 3)
    assert c.messages == [{"role": "user", "content": "hi"}] and c.prompt is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "has no prompts"),
        ("{not json\n", "prompts.jsonl:1: not valid JSON"),
        ('"ok"\n{"text": "no prompt key"}\n', "prompts.jsonl:2: needs exactly one of"),
        ('{"prompt": "x", "max_tokens": 0}\n', "max_tokens must be a positive integer"),
        ("[1, 2]\n", "expected a string or an object"),
    ],
)
def test_bad_prompt_files(tmp_path, content, expected):
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(LoadTestError, match=expected.replace("(", r"\(")):
        build_workload(FileWorkload(path=path))


def test_missing_prompt_file(tmp_path):
    with pytest.raises(LoadTestError, match="does not exist"):
        build_workload(FileWorkload(path=tmp_path / "absent.txt"))
