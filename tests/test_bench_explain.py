"""The explanation benchmark's measured alternatives and its agreement figures: integrated gradients add up to the
change of the quantity between the baseline and the text, gradient x input is its one-point case, and the agreement
with occlusion is counted as documented."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from apps.common.settings import REPO_ROOT
from core.config import ModelConfig
from core.engine import InferenceEngine
from core.tasks import CoreModel, TaskSpec

LABELS = ("up", "flat", "down")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_explain", REPO_ROOT / "bench" / "explain.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def engine(tok):
    torch.manual_seed(0)
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size), [TaskSpec(name="mood", kind="classify",
                                                                             labels=LABELS)])
    with torch.no_grad():
        model.heads["mood"].out.weight.normal_(0.0, 1.0)
    return InferenceEngine.from_model(model, tok, batch_size=4)


TEXTS = ["the card payment was declined", "unbelievably the shares fell", "hello"]


def _quantity(engine, ids, w, zero_body: bool) -> float:
    """log p(up) - log p(down) of one encoded text, its word-piece embeddings zeroed when ``zero_body``."""
    x = torch.tensor([ids])
    emb = engine.model.backbone.wte(x).detach().clone()
    if zero_body:
        emb[0, 1:-1] = 0.0
    handle = engine.model.backbone.wte.register_forward_hook(lambda mod, args, out: emb)
    try:
        with torch.no_grad():
            logp = torch.log_softmax(engine.model.classify("mood", x, torch.ones_like(x, dtype=torch.bool)), -1)[0]
    finally:
        handle.remove()
    return float(logp @ torch.tensor(w))


def test_integrated_gradients_add_up_to_the_change_from_the_baseline(bench, engine):
    weights = {"up": 1.0, "down": -1.0}
    got = bench.gradient_explain(engine, TEXTS, "mood", weights, steps=64)
    for text, words, ids in zip(TEXTS, got, engine._encode(TEXTS)):
        assert [w for w, _ in words] == [w for w, _ in engine.explain([text], "mood")[0]]
        change = _quantity(engine, ids, [1.0, 0.0, -1.0], False) - _quantity(engine, ids, [1.0, 0.0, -1.0], True)
        assert sum(a for _, a in words) == pytest.approx(change, abs=2e-3)


def test_gradient_x_input_is_integrated_gradients_of_one_point_at_the_text(bench, engine):
    one = bench.gradient_explain(engine, TEXTS, "mood", None, steps=0)
    ids = engine._encode(TEXTS[:1])[0]
    x = torch.tensor([ids])
    emb = engine.model.backbone.wte(x).detach().requires_grad_(True)
    handle = engine.model.backbone.wte.register_forward_hook(lambda mod, args, out: emb)
    try:
        logp = torch.log_softmax(engine.model.classify("mood", x, torch.ones_like(x, dtype=torch.bool)), -1)[0]
        logp[int(logp.argmax())].backward()
    finally:
        handle.remove()
    per_piece = (emb.grad * emb).sum(-1)[0, 1:-1].detach().numpy()
    np.testing.assert_allclose([a for _, a in one[0]], per_piece, atol=1e-5)  # these words are one piece each


def test_agreement_counts_rank_correlation_and_top_words(bench):
    ref = [[("a", 3.0), ("b", -2.0), ("c", 1.0), ("d", 0.1)], [("x", 1.0), ("y", 2.0)]]
    same = bench.agreement(ref, ref)
    assert same == {"spearman": 1.0, "top1": 1.0, "top3": 1.0, "sentences_compared": 1}  # 2-word texts not counted
    # ranks reversed (4 1 3 2 against 1 4 2 3); the largest |a| is "b", not "a"; the three largest {b, a, d}
    # against {a, b, c}: 2 of 3
    other = [[("a", -2.0), ("b", 3.0), ("c", 0.1), ("d", 1.0)], ref[1]]
    assert bench.agreement(ref, other) == {"spearman": -1.0, "top1": 0.0, "top3": 0.6667, "sentences_compared": 1}
