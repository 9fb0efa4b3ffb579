"""Calibration sources and the shared protocol's windows."""

from __future__ import annotations

import json

import pytest
import torch

from prune_jobs.calibration import load_calibration, read_text_source, self_generated
from prune_jobs.config import CalibrationConfig
from prune_jobs.errors import PruneJobError
from prune_jobs.model_io import load_causal_lm, usable_context


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_causal_lm(tiny_llama_dir)


def test_reproduces_the_shared_protocol_windows(wikitext_dir, tiny):
    model, tok = tiny  # same tokenizer as SmolLM2
    path = wikitext_dir / "wiki.valid.tokens.txt"
    cal = load_calibration(CalibrationConfig(source=str(path)), model, tok, context=8192, model_sha256="x")
    # the protocol, written out independently (PROTOCOL.md)
    ids = tok(open(path).read(), return_tensors="pt").input_ids[0]
    offsets = torch.randint(0, ids.numel() - 513, (128,), generator=torch.Generator().manual_seed(0))
    expected = torch.stack([ids[o : o + 512] for o in offsets.tolist()])
    assert cal.input_ids.shape == (128, 512) and torch.equal(cal.input_ids, expected)


def test_jsonl_records_are_joined(tmp_path, tiny):
    model, tok = tiny
    path = tmp_path / "c.jsonl"
    path.write_text(
        json.dumps({"text": "first record"}) + "\n\n" + json.dumps({"text": "second", "id": 2}) + "\n"
    )
    assert read_text_source(path) == "first record\n\nsecond"
    path.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(PruneJobError, match=r"c.jsonl:2: .*'text'"):
        read_text_source(path)
    path.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(PruneJobError, match=r"c.jsonl:2: not valid JSON"):
        read_text_source(path)


def test_seqlen_capped_by_context_and_by_data(tmp_path, tiny, calib_text):
    model, tok = tiny
    assert usable_context(model, tok) == 2048  # max_position_embeddings; the tokenizer sets no limit
    cal = load_calibration(
        CalibrationConfig(source=str(calib_text), samples=2, seqlen=4096),
        model,
        tok,
        context=usable_context(model, tok),
        model_sha256="x",
    )
    assert cal.seqlen == 2048 and cal.input_ids.shape == (2, 2048) and "context" in cal.notes[0]
    short = tmp_path / "short.txt"
    short.write_text("a few words of text here, nothing more than that really " * 3)
    cal = load_calibration(
        CalibrationConfig(source=str(short), samples=3, seqlen=512),
        model,
        tok,
        context=2048,
        model_sha256="x",
    )
    n_tokens = tok(short.read_text(), return_tensors="pt").input_ids.numel()
    assert cal.seqlen == n_tokens - 2 and "data available" in cal.notes[0]
    short.write_text("tiny")
    with pytest.raises(PruneJobError, match="only"):
        load_calibration(
            CalibrationConfig(source=str(short), seqlen=64), model, tok, context=2048, model_sha256="x"
        )


def test_self_generated_samples_are_seeded_and_cached(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEFLEET_CACHE", str(tmp_path))
    model, tok = tiny
    first = self_generated(model, tok, samples=3, seqlen=12, seed=5, model_sha256="abc", batch_size=2)
    assert first.shape == (3, 12)
    assert len(list((tmp_path / "calibration").glob("self-*.pt"))) == 1
    again = self_generated(model, tok, samples=3, seqlen=12, seed=5, model_sha256="abc", batch_size=2)
    assert torch.equal(first, again)
    (next((tmp_path / "calibration").glob("self-*.pt"))).unlink()
    regenerated = self_generated(model, tok, samples=3, seqlen=12, seed=5, model_sha256="abc", batch_size=2)
    assert torch.equal(first, regenerated)  # deterministic, not only cached
    other = self_generated(model, tok, samples=3, seqlen=12, seed=6, model_sha256="abc", batch_size=2)
    assert not torch.equal(first, other)
    eos = tok.eos_token_id
    assert not (first[:, 1:] == eos).any()  # no sample ends early
