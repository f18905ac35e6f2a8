"""Tests for core.model: attention masks, padding, positions, the KV cache, prefixes and config checks."""

from __future__ import annotations

import pytest
import torch

from core.config import ModelConfig
from core.model import Backbone, Prefix, build_attn_mask
from core.tasks import CoreModel

T, F = True, False


def _model(cfg: ModelConfig, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    return Backbone(cfg).eval()


def _ids(n: int, seed: int = 1, vocab: int = 100, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(8, vocab, (batch, n), generator=g)


# ------------------------------------------------------------------------------------------------ build_attn_mask
def test_bidirectional_mask_hides_padding_keys_but_pad_query_sees_itself():
    # S = 4, last position is padding: real queries see the three real keys; the pad query sees them and itself.
    key_mask = torch.tensor([[T, T, T, F]])
    got = build_attn_mask("bidirectional", key_mask, 4)
    want = torch.tensor([[T, T, T, F],
                         [T, T, T, F],
                         [T, T, T, F],
                         [T, T, T, T]])
    assert got.shape == (1, 1, 4, 4)
    assert torch.equal(got[0, 0], want)


def test_causal_mask_is_lower_triangular_over_real_keys():
    key_mask = torch.tensor([[T, T, T, F]])
    got = build_attn_mask("causal", key_mask, 4)
    want = torch.tensor([[T, F, F, F],
                         [T, T, F, F],
                         [T, T, T, F],
                         [T, T, T, T]])  # the pad query sees the real keys before it and itself
    assert torch.equal(got[0, 0], want)


def test_prefix_mask_is_bidirectional_inside_prefix_then_causal_per_row():
    key_mask = torch.ones(2, 4, dtype=torch.bool)
    got = build_attn_mask("prefix", key_mask, 4, prefix_len=torch.tensor([2, 3]))
    want_pl2 = torch.tensor([[T, T, F, F],
                             [T, T, F, F],
                             [T, T, T, F],
                             [T, T, T, T]])
    want_pl3 = torch.tensor([[T, T, T, F],
                             [T, T, T, F],
                             [T, T, T, F],
                             [T, T, T, T]])
    assert got.shape == (2, 1, 4, 4)
    assert torch.equal(got[0, 0], want_pl2)
    assert torch.equal(got[1, 0], want_pl3)


def test_mask_for_cached_queries_uses_last_positions_and_left_padding():
    # one new query (absolute position 3) against 4 keys, the first of them left padding
    key_mask = torch.tensor([[F, T, T, T]])
    got = build_attn_mask("causal", key_mask, 1)
    assert got.shape == (1, 1, 1, 4)
    assert torch.equal(got[0, 0], torch.tensor([[F, T, T, T]]))


def test_mask_rejects_unknown_mode_and_prefix_without_length():
    key_mask = torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="unknown attention mode"):
        build_attn_mask("sideways", key_mask, 3)
    with pytest.raises(ValueError, match="prefix_len"):
        build_attn_mask("prefix", key_mask, 3)


# ------------------------------------------------------------------------------------------------ attention modes
def test_causal_output_at_t_ignores_later_tokens(tiny_cfg):
    m = _model(tiny_cfg)
    a = _ids(8, seed=1, vocab=tiny_cfg.vocab_size)
    b = a.clone()
    b[:, 5:] = _ids(3, seed=2, vocab=tiny_cfg.vocab_size)
    assert not torch.equal(a[:, 5:], b[:, 5:])
    with torch.no_grad():
        ha, hb = m(a, mode="causal"), m(b, mode="causal")
    torch.testing.assert_close(ha[:, :5], hb[:, :5], atol=1e-6, rtol=0)
    assert not torch.allclose(ha[:, 5:], hb[:, 5:], atol=1e-4)
    # bidirectionally, the same change reaches the first positions too
    with torch.no_grad():
        da, db = m(a), m(b)
    assert not torch.allclose(da[:, :5], db[:, :5], atol=1e-4)


def test_prefix_positions_see_each_other_but_not_later_ones(tiny_cfg):
    m = _model(tiny_cfg)
    a = _ids(8, seed=3, vocab=tiny_cfg.vocab_size)
    pl = torch.tensor([4])

    def run(x):
        with torch.no_grad():
            return m(x, mode="prefix", prefix_len=pl)

    ha = run(a)
    later = a.clone()
    later[:, 6] = (a[:, 6] + 1 - 8) % (tiny_cfg.vocab_size - 8) + 8  # change a token after the prefix
    hl = run(later)
    torch.testing.assert_close(ha[:, :6], hl[:, :6], atol=1e-6, rtol=0)
    inside = a.clone()
    inside[:, 3] = (a[:, 3] + 1 - 8) % (tiny_cfg.vocab_size - 8) + 8  # change the last prefix token
    hi = run(inside)
    # position 0 sees position 3 (both in the prefix) ...
    assert not torch.allclose(ha[:, 0], hi[:, 0], atol=1e-4)
    # ... which causal attention would not allow
    with torch.no_grad():
        ca, ci = m(a, mode="causal"), m(inside, mode="causal")
    torch.testing.assert_close(ca[:, :3], ci[:, :3], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------ padding, positions
@pytest.mark.parametrize("mode", ["bidirectional", "causal"])
def test_right_padding_leaves_real_token_states_unchanged(tiny_cfg, mode):
    m = _model(tiny_cfg)
    x = _ids(5, seed=4, vocab=tiny_cfg.vocab_size)
    padded = torch.cat([x, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.tensor([[T] * 5 + [F] * 3])
    with torch.no_grad():
        alone = m(x, mode=mode)
        pad = m(padded, mask, mode=mode)
    assert pad.shape == (1, 8, tiny_cfg.n_embd)
    torch.testing.assert_close(pad[:, :5], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["bidirectional", "causal"])
def test_left_padding_counts_positions_from_first_real_token(tiny_cfg, mode):
    m = _model(tiny_cfg)
    x = _ids(5, seed=5, vocab=tiny_cfg.vocab_size)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], 1)
    mask = torch.tensor([[F] * 3 + [T] * 5])
    with torch.no_grad():
        alone = m(x, mode=mode)
        pad = m(padded, mask, mode=mode)
    torch.testing.assert_close(pad[:, 3:], alone, atol=1e-5, rtol=0)
    assert torch.isfinite(pad).all()  # pad rows see themselves: no empty softmax


def test_position_embeddings_matter(tiny_cfg):
    # The same tokens in another order give other states (the model is not a bag of words).
    m = _model(tiny_cfg)
    x = _ids(6, seed=6, vocab=tiny_cfg.vocab_size)
    with torch.no_grad():
        h = m(x)
        hr = m(x.flip(1))
    assert not torch.allclose(h.mean(1), hr.mean(1), atol=1e-4)


# ------------------------------------------------------------------------------------------------ KV cache
def test_kv_cache_decoding_matches_full_recompute(tiny_cfg):
    m = _model(tiny_cfg)
    x = _ids(10, seed=7, vocab=tiny_cfg.vocab_size, batch=2)
    with torch.no_grad():
        full = m(x, mode="causal")
        h, cache = m(x[:, :4], mode="causal", use_cache=True)
        steps = [h]
        for t in range(4, 10):
            h, cache = m(x[:, t:t + 1], torch.ones(2, t + 1, dtype=torch.bool), mode="causal", past_kv=cache,
                         use_cache=True)
            steps.append(h)
    assert len(cache) == tiny_cfg.n_layer
    assert cache[0][0].shape == (2, tiny_cfg.n_head, 10, tiny_cfg.head_size)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_kv_cache_with_left_padded_prompt_matches_unpadded(tiny_cfg):
    m = _model(tiny_cfg)
    x = _ids(6, seed=8, vocab=tiny_cfg.vocab_size)
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), x[:, :3]], 1)
    mask = torch.tensor([[F, F, T, T, T]])
    with torch.no_grad():
        full = m(x, mode="causal")
        _, cache = m(padded, mask, mode="causal", use_cache=True)
        outs = []
        for t in range(3, 6):
            mask = torch.cat([mask, torch.ones(1, 1, dtype=torch.bool)], 1)
            h, cache = m(x[:, t:t + 1], mask, mode="causal", past_kv=cache, use_cache=True)
            outs.append(h)
    torch.testing.assert_close(torch.cat(outs, 1), full[:, 3:], atol=1e-5, rtol=0)


def test_cache_mask_of_wrong_length_raises(tiny_cfg):
    m = _model(tiny_cfg)
    x = _ids(4, seed=9, vocab=tiny_cfg.vocab_size)
    with torch.no_grad():
        _, cache = m(x, mode="causal", use_cache=True)
        with pytest.raises(ValueError, match="expected 5"):
            m(x[:, :1], torch.ones(1, 4, dtype=torch.bool), mode="causal", past_kv=cache)


# ------------------------------------------------------------------------------------------------ prefixes
def test_image_and_series_prefixes_go_before_text(tiny_cfg):
    torch.manual_seed(0)
    model = CoreModel(tiny_cfg).eval()
    images = torch.rand(2, 1, 28, 28)
    series = torch.randn(2, 6, tiny_cfg.series_features)
    ids = _ids(5, seed=10, vocab=tiny_cfg.vocab_size, batch=2)
    with torch.no_grad():
        img = model.image_prefix(images)
        ser = model.series_encoder(series)
        assert len(img) == 49 and len(ser) == 6
        h = model.backbone(ids, prefix=img)
        assert h.shape == (2, 49 + 5, tiny_cfg.n_embd)
        both = Prefix.cat([img, ser])
        assert len(both) == 55
        assert both.types[0, 0] == 1 and both.types[0, -1] == 2  # image then series modality ids
        hb = model.backbone(ids, prefix=both)
        assert hb.shape == (2, 55 + 5, tiny_cfg.n_embd)
        # the prefix alone (no text) is a sequence too
        assert model.backbone(None, prefix=img).shape == (2, 49, tiny_cfg.n_embd)
        # in prefix mode the default bidirectional span is the prefix: its states do not depend on the text
        other = _ids(5, seed=11, vocab=tiny_cfg.vocab_size, batch=2)
        p1 = model.backbone(ids, mode="prefix", prefix=img)
        p2 = model.backbone(other, mode="prefix", prefix=img)
    torch.testing.assert_close(p1[:, :49], p2[:, :49], atol=1e-6, rtol=0)
    assert not torch.allclose(p1[:, 49:], p2[:, 49:], atol=1e-4)


def test_masked_prefix_positions_are_ignored(tiny_cfg):
    # a series step that is all NaN is padding: the text's states match a window without that step at the end
    torch.manual_seed(0)
    model = CoreModel(tiny_cfg).eval()
    series = torch.randn(1, 4, tiny_cfg.series_features)
    with_nan = torch.cat([series, torch.full((1, 1, tiny_cfg.series_features), float("nan"))], 1)
    ids = _ids(5, seed=12, vocab=tiny_cfg.vocab_size)
    with torch.no_grad():
        a = model.backbone(ids, prefix=model.series_encoder(series))
        b = model.backbone(ids, prefix=model.series_encoder(with_nan))
    torch.testing.assert_close(b[:, 5:], a[:, 4:], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ limits and config
def test_sequence_longer_than_block_size_raises(tiny_cfg):
    m = _model(tiny_cfg)
    assert tiny_cfg.block_size == 128
    m(_ids(128, vocab=tiny_cfg.vocab_size))  # exactly full is fine
    with pytest.raises(ValueError, match="exceeds block_size=128"):
        m(_ids(129, vocab=tiny_cfg.vocab_size))
    prefix = Prefix(torch.zeros(1, 100, tiny_cfg.n_embd), torch.ones(1, 100, dtype=torch.bool),
                    torch.ones(1, 100, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds block_size"):
        m(_ids(29, vocab=tiny_cfg.vocab_size), prefix=prefix)


def test_nothing_to_encode_raises(tiny_cfg):
    with pytest.raises(ValueError, match="nothing to encode"):
        _model(tiny_cfg)(None)


def test_config_rejects_n_embd_not_divisible_by_n_head():
    with pytest.raises(ValueError, match="divisible by n_head=4"):
        ModelConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ModelConfig(image_size=30, patch_size=4)
    assert ModelConfig(n_embd=32, n_head=4).head_size == 8


def test_config_is_frozen_and_forbids_unknown_fields():
    cfg = ModelConfig.tiny()
    with pytest.raises(ValueError):
        cfg.n_layer = 3
    with pytest.raises(ValueError):
        ModelConfig(n_layers=3)


def test_presets_and_unknown_preset():
    assert ModelConfig.preset("tiny", vocab_size=100).n_layer == 2
    assert ModelConfig.preset("minilm") == ModelConfig.base()
    with pytest.raises(ValueError, match="unknown model preset 'nope'"):
        ModelConfig.preset("nope")


def test_explicit_positions_replace_the_left_count_and_are_checked():
    torch.manual_seed(0)
    bb = Backbone(ModelConfig(vocab_size=50, n_layer=1, n_head=2, n_embd=16, n_inner=32, block_size=8)).eval()
    idx = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        default = bb(idx, mode="causal")
        same = bb(idx, mode="causal", positions=torch.tensor([[0, 1, 2]]))
        shifted = bb(idx, mode="causal", positions=torch.tensor([[5, 6, 7]]))
    torch.testing.assert_close(default, same)
    assert not torch.allclose(default, shifted)
    with pytest.raises(ValueError, match="positions must lie"):
        bb(idx, positions=torch.tensor([[6, 7, 8]]))
    with pytest.raises(ValueError, match="positions of shape"):
        bb(idx, positions=torch.tensor([[0, 1]]))


def test_pre_layernorm_blocks_change_the_computation_and_add_a_final_norm():
    torch.manual_seed(0)
    kw = dict(vocab_size=50, n_layer=2, n_head=2, n_embd=16, n_inner=32, block_size=8, dropout=0.0, attn_dropout=0.0)
    post, pre = Backbone(ModelConfig(**kw)).eval(), Backbone(ModelConfig(**kw, norm="pre")).eval()
    assert post.ln_f is None and pre.ln_f is not None
    missing = pre.load_state_dict(post.state_dict(), strict=False).missing_keys
    assert missing == ["ln_f.weight", "ln_f.bias"]  # the same tensors otherwise
    idx = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        a, b = post(idx, mode="causal"), pre(idx, mode="causal")
    assert not torch.allclose(a, b)
    # the final LayerNorm: every position normalised (zero mean, unit variance before its affine part)
    torch.testing.assert_close(b.mean(-1), torch.zeros(1, 4), atol=1e-5, rtol=0)
    with torch.no_grad():  # causal: a later token does not change earlier positions in either mode
        b2 = pre(torch.tensor([[5, 6, 7, 9]]), mode="causal")
    torch.testing.assert_close(b[:, :3], b2[:, :3])
