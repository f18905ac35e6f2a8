"""Recipes on the real data sets (skipped when ../shared/datasets is absent) and the CLI's evaluation commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.cli import main
from apps.common.settings import CoreSettings
from core.config import TrainConfig
from core.recipes import banking77_task, fashion_splits, phrasebank_task, train_image_classifier

DATA = CoreSettings().data_dir
needs_data = pytest.mark.skipif(not (DATA / "banking77").is_dir(), reason=f"data sets not found at {DATA}")


@needs_data
def test_banking77_split_keeps_test_dev_apart_and_is_stratified():
    t = banking77_task(DATA)
    assert len(t.labels) == 77
    assert len(t.test[0]) == 1540  # test_dev.csv, 20 per intent
    assert len(t.train[0]) + len(t.val[0]) == t.source["n"]
    assert not set(t.train[0]) & set(t.val[0])
    # every intent is in the validation split, in proportion (10% of 35..187 examples -> 3..19)
    counts = np.bincount(t.val[1], minlength=77)
    assert counts.min() >= 3 and counts.max() <= 19


@needs_data
def test_phrasebank_split_is_disjoint_seeded_and_70_10_20():
    a, b = phrasebank_task(DATA, seed=13), phrasebank_task(DATA, seed=13)
    assert a.test == b.test
    assert a.labels == ("negative", "neutral", "positive")
    n = a.source["n"]
    assert abs(len(a.test[0]) / n - 0.2) < 0.01 and abs(len(a.val[0]) / n - 0.1) < 0.01
    sets = [set(a.train[0]), set(a.val[0]), set(a.test[0])]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert phrasebank_task(DATA, seed=14).test != a.test


@needs_data
def test_fashion_validation_is_carved_from_the_shared_file_only():
    s = fashion_splits(DATA, extra_train=None)
    assert len(s.val_y) == 2000 and len(s.train_y) == 6000
    assert np.bincount(s.val_y).tolist() == [200] * 10
    # no validation image is also a training image
    train_keys = {x.tobytes() for x in s.train_x}
    assert not any(x.tobytes() in train_keys for x in s.val_x)


@needs_data
@pytest.mark.slow
def test_eval_images_cli_prints_accuracy_json(tmp_path, capsys):
    cfg = TrainConfig.quick(max_epochs=3, batch_size=64, lr=3e-3, head_lr=3e-3)
    art = train_image_classifier(DATA, tmp_path / "img", cfg, preset="tiny", max_train=2048)
    x = np.load(DATA / "fashion_mnist" / "fashion_mnist_test_8000.npz")
    data = tmp_path / "few.npz"
    np.savez(data, images=x["images"][:300], labels=x["labels"][:300])
    capsys.readouterr()
    assert main(["core", "eval-images", "--data", str(data), "--artifact", str(art), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 300
    assert out["accuracy"] > 0.3  # a tiny model after 3 short epochs is far above chance (0.1)
    # a warm restart continues from those weights: one more short epoch, and the artifact says where it came from
    gentle = cfg.model_copy(update={"max_epochs": 1, "lr": 3e-4, "head_lr": 3e-4})  # a warm restart: a small lr
    more = train_image_classifier(DATA, tmp_path / "img2", gentle, max_train=512, init_artifact=art)
    capsys.readouterr()  # the training's own output
    assert main(["core", "eval-images", "--data", str(data), "--artifact", str(more), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] > 0.25 and again["accuracy"] >= out["accuracy"] - 0.15  # it kept what it had learned
    assert json.loads((more / "config.json").read_text())["meta"]["init_artifact"] == str(art)


def test_eval_images_rejects_npz_without_labels(tmp_path, capsys):
    data = tmp_path / "bad.npz"
    np.savez(data, images=np.zeros((2, 28, 28), np.uint8))
    assert main(["core", "eval-images", "--data", str(data), "--artifact", str(tmp_path)]) == 2
    assert "needs arrays 'images' and 'labels'" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 a truncated zip", bytes(range(256))])
def test_eval_images_rejects_an_empty_truncated_or_binary_npz_in_one_line(tmp_path, capsys, content):
    data = tmp_path / "bad.npz"
    data.write_bytes(content)
    assert main(["core", "eval-images", "--data", str(data), "--artifact", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {data} is not a readable npz file") and err.count("\n") == 1


def test_cli_finetune_from_a_random_preset_trains_its_tokenizer_on_the_training_rows(tmp_path, capsys):
    from apps.common.settings import REPO_ROOT
    from core.artifacts import load_artifact

    out = tmp_path / "tiny"
    assert main(["core", "finetune", "--task", f"intents=csv:{REPO_ROOT / 'samples' / 'intents.csv'}",
                 "--init-from", "tiny", "--epochs", "1", "--batch-size", "16", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout holds the report alone (the progress bar is on stderr)
    assert report["artifact"] == str(out) and report["steps"] == 4  # 56 training rows of 80, batches of 16
    model, tok, _ = load_artifact(out)
    assert list(model.tasks) == ["intents"] and tok.vocab_size < 1000  # its own small vocabulary, not MiniLM's


def test_finetune_starts_from_a_pretrained_artifact_and_refuses_what_it_cannot_start_from(tmp_path, capsys):
    import torch

    from apps.common.settings import REPO_ROOT
    from core.adapters import apply_lora
    from core.artifacts import load_artifact, save_artifact
    from core.recipes import new_text_model

    intents = REPO_ROOT / "samples" / "intents.csv"
    pre = tmp_path / "pre"
    assert main(["core", "pretrain", "--corpus", str(intents), "--init-from", "tiny", "--epochs", "1",
                 "--batch-size", "16", "--out", str(pre), "--json"]) == 0
    capsys.readouterr()
    pre_model, pre_tok, _ = load_artifact(pre)
    model, tok = new_text_model(pre)  # a Path
    assert model.tasks == {} and len(model.heads) == 0 and tok.vocab_size == pre_tok.vocab_size
    for (name, a), (_, b) in zip(pre_model.backbone.state_dict().items(), model.backbone.state_dict().items()):
        assert torch.equal(a, b), name
    assert model.training  # ready to train, unlike load_artifact's eval-mode model

    out = tmp_path / "ft"
    assert main(["core", "finetune", "--task", f"intents=csv:{intents}", "--init-from", str(pre), "--epochs", "1",
                 "--batch-size", "16", "--out", str(out), "--json"]) == 0
    ft_model, ft_tok, config = load_artifact(out)
    assert list(ft_model.tasks) == ["intents"] and config["meta"]["init_from"] == str(pre)
    assert ft_tok.vocab_size == pre_tok.vocab_size  # the pretrained tokenizer, not a new one
    moved = [n for (n, a), (_, b) in zip(pre_model.backbone.state_dict().items(),
                                         ft_model.backbone.state_dict().items()) if not torch.equal(a, b)]
    assert moved  # it trained from there

    with pytest.raises(ValueError, match="unknown init_from"):
        new_text_model(str(tmp_path / "missing"))
    apply_lora(pre_model.backbone, "extra", r=2)
    save_artifact(tmp_path / "with-lora", pre_model, pre_tok)
    with pytest.raises(ValueError, match="LoRA adapters"):
        new_text_model(str(tmp_path / "with-lora"))
