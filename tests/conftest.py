"""Shared test setup: one CPU thread for torch, and a tiny tokenizer / model config for the core's tests."""

from __future__ import annotations

import pytest
import torch

from core.config import ModelConfig
from core.tokenizer import Tokenizer

# A small corpus: enough words for a WordPiece vocabulary of a few hundred ids.
CORPUS = [
    "the card payment was declined at the shop",
    "my transfer has not arrived yet",
    "how do i activate my new card",
    "the company reported a strong rise in quarterly profit",
    "shares fell sharply after the weak sales forecast",
    "a good great nice excellent happy day",
    "a bad awful poor terrible sad day",
    "hello world, this is a tiny test corpus for the tokenizer",
    "where is my refund for the cancelled order",
    "interest rates and exchange rates moved today",
]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """A model trains in the background on this small machine: keep every test to one CPU thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """The sentences ``tok`` was trained on (every word in them has its own id)."""
    return list(CORPUS)


@pytest.fixture(scope="session")
def tok() -> Tokenizer:
    """A WordPiece tokenizer trained on ``CORPUS`` (the eight special tokens take ids 0..7)."""
    return Tokenizer.train(CORPUS, vocab_size=1000, min_frequency=1)


@pytest.fixture
def tiny_cfg(tok: Tokenizer) -> ModelConfig:
    """``ModelConfig.tiny`` sized to ``tok``: 2 layers, 2 heads, 32 hidden, 128 positions."""
    return ModelConfig.tiny(vocab_size=tok.vocab_size)
