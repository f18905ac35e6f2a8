"""Tests for core.modalities: image preparation, the patch / series / item encoders and their input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.config import ModelConfig
from core.modalities import ImagePatchEncoder, InputError, ItemEncoder, SeriesEncoder, prepare_images


# ------------------------------------------------------------------------------------------------ prepare_images
@pytest.mark.parametrize(("shape", "want"), [
    ((28, 28), (1, 1, 28, 28)),
    ((5, 28, 28), (5, 1, 28, 28)),
    ((5, 28, 28, 3), (5, 1, 28, 28)),
    ((5, 3, 28, 28), (5, 1, 28, 28)),
    ((5, 28, 28, 4), (5, 1, 28, 28)),  # alpha dropped, then grey
    ((5, 1, 20, 30), (5, 1, 20, 30)),
])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_prepare_images_accepts_common_layouts(shape, want, dtype):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, shape).astype(np.uint8)
    if dtype is np.float32:
        x = x.astype(np.float32) / 255.0
    out = prepare_images(x, channels=1)
    assert out.shape == want
    assert out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_uint8_and_float_inputs_give_the_same_image():
    x = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16  # 0, 16, ..., 240
    a = prepare_images(x, channels=1)
    b = prepare_images(x.astype(np.float32) / 255.0, channels=1)
    torch.testing.assert_close(a, b)
    assert a[0, 0, 0, 1].item() == pytest.approx(16 / 255)


def test_rgb_to_grey_uses_601_luma():
    # pixel (100, 150, 200): (0.299*100 + 0.587*150 + 0.114*200) / 255 = (29.9 + 88.05 + 22.8) / 255 = 140.75 / 255
    img = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    img[0, 0, 0] = (100, 150, 200)
    img[0, 1, 1] = (255, 0, 0)  # pure red -> 0.299
    out = prepare_images(img, channels=1)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 0, 0].item() == pytest.approx(140.75 / 255, abs=1e-6)
    assert out[0, 0, 1, 1].item() == pytest.approx(0.299, abs=1e-6)
    assert out[0, 0, 0, 1].item() == 0.0
    # channels-first colour gives the same grey
    chw = prepare_images(img.transpose(0, 3, 1, 2), channels=1)
    torch.testing.assert_close(chw, out)


def test_grey_is_repeated_for_colour_encoder():
    img = np.full((2, 6, 6), 51, dtype=np.uint8)  # 51 / 255 = 0.2
    out = prepare_images(img, channels=3)
    assert out.shape == (2, 3, 6, 6)
    torch.testing.assert_close(out, torch.full((2, 3, 6, 6), 0.2))


def test_large_images_are_scaled_to_max_side():
    out = prepare_images(np.zeros((1, 400, 200), dtype=np.uint8), channels=1, max_side=100)
    assert out.shape == (1, 1, 100, 50)


@pytest.mark.parametrize("bad", [
    np.zeros((1, 2, 3, 28, 28), dtype=np.uint8),  # 5-D
    np.zeros((0, 28, 28), dtype=np.uint8),  # empty batch
    np.zeros((0, 28, 28), dtype=np.float32),
    np.zeros((28,), dtype=np.uint8),  # 1-D
    np.zeros((2, 5, 28, 28), dtype=np.uint8),  # 5 channels
    np.zeros((1, 1, 28), dtype=np.uint8),  # 1 pixel high
])
def test_prepare_images_rejects_bad_shapes(bad):
    with pytest.raises(InputError):
        prepare_images(bad, channels=1)


def test_prepare_images_rejects_empty_integer_batch_and_bad_nested_lists():
    # integer arrays other than uint8 go through a max() check, which must not crash on an empty batch
    with pytest.raises(InputError, match="at least one image"):
        prepare_images(np.zeros((0, 28, 28), dtype=np.int64), channels=1)
    # a plain nested list with 5 channels is a shape error too (not an AttributeError on list.shape)
    with pytest.raises(InputError, match=r"\(2, 5, 6, 6\)"):
        prepare_images(np.zeros((2, 5, 6, 6)).tolist(), channels=1)


def test_integer_images_above_one_are_read_as_0_to_255():
    out = prepare_images(np.full((2, 2), 204, dtype=np.int64), channels=1)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.8)
    binary = prepare_images(np.eye(2, dtype=np.int64), channels=1)  # values 0/1 are already in [0, 1]
    assert binary[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_prepare_images_rejects_nan():
    x = np.zeros((1, 4, 4), dtype=np.float32)
    x[0, 1, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        prepare_images(x, channels=1)


def test_prepare_images_error_is_a_value_error():
    # callers that catch ValueError keep working
    assert issubclass(InputError, ValueError)


# ------------------------------------------------------------------------------------------------ ImagePatchEncoder
def _cfg(**kw) -> ModelConfig:
    return ModelConfig.tiny(vocab_size=64, **kw)


def test_patch_encoder_gives_49_tokens_on_28x28():
    torch.manual_seed(0)
    enc = ImagePatchEncoder(_cfg()).eval()
    with torch.no_grad():
        p = enc(torch.rand(3, 1, 28, 28))
    assert p.embeds.shape == (3, 49, 32)
    assert p.mask.all() and p.mask.shape == (3, 49)
    assert (p.types == 1).all()


def test_patch_encoder_pads_other_sizes_to_the_patch_multiple():
    torch.manual_seed(0)
    enc = ImagePatchEncoder(_cfg()).eval()
    with torch.no_grad():
        p = enc(torch.rand(2, 1, 30, 20))
    n = math.ceil(30 / 4) * math.ceil(20 / 4)  # 8 * 5 = 40
    assert n == 40
    assert p.embeds.shape == (2, n, 32)
    assert torch.isfinite(p.embeds).all()


def test_colour_patch_encoder_takes_three_channels():
    torch.manual_seed(0)
    enc = ImagePatchEncoder(_cfg(image_channels=3, image_size=32)).eval()
    with torch.no_grad():
        p = enc(prepare_images(np.zeros((2, 32, 32, 3), dtype=np.uint8), channels=3))
    assert p.embeds.shape == (2, 64, 32)


# ------------------------------------------------------------------------------------------------ SeriesEncoder
def test_series_encoder_masks_all_nan_steps():
    torch.manual_seed(0)
    enc = SeriesEncoder(_cfg(series_features=3)).eval()
    x = torch.randn(2, 5, 3)
    x[0, 1] = float("nan")  # all features missing: padding
    x[1, 2, 0] = float("nan")  # one feature missing: still a real step
    with torch.no_grad():
        p = enc(x)
    assert p.embeds.shape == (2, 5, 32)
    assert p.mask.tolist() == [[True, False, True, True, True], [True] * 5]
    assert torch.isfinite(p.embeds).all()
    assert (p.types == 2).all()


def test_series_encoder_rejects_wrong_feature_count_and_long_windows():
    enc = SeriesEncoder(_cfg(series_features=3), max_steps=8)
    with pytest.raises(InputError, match=r"expected \(N, T, 3\)"):
        enc(torch.randn(2, 5, 4))
    with pytest.raises(InputError):
        enc(torch.randn(5, 3))
    with pytest.raises(InputError, match="at most 8"):
        enc(torch.randn(1, 9, 3))


# ------------------------------------------------------------------------------------------------ ItemEncoder
def test_item_encoder_pads_id_zero_and_rejects_out_of_range_ids():
    torch.manual_seed(0)
    enc = ItemEncoder(_cfg(n_items=10))
    p = enc(torch.tensor([[3, 10, 0]]))
    assert p.mask.tolist() == [[True, True, False]]
    assert (p.types == 3).all()
    assert torch.equal(p.embeds[0, 2], torch.zeros(32))
    with pytest.raises(InputError, match=r"0\.\.10"):
        enc(torch.tensor([[11]]))
    with pytest.raises(InputError):
        enc(torch.tensor([[-1]]))


def test_item_encoder_needs_items():
    with pytest.raises(ValueError, match="n_items > 0"):
        ItemEncoder(_cfg())


def test_init_from_vectors_checks_shape_and_keeps_directions():
    torch.manual_seed(0)
    enc = ItemEncoder(_cfg(n_items=4))
    norm_before = enc.emb.weight[1:].norm(dim=-1).mean().item()
    with pytest.raises(ValueError, match=r"expected \(4, 32\)"):
        enc.init_from_vectors(torch.randn(5, 32))
    v = torch.randn(4, 32)
    enc.init_from_vectors(v)
    w = enc.emb.weight.detach()
    assert torch.equal(w[0], torch.zeros(32))  # padding row untouched
    # item i (1-based) points along vectors[i-1], every row at the old mean norm
    torch.testing.assert_close(torch.nn.functional.cosine_similarity(w[1:], v), torch.ones(4))
    torch.testing.assert_close(w[1:].norm(dim=-1), torch.full((4,), norm_before))


def test_next_item_head_scores_every_item_from_the_tied_table():
    from core.config import ModelConfig
    from core.heads import NextItemHead
    from core.model import Backbone

    cfg = ModelConfig.tiny(vocab_size=50, n_items=7)
    enc = ItemEncoder(cfg)
    head = NextItemHead(enc)
    items = torch.tensor([[1, 2, 3, 0], [7, 6, 0, 0]])
    hidden = Backbone(cfg)(None, mode="causal", prefix=enc(items))
    scores = head(hidden)
    assert scores.shape == (2, 4, 8)  # column 0 is padding
    assert not list(head.parameters())  # the item table is not copied
    torch.testing.assert_close(scores, hidden @ enc.emb.weight.t())
    with torch.no_grad():
        enc.emb.weight[3] += 1.0  # the head reads the same table
    assert not torch.allclose(head(hidden)[..., 3], scores[..., 3])


def test_item_text_features_start_the_table_or_add_to_it_and_place_cold_items():
    from core.config import ModelConfig
    from core.modalities import pca

    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(10, 24), dim=-1)
    enc = ItemEncoder(_cfg(n_items=10, item_text_dim=24))
    enc.set_text(text)
    want = torch.nn.functional.normalize(pca(text, 32), dim=-1)
    got = torch.nn.functional.normalize(enc.emb.weight[1:].detach(), dim=-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert enc.table() is enc.emb.weight and enc.cold_vectors(text).shape == (10, 32)
    with pytest.raises(ValueError, match="expected"):
        enc.set_text(torch.randn(9, 24))
    add = ItemEncoder(ModelConfig.tiny(vocab_size=50, n_items=10, item_text_dim=24, item_text_mode="add"))
    add.set_text(text)
    torch.testing.assert_close(add.table()[1:] - add.emb.weight[1:], add.cold_vectors(text))


def test_item_scale_and_hidden_items():
    enc = ItemEncoder(_cfg(n_items=5, item_scale=True))
    items = torch.tensor([[0, 1, 2]])
    hidden = torch.tensor([[False, True, False]])
    vec = torch.full((32,), 0.5)
    x = enc(items, hidden, vec).embeds
    torch.testing.assert_close(x[0, 2], enc.emb.weight[2] * 32 ** 0.5)
    torch.testing.assert_close(x[0, 1], vec * 32 ** 0.5)
