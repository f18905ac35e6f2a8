"""Tests for core.data (readers, splits, collators, the multi-task loader) and core.train.fit end to end."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from core.artifacts import load_artifact
from core.config import ModelConfig, TrainConfig
from core.data import (
    DataFormatError,
    ListDataset,
    LMCollator,
    MultiTaskDataModule,
    MultiTaskLoader,
    TaskData,
    TextCollator,
    dedupe_texts,
    pad_ids,
    read_labelled_texts,
    stratified_split,
)
from core.engine import InferenceEngine
from core.tasks import CoreModel, TaskSpec
from core.train import fit


# ------------------------------------------------------------------------------------------------ stratified_split
def test_stratified_split_of_ten_keeps_class_proportions():
    labels = ["a"] * 6 + ["b"] * 4
    first, second = stratified_split(labels, [0.5, 0.5], seed=3)
    # each class is cut in half: a -> 3 + 3, b -> 2 + 2
    assert Counter(labels[i] for i in first) == {"a": 3, "b": 2}
    assert Counter(labels[i] for i in second) == {"a": 3, "b": 2}
    assert sorted(first.tolist() + second.tolist()) == list(range(10))


def test_stratified_split_of_twenty_three_ways():
    labels = [0] * 12 + [1] * 8
    parts = stratified_split(labels, [0.5, 0.25, 0.25], seed=0)
    # class 0: cuts at round(6), round(9) -> 6 / 3 / 3; class 1: cuts at 4, 6 -> 4 / 2 / 2
    assert [Counter(labels[i] for i in p) for p in parts] == [{0: 6, 1: 4}, {0: 3, 1: 2}, {0: 3, 1: 2}]
    allidx = np.concatenate(parts)
    assert len(set(allidx.tolist())) == 20 == len(allidx)  # disjoint and covering
    assert all(np.all(np.diff(p) > 0) for p in parts)  # each part sorted
    tr, va = stratified_split(labels, [0.75, 0.25], seed=0)
    assert [Counter(labels[i] for i in p) for p in (tr, va)] == [{0: 9, 1: 6}, {0: 3, 1: 2}]


def test_stratified_split_is_deterministic_per_seed():
    labels = [i % 3 for i in range(30)]
    a = stratified_split(labels, [0.8, 0.2], seed=13)
    b = stratified_split(labels, [0.8, 0.2], seed=13)
    c = stratified_split(labels, [0.8, 0.2], seed=14)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    assert not set(a[0].tolist()) & set(a[1].tolist())


def test_stratified_split_rejects_fractions_not_summing_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split([0, 1], [0.5, 0.4], seed=0)


def test_dedupe_texts_ignores_case_and_spacing_and_keeps_first_label():
    texts, labels = dedupe_texts(["Hello  world", "hello world", "other"], ["a", "b", "c"])
    assert texts == ["Hello  world", "other"] and labels == ["a", "c"]


# ------------------------------------------------------------------------------------------------ readers
def test_read_csv_with_category_column(tmp_path):
    f = tmp_path / "train.csv"
    f.write_text('text,category\n"my card, it was declined",card_declined\nwhere is my refund , refund\n,empty\n',
                 encoding="utf-8")
    texts, labels = read_labelled_texts(f, "csv")
    assert texts == ["my card, it was declined", "where is my refund"]
    assert labels == ["card_declined", "refund"]


def test_read_csv_with_bom_and_label_column(tmp_path):
    f = tmp_path / "train.csv"
    f.write_bytes("\ufefftext,label\ncafé au lait,drink\n".encode())
    assert read_labelled_texts(f) == (["café au lait"], ["drink"])


def test_read_phrasebank_latin1_splits_on_last_at(tmp_path):
    f = tmp_path / "Sentences_50Agree.txt"
    raw = "Sales @ Caf\xe9 Oy rose 5 %@positive\r\nThe outlook is unchanged .@neutral\r\n\r\n"
    f.write_bytes(raw.encode("latin-1"))  # \xe9 is one byte in latin-1 (and not valid UTF-8)
    texts, labels = read_labelled_texts(f, "phrasebank")
    assert texts == ["Sales @ Café Oy rose 5 %", "The outlook is unchanged ."]
    assert labels == ["positive", "neutral"]


def test_phrasebank_line_without_label_names_its_line(tmp_path):
    f = tmp_path / "s.txt"
    f.write_bytes(b"Good line@positive\nno label here\n")
    with pytest.raises(DataFormatError, match=r"s\.txt:2: expected 'sentence@label'"):
        read_labelled_texts(f, "phrasebank")


def test_csv_missing_columns_raises(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("sentence,label\nhello,a\n")
    with pytest.raises(DataFormatError, match=r"needs columns 'text' and 'label'.*\['sentence', 'label'\]"):
        read_labelled_texts(f, "csv")


def test_non_utf8_csv_raises(tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes("text,label\ncaf\xe9,drink\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match="is not UTF-8 text"):
        read_labelled_texts(f, "csv")


def test_csv_field_longer_than_the_csv_limit_raises_naming_the_file(tmp_path):
    f = tmp_path / "huge.csv"
    f.write_text("text,label\nshort,a\n" + "x" * 200_000 + ",b\n")
    with pytest.raises(DataFormatError, match=r"huge\.csv: unreadable CSV after line 2: field larger than field limit"):
        read_labelled_texts(f, "csv")


def test_reader_rejects_missing_file_unknown_format_and_no_rows(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        read_labelled_texts(tmp_path / "nope.csv")
    f = tmp_path / "empty.csv"
    f.write_text("text,label\n")
    with pytest.raises(DataFormatError, match="no rows"):
        read_labelled_texts(f)
    with pytest.raises(DataFormatError, match="unknown data format 'xml'"):
        read_labelled_texts(f, "xml")


# ------------------------------------------------------------------------------------------------ collators
def test_pad_ids_pads_right():
    ids, mask = pad_ids([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_text_collator_tokenises_and_truncates(tok):
    batch = TextCollator("intent", tok, max_length=4)([("the card payment was declined", 1), ("hello", 0)])
    assert batch.ids.shape == (2, 4)
    assert batch.ids[0, 0] == tok.cls_id and batch.ids[0, 3] == tok.sep_id
    assert batch.labels.tolist() == [1, 0]
    assert batch.mask.sum(1).tolist() == [4, 3]


def test_text_collator_takes_soft_targets(tok):
    batch = TextCollator("intent", tok, max_length=8)([("card declined", [0.2, 0.8]), ("hello", (1.0, 0.0))])
    assert batch.labels.dtype == torch.float32 and batch.labels.shape == (2, 2)
    np.testing.assert_allclose(batch.labels.numpy(), [[0.2, 0.8], [1.0, 0.0]])


def test_fit_on_soft_targets_learns_their_probabilities(tok, tmp_path):
    """Targets that put 0.8 on the true class (0.2 on the other) give a model whose probabilities settle near 0.8,
    while the same run on hard labels goes on towards 1.0; validation (soft targets too) scores their top class."""
    spec = TaskSpec(name="sentiment", kind="classify", labels=("negative", "positive"))
    texts, labels = _toy(40, 2)

    def run(target):
        torch.manual_seed(0)
        model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size), [spec])
        train, val = _toy(512, 1), _toy(40, 2)
        data = MultiTaskDataModule([TaskData(spec, ListDataset(train[0], [target(y) for y in train[1]]),
                                             ListDataset(val[0], [target(y) for y in val[1]]))],
                                   tok, batch_size=16, max_length=16, seed=13)
        out = fit(model, data, TrainConfig.quick(max_epochs=8, lr=1e-3), tmp_path / str(target(1)), tok,
                  progress=False)
        assert json.loads((out / "config.json").read_text())["meta"]["training"]["best_val_score"] >= 0.9
        p = InferenceEngine(out).classify_proba(texts, "sentiment")
        assert (p.argmax(1) == np.array(labels)).mean() >= 0.9
        return float(p[np.arange(len(labels)), labels].mean())

    soft = run(lambda y: [0.2, 0.8] if y else [0.8, 0.2])
    hard = run(lambda y: y)
    assert 0.65 < soft < 0.88 and hard > soft + 0.05, (soft, hard)


def _lm_texts(corpus):
    rng = np.random.default_rng(0)
    words = " ".join(corpus).replace(",", "").split()
    return [" ".join(rng.choice(words, 12)) for _ in range(200)]


def test_lm_collator_masks_about_15_percent_and_never_special_tokens(tok, corpus):
    texts = _lm_texts(corpus)
    clean, clean_mask = pad_ids(tok.encode_batch(texts, 64), tok.pad_id)
    batch = LMCollator("lm", tok, 64, mlm_prob=0.15, causal_fraction=0.0, seed=0)(texts)
    assert batch.mode == "bidirectional"
    assert torch.equal(batch.mask, clean_mask)
    target = batch.labels != -100
    special = (clean == tok.cls_id) | (clean == tok.sep_id) | ~clean_mask
    candidates = int((clean_mask & ~special).sum())
    assert candidates > 2000
    assert not (target & special).any()
    assert 0.12 < int(target.sum()) / candidates < 0.18
    assert torch.equal(batch.labels[target], clean[target])  # the target is the original token
    assert torch.equal(batch.ids[~target], clean[~target])  # nothing else changes
    # BERT's 80 / 10 / 10: most targets become [MASK], some stay as they were
    became_mask = (batch.ids[target] == tok.mask_id).float().mean().item()
    stayed = (batch.ids[target] == clean[target]).float().mean().item()
    assert 0.7 < became_mask < 0.9
    assert 0.03 < stayed < 0.2


def test_lm_collator_causal_batches_predict_the_real_tokens(tok, corpus):
    texts = _lm_texts(corpus)[:8]
    clean, clean_mask = pad_ids(tok.encode_batch(texts, 64), tok.pad_id)
    batch = LMCollator("lm", tok, 64, causal_fraction=1.0, seed=0)(texts)
    assert batch.mode == "causal"
    assert torch.equal(batch.ids, clean)
    assert torch.equal(batch.labels[clean_mask], clean[clean_mask])
    assert (batch.labels[~clean_mask] == -100).all()


def test_lm_collator_mixes_modes_by_causal_fraction_and_seed(tok):
    texts = ["hello world"] * 2
    col = LMCollator("lm", tok, 16, causal_fraction=0.5, seed=1)
    modes = [col(texts).mode for _ in range(200)]
    share = modes.count("causal") / len(modes)
    assert 0.35 < share < 0.65
    again = LMCollator("lm", tok, 16, causal_fraction=0.5, seed=1)
    assert [again(texts).mode for _ in range(200)] == modes


# ------------------------------------------------------------------------------------------------ MultiTaskLoader
def _loaders():
    def collate(name):
        return lambda items: (name, tuple(items))

    return {"big": DataLoader(ListDataset(list(range(50))), batch_size=5, collate_fn=collate("big")),  # 10 batches
            "small": DataLoader(ListDataset(list(range(100, 112))), batch_size=4, collate_fn=collate("small"))}  # 3


def _epoch(loader):
    return [(name, tuple(x[0] for x in items)) for name, items in loader]


def test_multitask_loader_yields_every_batch_once_per_epoch_in_a_new_order():
    loader = MultiTaskLoader(_loaders(), seed=5)
    assert len(loader) == 13
    e1, e2 = _epoch(loader), _epoch(loader)
    expected = sorted([("big", tuple(range(i, i + 5))) for i in range(0, 50, 5)]
                      + [("small", tuple(range(i, i + 4))) for i in range(100, 112, 4)])
    assert sorted(e1) == expected and sorted(e2) == expected
    assert [n for n, _ in e1] != [n for n, _ in e2]  # a different interleaving each epoch
    # within a task, its own loader's order is kept
    assert [b for n, b in e1 if n == "small"] == [tuple(range(i, i + 4)) for i in range(100, 112, 4)]


def test_multitask_loader_order_is_the_same_for_the_same_seed():
    a, b = MultiTaskLoader(_loaders(), seed=5), MultiTaskLoader(_loaders(), seed=5)
    assert _epoch(a) == _epoch(b)
    assert _epoch(a) == _epoch(b)
    c = MultiTaskLoader(_loaders(), seed=6)
    d = MultiTaskLoader(_loaders(), seed=5)
    assert _epoch(c) != _epoch(d)


# ------------------------------------------------------------------------------------------------ fit end to end
POS, NEG = ["good", "great", "nice", "excellent", "happy"], ["bad", "awful", "poor", "terrible", "sad"]
FILLER = ["the", "a", "day", "card", "shop", "world"]


def _toy(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Texts of filler words plus two sentiment words: label 1 for the positive ones, 0 for the negative."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        words = list(rng.choice(FILLER, 4)) + list(rng.choice(POS if y else NEG, 2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(y)
    return texts, labels


def _fit(tok, out, seed: int = 0):
    torch.manual_seed(seed)
    spec = TaskSpec(name="sentiment", kind="classify", labels=("negative", "positive"))
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size), [spec])
    data = MultiTaskDataModule([TaskData(spec, ListDataset(*_toy(512, 1)), ListDataset(*_toy(40, 2)))], tok,
                               batch_size=16, max_length=16, seed=13)
    cfg = TrainConfig.quick(max_epochs=2, lr=1e-3)
    return fit(model, data, cfg, out, tok, meta={"toy": True}, progress=False)


@pytest.fixture(scope="module")
def fitted(tok, tmp_path_factory):
    """One training run (64 steps of a tiny model: about a second), shared by the tests below."""
    return _fit(tok, tmp_path_factory.mktemp("fit") / "run1")


def test_fit_learns_a_separable_task_and_writes_a_loadable_artifact(fitted):
    config = json.loads((fitted / "config.json").read_text())
    training = config["meta"]["training"]
    assert config["meta"]["toy"] is True
    assert training["best_val_score"] >= 0.9
    assert training["steps"] == 2 * 512 // 16  # two epochs of 32 batches
    assert config["meta"]["train_config"]["max_epochs"] == 2
    model, _, _ = load_artifact(fitted)
    assert list(model.tasks) == ["sentiment"]
    engine = InferenceEngine(fitted)
    texts, labels = _toy(40, 2)
    preds = engine.classify_proba(texts, "sentiment").argmax(1)
    assert (preds == np.array(labels)).mean() >= 0.9
    assert engine.classify(["a great nice day"], "sentiment")[0].label == "positive"
    assert engine.classify(["a terrible awful day"], "sentiment")[0].label == "negative"


def test_fit_writes_tensorboard_logs_and_keeps_the_best_epoch(fitted):
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((fitted / "logs").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    scores = [e.value for e in EventAccumulator(str(events[0].parent)).Reload().Scalars("val/score")]
    best = json.loads((fitted / "config.json").read_text())["meta"]["training"]["best_val_score"]
    assert best == pytest.approx(max(scores))
    # the best weights live in the artifact; the training checkpoint is not kept as a second copy
    assert not (fitted / "checkpoints" / "best.ckpt").exists()


def test_fit_shows_its_progress_on_stderr_and_keeps_stdout_for_results(tok, tmp_path, capfd):
    spec = TaskSpec(name="sentiment", kind="classify", labels=("negative", "positive"))
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size), [spec])
    data = MultiTaskDataModule([TaskData(spec, ListDataset(*_toy(64, 1)), ListDataset(*_toy(16, 2)))], tok,
                               batch_size=16, max_length=16, seed=13)
    fit(model, data, TrainConfig.quick(max_epochs=1), tmp_path / "p", tok, progress=True)
    out, err = capfd.readouterr()
    assert "Epoch 0" in err and "Validation" in err
    assert "Epoch" not in out and "it/s" not in out


def test_fit_trains_in_train_mode_even_a_model_left_in_eval_mode(tok, tmp_path):
    """A model that a first fit (or load_artifact) left in eval mode trains with dropout on in the next fit."""
    import lightning as L

    class Probe(L.Callback):
        def __init__(self):
            self.modes: list[bool] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.modes.append(pl_module.model.training)

    spec = TaskSpec(name="sentiment", kind="classify", labels=("negative", "positive"))
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size), [spec]).eval()
    data = MultiTaskDataModule([TaskData(spec, ListDataset(*_toy(32, 1)), ListDataset(*_toy(16, 2)))], tok,
                               batch_size=16, max_length=16, seed=13)
    probe = Probe()
    fit(model, data, TrainConfig.quick(max_epochs=1), tmp_path / "again", tok, progress=False,
        extra_callbacks=[probe], validate_first=True)
    assert probe.modes == [True, True]
    assert not model.training  # fit hands the model back ready to serve


def test_fit_refuses_more_cpu_processes_than_cores_before_training(tok, tmp_path):
    spec = TaskSpec(name="sentiment", kind="classify", labels=("negative", "positive"))
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size), [spec])
    data = MultiTaskDataModule([TaskData(spec, ListDataset(*_toy(8, 1)), ListDataset(*_toy(8, 2)))], tok,
                               batch_size=8, max_length=16, seed=13)
    cores = os.cpu_count() or 1
    cfg = TrainConfig.quick(max_epochs=1).model_copy(update={"accelerator": "cpu", "devices": cores + 1})
    with pytest.raises(ValueError, match=f"at most one process per core \\({cores} here\\)"):
        fit(model, data, cfg, tmp_path / "many", tok, progress=False)
    assert not (tmp_path / "many").exists()  # refused before anything was written


def test_fit_keep_last_runs_the_whole_schedule_without_validation_and_keeps_the_final_weights(tok, tmp_path):
    """``keep="last"``: no early stopping, no checkpoint; a refit without any validation data trains all epochs and
    the artifact is the final model (it still learned the task)."""
    spec = TaskSpec(name="sentiment", kind="classify", labels=("negative", "positive"))
    torch.manual_seed(0)
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size), [spec])
    data = MultiTaskDataModule([TaskData(spec, ListDataset(*_toy(512, 1)))], tok, batch_size=16, max_length=16,
                               seed=13)
    cfg = TrainConfig.quick(max_epochs=3, lr=1e-3, patience=1, keep="last")
    out = fit(model, data, cfg, tmp_path / "last", tok, progress=False)
    training = json.loads((out / "config.json").read_text())["meta"]["training"]
    assert training["kept"] == "last" and training["steps"] == 3 * 512 // 16 and training["best_val_score"] is None
    assert not list(out.rglob("*.ckpt"))
    texts, labels = _toy(40, 2)
    engine = InferenceEngine(out)
    assert (engine.classify_proba(texts, "sentiment").argmax(1) == np.array(labels)).mean() >= 0.9
    # the artifact holds the weights the model had when training ended
    for name, value in load_artifact(out)[0].state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_fit_twice_with_the_same_seed_gives_identical_weights(tok, fitted, tmp_path):
    again = _fit(tok, tmp_path / "run2")
    for rel in ("model.safetensors", "heads/sentiment.safetensors"):
        a, b = load_file(str(fitted / rel)), load_file(str(again / rel))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    # and training did move the weights away from the (seeded) start
    torch.manual_seed(0)
    start = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size)).state_dict()
    assert not torch.equal(start["backbone.wte.weight"], load_file(str(again / "model.safetensors"))[
        "backbone.wte.weight"])


def test_tokenizer_training_is_deterministic_and_keeps_specials_first():
    from core.tokenizer import SPECIAL_TOKENS, Tokenizer

    texts = ["the card was lost", "the card arrived", "a lost wallet", "cards and wallets"] * 3
    a, b = Tokenizer.train(texts, vocab_size=50, min_frequency=1), Tokenizer.train(list(reversed(texts)), 50, 1)
    assert a.hf.get_vocab() == b.hf.get_vocab()
    assert [a.hf.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert a.decode(a.encode("the lost cards")) == "the lost cards"


def test_text_with_bytes_that_were_not_utf8_is_encoded_with_replacement_characters(tok):
    """Python keeps such bytes of argv or standard input as lone surrogates, which the Rust tokenizer refuses."""
    bad = b"the \xff card \xc3 was lost".decode("utf-8", "surrogateescape")
    assert tok.encode_batch([bad, "the card"]) == tok.encode_batch(["the \ufffd card \ufffd was lost", "the card"])
    assert tok.encode("\ud800 lost") == tok.encode("\ufffd\ufffd\ufffd lost")  # any lone surrogate


def test_pretrained_weights_train_at_lr_and_new_heads_at_head_lr(tok, tmp_path):
    """Two learning rates: every backbone weight trains at ``lr``, the new heads (and the LM head's bias) at
    ``head_lr``. Read from the optimiser Lightning really built."""
    import lightning as L

    spec = TaskSpec(name="sentiment", kind="classify", labels=("negative", "positive"))
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size), [spec])
    seen: dict[int, float] = {}

    class Grab(L.Callback):
        def on_train_start(self, trainer, pl_module):
            for group in trainer.optimizers[0].param_groups:
                for p in group["params"]:
                    seen[id(p)] = group["initial_lr"]

    train, val = _toy(32, 1), _toy(16, 2)
    data = MultiTaskDataModule([TaskData(spec, ListDataset(*train), ListDataset(*val))], tok, batch_size=16,
                               max_length=16, seed=13)
    cfg = TrainConfig.quick(lr=1e-3, head_lr=1e-2, limit_train_batches=1)
    fit(model, data, cfg, tmp_path / "run", tok, progress=False, extra_callbacks=[Grab()])
    named = dict(model.named_parameters())
    assert len(seen) == len(named)
    for name, p in named.items():
        assert seen[id(p)] == pytest.approx(1e-3 if name.startswith("backbone.") else 1e-2), name
    assert any(n.startswith("backbone.") for n in named) and any(n.startswith("heads.") for n in named)
