"""The core's item-sequence tasks: windows and batches, the next-item loss (full and sampled softmax) and the cloze
loss checked against hand-computed values, ranking validation, and fit -> artifact -> the same scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.artifacts import load_artifact
from core.config import ModelConfig, TrainConfig
from core.data import (
    Batch,
    ItemCollator,
    ItemWindows,
    LengthBuckets,
    ListDataset,
    MultiTaskDataModule,
    TaskData,
    pad_left,
    windows,
)
from core.lit import LitCore, mask_seen
from core.tasks import CoreModel, TaskSpec
from core.train import fit

N_ITEMS = 6
NEXT = TaskSpec(name="next", kind="next_item")
CLOZE = TaskSpec(name="cloze", kind="cloze", weight=0.5)


def item_model(tasks=(NEXT,), **kw) -> CoreModel:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=8, n_layer=2, n_head=2, n_embd=16, n_inner=32, block_size=12, dropout=0.0,
                      attn_dropout=0.0, norm="pre", encoders=(), n_items=N_ITEMS, **kw)
    return CoreModel(cfg, list(tasks)).eval()


def zero_table(model: CoreModel) -> CoreModel:
    with torch.no_grad():
        model.item_encoder.emb.weight.zero_()  # every item scores 0: the softmax is uniform
    return model


WINDOWS = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])


def test_windows_make_every_item_but_the_first_a_target_once():
    seq = np.arange(1, 12)  # 11 items
    ws = windows([seq, np.array([5])], max_len=4)
    assert [w.tolist() for w in ws] == [[7, 8, 9, 10, 11], [3, 4, 5, 6, 7], [1, 2, 3]]
    assert sorted(x for w in ws for x in w[1:].tolist()) == list(range(2, 12))
    assert pad_left([np.array([1, 2]), np.array([3, 4, 5, 6])], max_len=3).tolist() == [[0, 1, 2], [4, 5, 6]]
    assert ItemWindows([seq], max_len=4).lengths == [5, 5, 3]


def test_item_collator_pads_windows_and_evaluation_cases():
    train = ItemCollator("next", max_len=3, train=True)([np.array([1, 2, 3]), np.array([4, 5])])
    assert train.items.tolist() == [[1, 2, 3], [0, 4, 5]] and len(train) == 2
    val = ItemCollator("next", max_len=2, train=False)([(np.array([1, 2, 3]), 4), (np.array([5]), 6)])
    assert val.items.tolist() == [[2, 3], [0, 5]] and val.labels.tolist() == [4, 6]
    assert val.seen.tolist() == [[1, 2, 3], [0, 0, 5]]


def test_length_buckets_cover_every_window_once_per_epoch_and_change_order():
    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 6, 4] * 3
    sampler = LengthBuckets(lengths, batch_size=4, seed=1, pool=2)
    e1, e2 = list(sampler), list(sampler)
    assert sorted(i for b in e1 for i in b) == list(range(30)) == sorted(i for b in e2 for i in b)
    assert e1 != e2 and len(e1) == len(sampler) == 8


def test_next_item_loss_of_a_uniform_model_is_log_n_items():
    lit = LitCore(zero_table(item_model()), TrainConfig())
    with torch.no_grad():
        loss = lit.next_item_loss(Batch("next", items=WINDOWS))
    assert float(loss) == pytest.approx(math.log(N_ITEMS), abs=1e-6)


def test_next_item_loss_averages_every_real_item_after_a_real_item():
    model = item_model()
    lit = LitCore(model, TrainConfig())
    with torch.no_grad():
        logp = model.item_head(model.item_states(WINDOWS[:, :-1]))[..., 1:].log_softmax(-1)  # (2, 4, 6)
        # by hand: row 0 positions 1..3 see items 2, 3, 4 next (position 0 is padding); row 1 positions 0..3 see 2..5
        want = -torch.stack([logp[b, t, i - 1] for b, t, i in
                             [(0, 1, 2), (0, 2, 3), (0, 3, 4), (1, 0, 2), (1, 1, 3), (1, 2, 4), (1, 3, 5)]]).mean()
        torch.testing.assert_close(lit.next_item_loss(Batch("next", items=WINDOWS)), want)


def test_sampled_softmax_shares_negatives_and_drops_accidental_hits():
    lit = LitCore(zero_table(item_model()), TrainConfig(sampled_above=1, n_negatives=8))
    torch.manual_seed(3)
    with torch.no_grad():
        loss = lit.next_item_loss(Batch("next", items=WINDOWS))
    torch.manual_seed(3)
    neg = torch.randint(1, N_ITEMS + 1, (8,))  # the draw the loss made
    targets = [2, 3, 4, 2, 3, 4, 5]
    # every score is 0: each target's loss is log(1 + the negatives that are not the target itself)
    want = np.mean([math.log(1 + int((neg != t).sum())) for t in targets])
    assert float(loss) == pytest.approx(want, abs=1e-6)


def test_cloze_loss_of_a_uniform_model_is_log_n_items_and_it_reads_both_sides():
    model = item_model((NEXT, CLOZE))
    assert model.heads["cloze"].vector.shape == (16,)
    seqs = torch.tensor([[0, 1, 2, 3], [3, 4, 5, 6]])
    hide = torch.tensor([[False, False, True, False], [False, True, False, False]])
    with torch.no_grad():
        h = model.item_states(seqs, "bidirectional", hide, "cloze")
        later = model.item_states(torch.tensor([[0, 1, 2, 4], [3, 4, 5, 1]]), "bidirectional", hide, "cloze")
        swapped = model.item_states(torch.tensor([[0, 1, 5, 3], [3, 4, 5, 6]]), "bidirectional", hide, "cloze")
    assert not torch.allclose(h[0, 2], later[0, 2])  # a hidden item's state reads the items after it
    torch.testing.assert_close(h, swapped)  # the hidden item itself is never seen
    lit = LitCore(zero_table(model), TrainConfig(mlm_prob=0.2))
    with torch.no_grad():
        cloze = lit.cloze_loss(Batch("next", items=seqs), "cloze")
        loss, _ = lit.task_loss(Batch("next", items=WINDOWS))  # a next-item batch trains the cloze task too
    assert float(cloze) == pytest.approx(math.log(N_ITEMS), abs=1e-6)
    assert float(loss) == pytest.approx(1.5 * math.log(N_ITEMS), abs=1e-6)


def test_cloze_needs_an_item_model():
    with pytest.raises(ValueError, match="n_items"):
        CoreModel(ModelConfig.tiny(vocab_size=64), [CLOZE])


@pytest.mark.parametrize("positions", ["left", "right"])
def test_a_position_never_sees_the_items_after_it_and_padding_changes_nothing(positions):
    model = item_model(item_positions=positions)
    with torch.no_grad():
        ha = model.item_states(torch.tensor([[3, 4, 5, 6, 1]]))
        hb = model.item_states(torch.tensor([[3, 4, 5, 2, 2]]))  # same first three items, different future
        torch.testing.assert_close(ha[:, :3], hb[:, :3])
        assert not torch.allclose(ha[:, 3], hb[:, 3])
        plain = model.score_next(torch.tensor([[3, 4, 5]]))
        padded = model.score_next(torch.tensor([[0, 0, 3, 4, 5], [6, 1, 2, 6, 5]]))[:1]
    torch.testing.assert_close(plain, padded, atol=1e-5, rtol=1e-5)
    assert plain.shape == (1, N_ITEMS + 1)


def test_right_positions_put_the_latest_item_last():
    model = item_model(item_positions="right")
    seen = {}
    real = model.backbone.forward

    def spy(*a, **kw):
        seen["pos"] = kw["positions"]
        return real(*a, **kw)

    model.backbone.forward = spy
    with torch.no_grad():
        model.score_next(torch.tensor([[3, 4, 5]]))
        assert seen["pos"].tolist() == [[9, 10, 11]]
        model.score_next(torch.tensor([[0, 0, 3, 4, 5], [6, 1, 2, 6, 5]]))
        assert seen["pos"][1].tolist() == [7, 8, 9, 10, 11]


def test_mask_seen_hides_padding_and_history():
    scores = torch.zeros(2, 5)
    out = mask_seen(scores, torch.tensor([[0, 2], [3, 4]]))
    assert torch.isinf(out[0, [0, 2]]).all() and torch.isinf(out[1, [0, 3, 4]]).all()
    assert torch.isfinite(out[0, [1, 3, 4]]).all() and scores.eq(0).all()  # the input is left as it was


def test_fit_learns_a_cycle_ranks_validation_and_saves_an_artifact_without_tokenizer(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [np.roll(np.arange(1, N_ITEMS + 1), -int(s))[: int(n)] for s, n in
            zip(rng.integers(0, N_ITEMS, 40), rng.integers(3, 12, 40))]  # each item is followed by the next one
    val_in = [s[:-1] for s in seqs]
    val_t = [int(s[-1]) for s in seqs]
    model = item_model((NEXT, CLOZE))
    data = MultiTaskDataModule([TaskData(NEXT, ItemWindows(seqs, 12), ListDataset(val_in, val_t))], None,
                               batch_size=8, max_length=12, seed=0)
    cfg = TrainConfig(max_epochs=8, lr=1e-2, head_lr=1e-2, precision="32-true", patience=8, weight_decay=0.0)
    out = fit(model, data, cfg, tmp_path / "items", None, progress=False)
    loaded, tok, config = load_artifact(out)
    assert tok is None and not (out / "tokenizer.json").exists() and config["tokenizer"] is False
    assert config["meta"]["training"]["best_val_score"] > 0.8  # NDCG@10 of a sequence that always goes on
    assert (out / "heads" / "cloze.safetensors").is_file()
    x = torch.from_numpy(pad_left(val_in[:4]))
    with torch.no_grad():
        torch.testing.assert_close(loaded.score_next(x), model.score_next(x), atol=0, rtol=0)
    torch.testing.assert_close(loaded.heads["cloze"].vector, model.heads["cloze"].vector)
