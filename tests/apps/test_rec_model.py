"""The recommender's models: both are the core's item model, in two configurations (the generative recommender and
SASRec), built from the settings; the popularity baseline."""

from __future__ import annotations

import pytest
import torch

from apps.recommender.model import CLOZE, NEXT, Popularity, build_model
from apps.recommender.settings import RecSettings, tiny_settings
from core.modalities import pca
from core.tasks import CoreModel


def test_the_model_and_sasrec_are_configurations_of_the_same_core_model():
    s = RecSettings()
    torch.manual_seed(0)
    gen = build_model(s.model, 20, cloze_weight=s.cloze_weight)
    sas = build_model(s.sasrec, 20)
    assert type(gen) is type(sas) is CoreModel
    assert list(gen.tasks) == [NEXT, CLOZE] and gen.task(CLOZE).weight == 0.5 and list(sas.tasks) == [NEXT]
    assert (sas.cfg.n_head, sas.cfg.item_positions, sas.cfg.item_scale) == (1, "right", True)
    assert (gen.cfg.item_positions, gen.cfg.item_scale, gen.cfg.norm) == ("left", False, "pre")
    assert gen.cfg.n_items == sas.cfg.n_items == 20 and gen.image_encoder is None and gen.series_encoder is None
    assert gen.item_head.items[0] is gen.item_encoder  # scores against the tied item table


def test_presets_are_chosen_by_a_setting_and_fields_override_them(monkeypatch):
    monkeypatch.setenv("REC_PRESET", "tiny")
    monkeypatch.setenv("REC_MODEL__N_LAYER", "3")
    s = RecSettings()
    assert (s.model.n_layer, s.model.n_embd, s.train.max_epochs, s.text_init, s.cloze_weight) == (3, 16, 6, False, 0)
    monkeypatch.delenv("REC_PRESET")
    monkeypatch.delenv("REC_MODEL__N_LAYER")
    assert (RecSettings().model.n_embd, RecSettings().train.max_epochs) == (64, 200)
    assert tiny_settings(train={"max_epochs": 2}).train.lr == 5e-3  # a field set explicitly keeps the preset's rest


def test_text_features_start_the_items_from_their_text_directions():
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(10, 384), dim=-1)
    gen = build_model(tiny_settings().model, 10, text)
    assert gen.cfg.item_text_dim == 384
    want = torch.nn.functional.normalize(pca(text, 16), dim=-1)
    got = torch.nn.functional.normalize(gen.item_encoder.emb.weight[1:].detach(), dim=-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        gen.item_encoder.set_text(torch.randn(9, 384))


def test_popularity_breaks_ties_by_index_and_never_scores_padding():
    pop = Popularity([0, 3, 5, 5, 1])
    s = pop.score(2)
    assert s.shape == (2, 5) and s[0, 0] == float("-inf")
    assert list(s[0, 1:].argsort()[::-1] + 1) == [2, 3, 1, 4]
