"""Tests for core.adapters: LoRA wrapping, freezing, switching, saving / loading and merging."""

from __future__ import annotations

import pytest
import torch

from core.adapters import (
    LoRALinear,
    adapter_names,
    apply_lora,
    load_adapter,
    lora_layers,
    merge_adapter,
    remove_adapter,
    save_adapter,
    set_adapter,
    train_only_adapters,
)
from core.tasks import CoreModel, TaskSpec

TASK = TaskSpec(name="intent", kind="classify", labels=("a", "b", "c"))


def _model(cfg, seed: int = 0) -> CoreModel:
    torch.manual_seed(seed)
    return CoreModel(cfg, [TASK]).eval()


def _inputs(cfg):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(8, cfg.vocab_size, (3, 7), generator=g)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[2, 5:] = False
    return ids, mask


def _out(model, ids, mask):
    with torch.no_grad():
        return model.backbone(ids, mask), model.classify("intent", ids, mask)


def _randomise(model, name: str, seed: int = 2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B[name].copy_(torch.randn(layer.lora_B[name].shape, generator=g) * 0.1)


def test_apply_lora_wraps_every_target_and_leaves_outputs_unchanged_at_init(tiny_cfg):
    model = _model(tiny_cfg)
    ids, mask = _inputs(tiny_cfg)
    h0, c0 = _out(model, ids, mask)
    n = apply_lora(model, "intent", r=4)
    # 6 Linear layers per block (query, key, value, proj, fc, fc_proj) x 2 blocks
    assert n == 6 * tiny_cfg.n_layer == len(lora_layers(model))
    assert adapter_names(model) == ["intent"]
    layer = model.backbone.h[0].attn.query
    assert isinstance(layer, LoRALinear)
    assert layer.lora_A["intent"].shape == (4, tiny_cfg.n_embd)
    assert layer.lora_B["intent"].shape == (tiny_cfg.n_embd, 4)
    assert layer.scale["intent"] == 16.0 / 4
    model.eval()
    h1, c1 = _out(model, ids, mask)
    torch.testing.assert_close(h1, h0, atol=0, rtol=0)  # B = 0: exactly the base
    torch.testing.assert_close(c1, c0, atol=0, rtol=0)


def test_lora_layer_adds_scaled_low_rank_update():
    torch.manual_seed(0)
    layer = LoRALinear(torch.nn.Linear(3, 2))
    layer.add("x", r=1, alpha=2.0, dropout=0.0)
    with torch.no_grad():
        layer.lora_A["x"].copy_(torch.tensor([[1.0, 0.0, 2.0]]))
        layer.lora_B["x"].copy_(torch.tensor([[1.0], [-1.0]]))
    x = torch.tensor([[1.0, 5.0, 1.0]])
    # A x = 1 + 2 = 3; B (A x) = (3, -3); scale alpha / r = 2 -> (6, -6)
    torch.testing.assert_close(layer(x) - layer.base(x), torch.tensor([[6.0, -6.0]]))
    torch.testing.assert_close(layer.delta("x"), torch.tensor([[2.0, 0.0, 4.0], [-2.0, 0.0, -4.0]]))


def test_changing_lora_b_changes_the_output(tiny_cfg):
    model = _model(tiny_cfg)
    ids, mask = _inputs(tiny_cfg)
    h0, _ = _out(model, ids, mask)
    apply_lora(model, "intent")
    _randomise(model, "intent")
    model.eval()
    h1, _ = _out(model, ids, mask)
    assert not torch.allclose(h1, h0, atol=1e-3)


def test_train_only_adapters_leaves_only_the_lora_matrices_and_kept_heads_trainable(tiny_cfg):
    model = _model(tiny_cfg)
    apply_lora(model, "intent", r=2)
    apply_lora(model, "other", r=2)
    n_train = train_only_adapters(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.endswith(("lora_A.intent", "lora_B.intent", "lora_A.other", "lora_B.other")) for n in trainable)
    assert len(trainable) == 2 * 2 * 6 * tiny_cfg.n_layer
    assert n_train == sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    # per wrapped layer and adapter: r * (in + out); four C->C layers, C->n_inner and n_inner->C
    C, I = tiny_cfg.n_embd, tiny_cfg.n_inner
    assert n_train == 2 * tiny_cfg.n_layer * 2 * (4 * (C + C) + (C + I) + (I + C))
    with_head = train_only_adapters(model, keep_trainable=("heads.intent.",))
    assert with_head > n_train
    assert all(n.startswith("heads.intent.") or ".lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    # a backward pass gives gradients to the active adapter only (apply_lora left "other" active: switch first)
    set_adapter(model, "intent")
    model.train()
    ids, mask = _inputs(tiny_cfg)
    model.classify("intent", ids, mask).sum().backward()
    assert model.backbone.h[0].attn.query.base.weight.grad is None
    q = model.backbone.h[0].attn.query
    assert q.lora_A["other"].grad is None
    assert torch.count_nonzero(q.lora_A["intent"].grad) == 0  # B = 0: dL/dA = B^T (...) is zero at the start
    assert torch.count_nonzero(q.lora_B["intent"].grad) > 0


def test_save_and_load_adapter_roundtrip_in_fresh_model(tiny_cfg, tmp_path):
    model = _model(tiny_cfg)
    apply_lora(model, "intent", r=4, alpha=8.0)
    _randomise(model, "intent")
    model.eval()
    ids, mask = _inputs(tiny_cfg)
    want, _ = _out(model, ids, mask)
    path = tmp_path / "intent.safetensors"
    save_adapter(model, "intent", path)
    fresh = _model(tiny_cfg)  # same seed: same base weights, no adapter
    assert not lora_layers(fresh)
    load_adapter(fresh, "intent", path)
    fresh.eval()
    assert adapter_names(fresh) == ["intent"]
    assert fresh.backbone.h[1].attn.value.scale["intent"] == 8.0 / 4
    got, _ = _out(fresh, ids, mask)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_load_adapter_rejects_a_model_of_another_shape(tiny_cfg, tmp_path):
    model = _model(tiny_cfg)
    apply_lora(model, "intent")
    save_adapter(model, "intent", tmp_path / "a.safetensors")
    wider = _model(tiny_cfg.model_copy(update={"n_embd": 64}))
    with pytest.raises(ValueError, match="does not fit"):
        load_adapter(wider, "intent", tmp_path / "a.safetensors")


def test_merge_adapter_equals_unmerged_output_and_unwraps(tiny_cfg):
    model = _model(tiny_cfg)
    apply_lora(model, "intent", r=4)
    _randomise(model, "intent")
    model.eval()
    ids, mask = _inputs(tiny_cfg)
    want_h, want_c = _out(model, ids, mask)
    merge_adapter(model, "intent")
    assert not lora_layers(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert type(model.backbone.h[0].attn.query) is torch.nn.Linear
    got_h, got_c = _out(model, ids, mask)
    torch.testing.assert_close(got_h, want_h, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_c, want_c, atol=1e-5, rtol=0)


def test_set_adapter_switches_between_adapters_and_base(tiny_cfg):
    model = _model(tiny_cfg)
    ids, mask = _inputs(tiny_cfg)
    base, _ = _out(model, ids, mask)
    apply_lora(model, "a")
    apply_lora(model, "b")
    _randomise(model, "a", seed=3)
    _randomise(model, "b", seed=4)
    model.eval()
    assert adapter_names(model) == ["a", "b"]
    set_adapter(model, "a")
    out_a, _ = _out(model, ids, mask)
    set_adapter(model, "b")
    out_b, _ = _out(model, ids, mask)
    set_adapter(model, None)
    out_none, _ = _out(model, ids, mask)
    torch.testing.assert_close(out_none, base, atol=0, rtol=0)
    assert not torch.allclose(out_a, out_b, atol=1e-3)
    set_adapter(model, "a")
    torch.testing.assert_close(_out(model, ids, mask)[0], out_a, atol=0, rtol=0)


def test_unknown_adapter_and_bad_requests_raise(tiny_cfg):
    model = _model(tiny_cfg)
    apply_lora(model, "a")
    with pytest.raises(KeyError, match="unknown adapter 'nope'"):
        set_adapter(model, "nope")
    with pytest.raises(ValueError, match="already exists"):
        apply_lora(model, "a")
    with pytest.raises(ValueError, match="rank"):
        apply_lora(model, "c", r=0)
    with pytest.raises(ValueError, match="no Linear layer"):
        apply_lora(model, "d", targets=("nothing_here",))
    with pytest.raises(KeyError):
        set_adapter(model, "d")


def test_removing_an_adapter_leaves_the_other_and_the_base_exactly(tiny_cfg):
    model = _model(tiny_cfg)
    ids, mask = _inputs(tiny_cfg)
    base, _ = _out(model, ids, mask)
    for name in ("a", "b"):
        apply_lora(model.backbone, name, r=2, alpha=4)
        with torch.no_grad():
            for _, layer in lora_layers(model):
                layer.lora_B[name].normal_()  # a trained adapter moves the outputs
    model.eval()  # the adapters' dropout too
    set_adapter(model.backbone, "b")
    with_b, _ = _out(model, ids, mask)
    assert not torch.allclose(with_b, base, atol=1e-4)
    set_adapter(model.backbone, "a")
    remove_adapter(model.backbone, "a")
    assert adapter_names(model.backbone) == ["b"]
    torch.testing.assert_close(_out(model, ids, mask)[0], base)  # "a" was active: the base alone now runs
    set_adapter(model.backbone, "b")
    torch.testing.assert_close(_out(model, ids, mask)[0], with_b)
    remove_adapter(model.backbone, "b")
    assert not lora_layers(model) and adapter_names(model.backbone) == []  # plain Linear layers again
    torch.testing.assert_close(_out(model, ids, mask)[0], base)
    with pytest.raises(KeyError, match="no adapter 'b'"):
        remove_adapter(model.backbone, "b")
