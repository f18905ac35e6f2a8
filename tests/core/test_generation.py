"""Tests for core.generation: greedy / sampling / beam decoding, the KV cache, token masks and logit filters."""

from __future__ import annotations

import math

import pytest
import torch

from core.generation import GenerationConfig, filter_logits, generate, left_pad
from core.tasks import CoreModel

PROMPTS = [[2, 10, 11, 12, 13], [2, 20, 21], [2, 30, 31, 32, 33, 34, 35, 36]]


@pytest.fixture
def model(tiny_cfg) -> CoreModel:
    torch.manual_seed(0)
    m = CoreModel(tiny_cfg).eval()
    # BERT's N(0, 0.02) start gives nearly uniform attention and flat logits, where causal and prefix reading of a
    # prompt barely differ; N(0, 0.3) matrices make attention sharp, so the tests below can tell the modes apart.
    with torch.no_grad():
        for p in m.backbone.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.3)
    return m


def test_greedy_with_and_without_cache_gives_identical_ids(model):
    for mode in ("causal", "prefix"):
        cached = generate(model, PROMPTS, GenerationConfig(max_new_tokens=12, mode=mode))
        full = generate(model, PROMPTS, GenerationConfig(max_new_tokens=12, mode=mode, use_cache=False))
        assert cached == full
        assert [len(o) for o in cached] == [12, 12, 12]


def test_generation_after_an_image_prefix_matches_full_recompute(model):
    torch.manual_seed(1)
    with torch.no_grad():
        prefix = model.image_prefix(torch.rand(len(PROMPTS), 1, 28, 28))
    for strategy in ("greedy", "beam"):
        for mode in ("causal", "prefix"):
            cfg = GenerationConfig(max_new_tokens=6, strategy=strategy, num_beams=2, mode=mode)
            cached = generate(model, PROMPTS, cfg, prefix=prefix)
            full = generate(model, PROMPTS, GenerationConfig(**{**cfg.__dict__, "use_cache": False}), prefix=prefix)
            assert cached == full
            assert all(len(o) == 6 for o in cached)
    # the image matters: without it the continuation differs
    assert generate(model, PROMPTS, GenerationConfig(max_new_tokens=6), prefix=prefix) != generate(
        model, PROMPTS, GenerationConfig(max_new_tokens=6))


def test_prompt_modes_differ(model):
    # prefix mode reads the prompt bidirectionally: on a random model it continues differently from causal mode
    causal = generate(model, PROMPTS, GenerationConfig(max_new_tokens=8))
    prefix = generate(model, PROMPTS, GenerationConfig(max_new_tokens=8, mode="prefix"))
    assert causal != prefix


def test_greedy_follows_the_argmax_of_the_lm_head(model):
    prompt = PROMPTS[0]
    out = generate(model, [prompt], GenerationConfig(max_new_tokens=3))[0]
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(3):
            h = model.backbone(torch.tensor([seq]), mode="causal")
            seq.append(int(model.lm_head(h[:, -1]).argmax()))
    assert out == seq[len(prompt):]


def test_top_k_one_sampling_equals_greedy(model):
    greedy = generate(model, PROMPTS, GenerationConfig(max_new_tokens=10))
    for seed in (0, 1):
        sampled = generate(model, PROMPTS, GenerationConfig(max_new_tokens=10, strategy="sample", top_k=1,
                                                            temperature=1.7, seed=seed))
        assert sampled == greedy


def test_sampling_is_seeded(model):
    cfg = GenerationConfig(max_new_tokens=10, strategy="sample", temperature=5.0)
    a = generate(model, PROMPTS, cfg)
    assert a == generate(model, PROMPTS, cfg)
    assert a != generate(model, PROMPTS, GenerationConfig(**{**cfg.__dict__, "seed": 7}))


def test_allowed_ids_restrict_the_output(model):
    allowed = (40, 41, 42)
    for strategy in ("greedy", "sample", "beam"):
        cfg = GenerationConfig(max_new_tokens=10, strategy=strategy, allowed_ids=allowed, temperature=5.0,
                               num_beams=3)
        outs = generate(model, PROMPTS, cfg)
        assert all(len(o) == 10 for o in outs)
        assert set().union(*map(set, outs)) <= set(allowed)


def test_banned_ids_are_never_generated(model):
    free = generate(model, PROMPTS, GenerationConfig(max_new_tokens=10))
    banned = tuple(sorted(set().union(*map(set, free))))
    outs = generate(model, PROMPTS, GenerationConfig(max_new_tokens=10, banned_ids=banned))
    assert not set().union(*map(set, outs)) & set(banned)


def test_stop_id_ends_generation_and_is_excluded(model):
    # only the stop id may be produced: every sequence stops at once and is empty
    cfg = GenerationConfig(max_new_tokens=10, allowed_ids=(3,), stop_ids=(3,))
    assert generate(model, PROMPTS, cfg) == [[], [], []]
    assert generate(model, PROMPTS, GenerationConfig(**{**cfg.__dict__, "strategy": "beam"})) == [[], [], []]
    # a stop id met later cuts the sequence right before it
    free = generate(model, [PROMPTS[0]], GenerationConfig(max_new_tokens=10))[0]
    stop = free[3]
    cut = generate(model, [PROMPTS[0]], GenerationConfig(max_new_tokens=10, stop_ids=(stop,)))[0]
    assert cut == free[: free.index(stop)]


def test_beam_search_with_one_beam_equals_greedy(model):
    greedy = generate(model, PROMPTS, GenerationConfig(max_new_tokens=10))
    beam = generate(model, PROMPTS, GenerationConfig(max_new_tokens=10, strategy="beam", num_beams=1))
    assert beam == greedy


def test_beam_search_scores_at_least_as_well_as_greedy(model):
    def logprob(prompt, cont):
        seq = torch.tensor([prompt + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model.lm_head(model.backbone(seq, mode="causal")), -1)[0]
        return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(cont))

    prompt = PROMPTS[1]
    greedy = generate(model, [prompt], GenerationConfig(max_new_tokens=4))[0]
    beam = generate(model, [prompt], GenerationConfig(max_new_tokens=4, strategy="beam", num_beams=4))[0]
    assert len(beam) == 4
    assert logprob(prompt, beam) >= logprob(prompt, greedy) - 1e-4


def test_filter_logits_top_k_and_top_p_on_hand_made_vector():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    inf = float("-inf")
    # cumulative probabilities 0.5, 0.8, 0.95, 1.0: top_p=0.7 keeps the first two (the second crosses 0.7)
    kept = filter_logits(logits, top_p=0.7)
    assert torch.isfinite(kept).tolist() == [[True, True, False, False]]
    torch.testing.assert_close(kept[0, :2], logits[0, :2])
    assert kept[0, 2].item() == inf
    # top_p=0.5 keeps only the first (it reaches 0.5 exactly); top_p=0.96 keeps all four
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.96)).all()
    # top_k=3 drops the least likely; both together: the stricter wins
    assert torch.isfinite(filter_logits(logits, top_k=3)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(filter_logits(logits, top_k=1, top_p=0.99)).tolist() == [[True, False, False, False]]
    # order does not matter: a shuffled vector keeps the same tokens
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.isfinite(filter_logits(logits[:, perm], top_p=0.7)).tolist() == [[False, True, False, True]]
    # renormalised top-p distribution: 0.5 / 0.8 and 0.3 / 0.8
    probs = torch.softmax(kept, -1)
    torch.testing.assert_close(probs, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    assert math.isclose(float(probs.sum()), 1.0, rel_tol=1e-6)


def test_batched_prompts_match_running_each_alone(model):
    for strategy in ("greedy", "beam"):
        cfg = GenerationConfig(max_new_tokens=8, strategy=strategy, num_beams=2)
        batch = generate(model, PROMPTS, cfg)
        alone = [generate(model, [p], cfg)[0] for p in PROMPTS]
        assert batch == alone


def test_left_pad_puts_padding_first():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[True, True, True], [False, False, True]]


def test_prompt_filling_block_size_raises(model):
    block = model.cfg.block_size
    with pytest.raises(ValueError, match="fills the model's 128 positions"):
        generate(model, [[5] * block], GenerationConfig(max_new_tokens=4))
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[5], []], GenerationConfig())
    # one position left: exactly one new token, whatever max_new_tokens asks for
    out = generate(model, [[5] * (block - 1)], GenerationConfig(max_new_tokens=4))
    assert len(out[0]) == 1


@pytest.mark.parametrize("kw", [
    {"strategy": "nucleus"},
    {"max_new_tokens": 0},
    {"temperature": 0.0},
    {"temperature": float("nan")},
    {"temperature": float("inf")},
    {"top_p": 0.0},
    {"top_p": float("nan")},
    {"top_p": 1.5},
    {"top_k": -1},
    {"num_beams": 0},
    {"mode": "bidirectional"},
])
def test_generation_config_rejects_bad_settings(kw):
    with pytest.raises(ValueError):
        GenerationConfig(**kw)
