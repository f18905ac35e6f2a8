"""The two sequence models and the loss they share: causality, padding, tied tables, full and sampled softmax."""

from __future__ import annotations

import pytest
import torch

from apps.recommender.model import GenerativeRecommender, Popularity, SASRec, pca
from apps.recommender.settings import ModelSettings, SASRecSettings, TrainSettings
from apps.recommender.train import LengthBuckets, LitRecommender, mask_seen

CFG = ModelSettings(n_layer=2, n_head=2, n_embd=16, n_inner=32, max_len=12, dropout=0.0, text_init=False, head="mlm",
                    cloze_weight=0.0)


def models(n_items: int = 20):
    torch.manual_seed(0)
    return [GenerativeRecommender(CFG, n_items), SASRec(SASRecSettings(n_embd=16, dropout=0.0), n_items, 12)]


@pytest.mark.parametrize("i", [0, 1], ids=["generative", "sasrec"])
def test_a_position_never_sees_the_items_after_it(i):
    model = models()[i].eval()
    a = torch.tensor([[3, 4, 5, 6, 7]])
    b = torch.tensor([[3, 4, 5, 19, 2]])  # same first three items, different future
    with torch.no_grad():
        ha, hb = model.hidden(a), model.hidden(b)
    torch.testing.assert_close(ha[:, :3], hb[:, :3])
    assert not torch.allclose(ha[:, 3], hb[:, 3])


@pytest.mark.parametrize("i", [0, 1], ids=["generative", "sasrec"])
def test_left_padding_does_not_change_the_next_item_scores(i):
    model = models()[i].eval()
    with torch.no_grad():
        plain = model.score_last(torch.tensor([[3, 4, 5]]))
        padded = model.score_last(torch.tensor([[0, 0, 3, 4, 5], [9, 8, 7, 6, 5]]))[:1]
    if i == 0:  # the core counts positions over real items only: padding is invisible
        torch.testing.assert_close(plain, padded, atol=1e-5, rtol=1e-5)
    assert plain.shape == (1, 21)


def test_right_aligned_positions_put_the_latest_item_last_and_ignore_padding():
    from apps.recommender.model import GenerativeRecommender
    from apps.recommender.settings import ModelSettings

    torch.manual_seed(0)
    gen = GenerativeRecommender(ModelSettings(n_layer=1, n_head=2, n_embd=16, n_inner=32, max_len=10, dropout=0.0,
                                              text_init=False, positions="right"), 20).eval()
    seen = {}
    real = gen.backbone.forward

    def spy(*a, **kw):
        seen["pos"] = kw["positions"]
        return real(*a, **kw)

    gen.backbone.forward = spy
    with torch.no_grad():
        plain = gen.score_last(torch.tensor([[3, 4, 5]]))
        assert seen["pos"].tolist() == [[7, 8, 9]]
        padded = gen.score_last(torch.tensor([[0, 0, 3, 4, 5], [9, 8, 7, 6, 5]]))[:1]
        assert seen["pos"][1].tolist() == [5, 6, 7, 8, 9]
    torch.testing.assert_close(plain, padded, atol=1e-5, rtol=1e-5)


def test_generative_model_scores_with_its_tied_item_table():
    gen = models()[0]
    assert gen.item_table() is gen.items.emb.weight and gen.head.item_emb[0] is gen.items.emb
    h = torch.randn(3, 16)
    torch.testing.assert_close(gen.logits(h), h @ gen.items.emb.weight.t() + gen.head.bias)


def test_dot_head_scores_the_last_hidden_state_against_the_item_table_without_bias():
    torch.manual_seed(0)
    gen = GenerativeRecommender(CFG.model_copy(update={"head": "dot"}), 20).eval()
    assert gen.head is None and gen.item_bias() is None
    assert not any(n.startswith("head.") for n, _ in gen.named_parameters())  # nothing unused (ddp needs that)
    seqs = torch.tensor([[0, 3, 4, 5]])
    with torch.no_grad():
        h = gen.backbone(None, mode="causal", prefix=gen.items(seqs))
        torch.testing.assert_close(gen.hidden(seqs), h)
        torch.testing.assert_close(gen.score_last(seqs), h[:, -1] @ gen.items.emb.weight.t())


def test_text_init_starts_the_items_from_their_text_directions():
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(10, 384), dim=-1)
    gen = GenerativeRecommender(CFG.model_copy(update={"text_init": True}), 10, text)
    want = torch.nn.functional.normalize(pca(text, 16), dim=-1)
    got = torch.nn.functional.normalize(gen.items.emb.weight[1:].detach(), dim=-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        GenerativeRecommender(CFG, 10, torch.randn(9, 384))
    add = GenerativeRecommender(CFG.model_copy(update={"text_mode": "add"}), 10, text)
    torch.testing.assert_close(add.item_table()[1:] - add.items.emb.weight[1:], add.cold_vectors(text))


@pytest.mark.parametrize("sampled", [False, True], ids=["full", "sampled"])
def test_the_loss_trains_both_ways(sampled):
    torch.manual_seed(0)
    gen = models(n_items=6)[0]
    lit = LitRecommender(gen, TrainSettings(), sampled=sampled, n_negatives=64)  # many accidental hits of 6 items
    batch = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = lit.loss(batch)
        assert torch.isfinite(loss)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first


def test_future_window_loss_adds_the_items_after_the_next_one():
    torch.manual_seed(0)
    gen = models(n_items=6)[0].eval()  # no dropout: the two computations see the same states
    batch = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    plain = LitRecommender(gen, TrainSettings())
    fut = LitRecommender(gen, TrainSettings(), future_window=2, future_weight=0.5)
    h = gen.hidden(batch[:, :-1])  # (2, 4, C)
    logp = (h @ gen.item_table()[1:].t() + gen.item_bias()[1:]).log_softmax(-1)  # (2, 4, 6): column j = item j+1
    # by hand: row 0 positions 1..3 see items 1, 2, 3 next (position 0 is padding); row 1 positions 0..3 see 2..5
    nxt = [(0, 1, 2), (0, 2, 3), (0, 3, 4), (1, 0, 2), (1, 1, 3), (1, 2, 4), (1, 3, 5)]
    # items 1 and 2 steps after the next one, inside the window
    ahead = [(0, 1, 3), (0, 1, 4), (0, 2, 4), (1, 0, 3), (1, 0, 4), (1, 1, 4), (1, 1, 5), (1, 2, 5)]
    want_next = -torch.stack([logp[b, t, i - 1] for b, t, i in nxt]).mean()
    want_ahead = -torch.stack([logp[b, t, i - 1] for b, t, i in ahead]).mean()
    with torch.no_grad():
        torch.testing.assert_close(plain.loss(batch), want_next.detach())
        torch.testing.assert_close(fut.loss(batch), (want_next + 0.5 * want_ahead).detach())


def test_cloze_loss_fills_in_hidden_items_from_both_sides_and_trains():
    torch.manual_seed(0)
    gen = GenerativeRecommender(CFG.model_copy(update={"cloze_weight": 0.5, "max_len": 4}), 6).eval()
    seqs = torch.tensor([[0, 1, 2, 3], [3, 4, 5, 6]])
    hide = torch.tensor([[False, False, True, False], [False, True, False, False]])
    with torch.no_grad():
        h = gen.cloze_hidden(seqs, hide)
        later = gen.cloze_hidden(torch.tensor([[0, 1, 2, 4], [3, 4, 5, 1]]), hide)  # other items after the hidden ones
    assert not torch.allclose(h[0, 2], later[0, 2])  # a hidden item's state reads the items after it
    with torch.no_grad():
        swapped = gen.cloze_hidden(torch.tensor([[0, 1, 5, 3], [3, 4, 5, 6]]), hide)  # another item where hidden
    torch.testing.assert_close(h, swapped)  # the hidden item itself is never seen
    with pytest.raises(ValueError, match="cloze"):
        models()[0].cloze_hidden(seqs, hide)
    gen.train()
    lit = LitRecommender(gen, TrainSettings())
    batch = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])  # windows of max_len + 1: the loss reads the last 4
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = lit.cloze_loss(batch)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first and gen.mask_item.grad is not None


def test_mask_seen_hides_padding_and_history():
    scores = torch.zeros(2, 5)
    out = mask_seen(scores, torch.tensor([[0, 2], [3, 4]]))
    assert torch.isinf(out[0, [0, 2]]).all() and torch.isinf(out[1, [0, 3, 4]]).all()
    assert torch.isfinite(out[0, [1, 3, 4]]).all() and scores.eq(0).all()  # the input is left as it was


def test_length_buckets_cover_every_window_once_per_epoch_and_change_order():
    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 6, 4] * 3
    sampler = LengthBuckets(lengths, batch_size=4, seed=1, pool=2)
    e1, e2 = list(sampler), list(sampler)
    assert sorted(i for b in e1 for i in b) == list(range(30)) == sorted(i for b in e2 for i in b)
    assert e1 != e2 and len(e1) == len(sampler) == 8


def test_popularity_breaks_ties_by_index_and_never_scores_padding():
    pop = Popularity([0, 3, 5, 5, 1])
    s = pop.score(2)
    assert s.shape == (2, 5) and s[0, 0] == float("-inf")
    assert list(s[0, 1:].argsort()[::-1] + 1) == [2, 3, 1, 4]
