"""Presets by name: each app's settings take their defaults from a named preset, and whatever is set explicitly (a
keyword, a flag, an environment variable) beats the preset field by field, however deep it sits."""

import os

import pytest
from pydantic import ValidationError

from apps.customer_service.settings import CSSettings
from apps.finance_sentiment.settings import FinSettings
from apps.recommender.settings import RecSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for prefix in ("CS_", "FIN_", "REC_"):
        for name in [n for n in os.environ if n.startswith(prefix)]:
            monkeypatch.delenv(name)
    return monkeypatch


def test_a_preset_replaces_the_defaults_of_every_training_it_names():
    default, demo = CSSettings(), CSSettings(preset="demo")
    assert (default.train.intents.max_epochs, default.train.lora_r) == (3, 16)
    assert (demo.train.intents.max_epochs, demo.train.intents.max_length, demo.train.lora_r) == (2, 32, 8)
    assert demo.train.intents_config().label_smoothing == 0.0
    assert demo.train.retrieval_config().max_epochs == 1
    assert demo.train.intents_full == default.train.intents_full  # a training the preset leaves out keeps its own


def test_an_environment_variable_beats_the_preset_and_keeps_its_siblings(clean_env):
    clean_env.setenv("CS_TRAIN__INTENTS__LR", "0.02")
    s = CSSettings(preset="demo-sample")
    assert s.train.intents.lr == 0.02
    assert (s.train.intents.max_epochs, s.train.intents.batch_size) == (4, 16)  # still the preset's


def test_the_preset_can_come_from_the_environment(clean_env):
    clean_env.setenv("FIN_PRESET", "demo")
    assert FinSettings().train.config(soft=False).max_epochs == 1
    clean_env.setenv("REC_PRESET", "tiny")
    assert RecSettings().model.n_embd == 16


def test_a_keyword_beats_the_preset_and_an_object_is_taken_whole():
    s = FinSettings(preset="demo", train={"hard": {"max_epochs": 7}})
    assert s.train.hard.max_epochs == 7 and s.train.hard.max_length == 64
    whole = FinSettings().train
    assert FinSettings(preset="demo", train=whole).train == whole


def test_an_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(ValidationError, match="demo-sample"):
        CSSettings(preset="fast")
