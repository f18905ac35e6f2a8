"""Tests for core.artifacts: a saved folder rebuilds the same model, and every kind of damage is reported clearly."""

from __future__ import annotations

import json

import pytest
import torch

from core.adapters import apply_lora, lora_layers
from core.artifacts import ArtifactError, load_artifact, read_config, save_artifact
from core.data import pad_ids
from core.tasks import CoreModel, TaskSpec
from core.tokenizer import Tokenizer

TASKS = [TaskSpec(name="intent", kind="classify", labels=("refund", "card", "transfer")),
         TaskSpec(name="shapes", kind="image_classify", labels=("round", "square"))]


@pytest.fixture
def saved(tiny_cfg, tok, tmp_path):
    """An artifact folder of a tiny model with a text and an image task, and the model it was saved from."""
    torch.manual_seed(0)
    model = CoreModel(tiny_cfg, TASKS)
    model.train()
    with torch.no_grad():  # move the BatchNorm running statistics away from their defaults
        model.image_prefix(torch.rand(4, 1, 28, 28))
    model.eval()
    path = save_artifact(tmp_path / "art", model, tok, meta={"note": "test"})
    return path, model


def _inputs(tok):
    return pad_ids(tok.encode_batch(["my card was declined", "where is my refund today"]), tok.pad_id)


def test_save_then_load_gives_identical_logits(saved, tok):
    path, model = saved
    assert {p.name for p in path.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", "heads"}
    assert sorted(p.name for p in (path / "heads").iterdir()) == ["intent.safetensors", "shapes.safetensors"]
    loaded, tok2, config = load_artifact(path)
    assert not loaded.training
    assert config["meta"] == {"note": "test"}
    assert list(loaded.tasks) == ["intent", "shapes"]
    assert loaded.task("intent").labels == ("refund", "card", "transfer")
    ids, mask = _inputs(tok)
    images = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded.classify("intent", ids, mask), model.classify("intent", ids, mask),
                                   atol=0, rtol=0)
        torch.testing.assert_close(loaded.classify_images("shapes", images), model.classify_images("shapes", images),
                                   atol=0, rtol=0)
        torch.testing.assert_close(loaded.embed(ids, mask), model.embed(ids, mask), atol=0, rtol=0)
    assert torch.equal(loaded.image_encoder.stem[1].running_mean, model.image_encoder.stem[1].running_mean)
    assert tok2.encode_batch(["my card"]) == tok.encode_batch(["my card"])


def test_save_then_load_keeps_lora_adapters(tiny_cfg, tok, tmp_path):
    torch.manual_seed(0)
    model = CoreModel(tiny_cfg, TASKS[:1])
    apply_lora(model, "intent", r=2)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B["intent"].copy_(torch.randn(layer.lora_B["intent"].shape, generator=g) * 0.1)
    model.eval()
    path = save_artifact(tmp_path / "lora", model, tok)
    assert (path / "adapters" / "intent.safetensors").is_file()
    assert read_config(path)["adapters"] == ["intent"]
    loaded, _, _ = load_artifact(path)
    assert len(lora_layers(loaded)) == len(lora_layers(model))
    ids, mask = _inputs(tok)
    with torch.no_grad():
        torch.testing.assert_close(loaded.classify("intent", ids, mask), model.classify("intent", ids, mask),
                                   atol=1e-6, rtol=0)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(ArtifactError, match="artifact folder not found"):
        load_artifact(tmp_path / "nowhere")


def test_missing_config_raises(saved):
    path, _ = saved
    (path / "config.json").unlink()
    with pytest.raises(ArtifactError, match="config.json is missing"):
        load_artifact(path)


def test_corrupt_config_raises(saved):
    path, _ = saved
    (path / "config.json").write_text('{"format": "trident-core", "version": 1, "model": {')
    with pytest.raises(ArtifactError, match=r"config\.json is corrupt"):
        load_artifact(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "something-else"}, "is not a trident-core config"),
    ({"version": 99}, "format version 99"),
    ({"model": {"n_embd": 30, "n_head": 4}}, "does not describe a valid model"),
    ({"tasks": [{"name": "x y", "kind": "classify"}]}, "does not describe a valid model"),
])
def test_invalid_config_content_raises(saved, change, message):
    path, _ = saved
    config = json.loads((path / "config.json").read_text())
    for key, value in change.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=message):
        load_artifact(path)


def test_truncated_weights_raise(saved):
    path, _ = saved
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"model\.safetensors is corrupt or not a safetensors file"):
        load_artifact(path)


def test_missing_head_file_raises(saved):
    path, _ = saved
    (path / "heads" / "intent.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"artifact file missing: .*intent\.safetensors"):
        load_artifact(path)


def test_config_with_other_width_than_weights_raises(saved):
    path, _ = saved
    config = json.loads((path / "config.json").read_text())
    config["model"]["n_embd"] = 64  # still a valid config, but the weights are 32 wide
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="do not match its config.json") as err:
        load_artifact(path)
    assert "size mismatch" in str(err.value)


def test_tokenizer_that_does_not_fit_the_model_raises(saved):
    path, _ = saved
    Tokenizer.train(["just a few other words here"], vocab_size=60, min_frequency=1).save(path / "tokenizer.json")
    with pytest.raises(ArtifactError, match="tokenizer has .* tokens but the model expects"):
        load_artifact(path)


def test_missing_tokenizer_raises(saved):
    path, _ = saved
    (path / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match="tokenizer file not found"):
        load_artifact(path)


def test_tokenizer_roundtrip_keeps_special_ids(tok, tmp_path):
    tok.save(tmp_path / "tokenizer.json")
    back = Tokenizer.load(tmp_path / "tokenizer.json")
    names = ("pad_id", "unk_id", "cls_id", "sep_id", "mask_id", "img_id", "series_id", "item_id")
    assert [getattr(back, n) for n in names] == [getattr(tok, n) for n in names] == list(range(8))
    assert back.special_ids == tok.special_ids
    assert back.vocab_size == tok.vocab_size
    text = "The card payment was declined, zzqx!"
    assert back.encode(text) == tok.encode(text)
    ids = tok.encode(text)
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert back.decode(back.encode("The card payment")) == "the card payment"  # lower-cased, specials dropped


def test_tokenizer_roundtrip_keeps_placeholder_map(tok, tmp_path):
    # a tokenizer whose [IMG] etc. live under other names (as with the pretrained vocabulary) keeps that map
    raw = json.loads(tok.hf.to_str())
    vocab = raw["model"]["vocab"]
    for i, (old, new) in enumerate([("[IMG]", "[unused0]"), ("[SER]", "[unused1]"), ("[ITEM]", "[unused2]")]):
        vocab[new] = vocab.pop(old)
        raw["added_tokens"][5 + i]["content"] = new
    (tmp_path / "src.json").write_text(json.dumps(raw))
    placeholders = {"[IMG]": "[unused0]", "[SER]": "[unused1]", "[ITEM]": "[unused2]"}
    t = Tokenizer.load(tmp_path / "src.json", placeholders=placeholders)
    assert (t.img_id, t.series_id, t.item_id) == (5, 6, 7)
    t.save(tmp_path / "tokenizer.json")
    back = Tokenizer.load(tmp_path / "tokenizer.json")  # no placeholders given: read from the file
    assert back.placeholders == placeholders
    assert (back.img_id, back.series_id, back.item_id) == (5, 6, 7)
    with pytest.raises(ValueError, match="lacks the special token"):
        Tokenizer.load(tmp_path / "src.json")  # without the map, [IMG] is missing


def test_an_artifact_of_format_1_still_loads(saved, tok):
    path, model = saved
    config = json.loads((path / "config.json").read_text())
    config["version"] = 1
    del config["tokenizer"]  # format 1 always had a tokenizer and did not say so
    (path / "config.json").write_text(json.dumps(config))
    loaded, tok2, _ = load_artifact(path)
    ids, mask = _inputs(tok)
    with torch.no_grad():
        torch.testing.assert_close(loaded.classify("intent", ids, mask), model.classify("intent", ids, mask))
    assert tok2 is not None and read_config(path)["version"] == 1


def test_an_artifact_of_an_unreadable_format_is_a_one_line_error_that_says_what_to_run(saved):
    path, _ = saved
    assert read_config(path)["version"] == 2  # what this code writes
    config = json.loads((path / "config.json").read_text())
    config["version"] = 0
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError) as err:
        load_artifact(path, retrain="trident cs train")
    assert str(err.value) == (f"{path} was written by an older Trident (format version 0, this one reads 1, 2); "
                              "retrain it with `trident cs train`")
