"""The fusion risk model's data, metrics and a tiny end-to-end training run on the sample prices and feeds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from apps.common.settings import REPO_ROOT
from apps.finance_sentiment.risk import (
    NO_NEWS,
    RISK_FEATURES,
    average_precision,
    build_risk_data,
    risk_metrics,
    risk_window,
    roc_auc,
)

SAMPLES = REPO_ROOT / "samples"


def test_roc_auc_and_average_precision_match_hand_computed_values():
    y, p = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert roc_auc(y, p) == pytest.approx(0.75)  # 3 of the 4 (pos, neg) pairs are ordered right
    # ranks: 0.8 (pos) P=1 R=.5; 0.4 (neg); 0.35 (pos) P=2/3 R=1 -> AP = .5*1 + .5*2/3
    assert average_precision(y, p) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # ties count half
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))
    m = risk_metrics([0, 1], [0.0, 1.0])
    assert m == {"roc_auc": 1.0, "average_precision": 1.0, "brier": 0.0, "base_rate": 0.5, "n": 2}
    one_class = risk_metrics([0, 0], [0.1, 0.2])  # undefined ranking metrics are null, so the report is valid JSON
    assert one_class["roc_auc"] is None and one_class["average_precision"] is None
    json.loads(json.dumps(one_class, allow_nan=False))


def test_risk_window_scales_pads_and_uses_nothing_after_the_end():
    idx = pd.date_range("2026-01-01", periods=5, freq="D", tz="UTC")
    frame = pd.DataFrame({"ret": [0.01] * 5, "log_ret": [0.01] * 5, "volatility": [0.3] * 5, "rsi": [60.0] * 5,
                          "volume_z": [1.0] * 5, "drawdown": [-0.1] * 5}, index=idx)
    frame.loc[idx[4], "ret"] = 9.0  # after the window's end: must not show
    w = risk_window(frame, end=4, steps=6, n_features=8)
    assert w.shape == (6, 8)
    assert np.isnan(w[:2]).all()  # two padding rows in front
    scales = dict(RISK_FEATURES)
    np.testing.assert_allclose(w[2:, 0], 0.01 * scales["ret"])
    np.testing.assert_allclose(w[2:, 3], (60 - 50) * scales["rsi"])
    np.testing.assert_allclose(w[2:, 6:], 0.0)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "market_prices").mkdir()
    for t in ("NWT", "CTSO", "FBKM"):
        shutil.copy(SAMPLES / "prices" / f"{t}.csv", root / "market_prices" / f"{t}.csv")
    return root


def _articles():
    return pd.DataFrame({"ts": pd.to_datetime(["2026-03-12T13:20:00Z", "2026-03-12T22:00:00Z"], utc=True),
                         "title": ["Contoso Freight shares plunge", "Contoso after the close"],
                         "tickers": [["CTSO"], ["CTSO"]]})


def test_build_risk_data_splits_by_time_labels_next_session_losses_and_places_news(data_dir):
    splits = build_risk_data(data_dir, ["CTSO", "NWT"], _articles(), steps=10, val_start="2026-01-01",
                             test_start="2026-02-01")
    tr, va, te = splits["train"], splits["val"], splits["test"]
    assert max(d for _, d in tr.keys) < "2026-01-01" <= min(d for _, d in va.keys)
    assert max(d for _, d in va.keys) < "2026-02-01" <= min(d for _, d in te.keys)
    assert te.series.shape[1:] == (10, 8)
    prices = pd.read_csv(SAMPLES / "prices" / "CTSO.csv")
    nxt = prices["adj_close"].shift(-1) / prices["adj_close"] - 1
    by_date = dict(zip(prices["date"], nxt))
    for (ticker, day), y in zip(te.keys, te.labels):
        if ticker == "CTSO":
            assert y == int(by_date[day] <= -0.03)
    texts = {k: t for k, t in zip(te.keys, te.texts)}
    # news at 13:20 UTC on 12 March counts for that session; news after the close counts for the next one
    assert texts[("CTSO", "2026-03-12")] == "Contoso Freight shares plunge"
    assert texts[("CTSO", "2026-03-11")] == NO_NEWS
    assert ("CTSO", "2026-03-13") not in texts  # the last session has no next close: no label, not used
    assert te.news.sum() == 1


def test_tiny_fusion_training_reports_fusion_and_text_only_on_the_test_split(data_dir, fin_artifact, tmp_path):
    from apps.finance_sentiment.risk import train_risk_model
    from core.config import TrainConfig

    splits = build_risk_data(data_dir, ["CTSO", "NWT", "FBKM"], _articles(), steps=10, val_start="2026-01-01",
                             test_start="2026-02-01")
    cfg = TrainConfig.quick(max_epochs=1, batch_size=32, lr=1e-3, head_lr=1e-3, max_length=24)
    report = train_risk_model(splits, fin_artifact, tmp_path / "risk", cfg=cfg, lora_r=2)
    for name in ("fusion", "fusion_without_text", "text_only"):
        assert report[name]["all"]["n"] == len(splits["test"])
    assert report["kept"] in ("fusion", "text_only")
    from core.model_card import number

    card = (tmp_path / "risk" / "MODEL_CARD.md").read_text()  # the card carries the report's test figures
    for name, model in (("fusion", "fusion model"), ("text_only", "text-only scoring")):
        assert f"| test ROC-AUC, {model} | {number(report[name]['all']['roc_auc'])} | test sessions (all) |" in card
        assert f"| test Brier score, {model} | {number(report[name]['with_news']['brier'])} | test sessions (with " \
               "news) |" in card
    assert f"| sessions | {len(splits['train'])} | {len(splits['val'])} | {len(splits['test'])} |" in card
    from core.engine import InferenceEngine

    eng = InferenceEngine(tmp_path / "risk")
    p = eng.classify_series_proba(splits["test"].series[:3], splits["test"].texts[:3], "risk")
    assert p.shape == (3, 2) and np.allclose(p.sum(-1), 1.0, atol=1e-5)
    # the sentiment task still runs on the base weights (the risk adapter is the risk task's alone)
    assert eng.tasks["sentiment"].adapter is None and eng.tasks["risk"].adapter == "risk"


def test_risk_scorer_and_risk_model_rule_fire_by_threshold(data_dir, fin_artifact, tmp_path):
    from apps.finance_sentiment.alerts import RiskModelRule, evaluate
    from apps.finance_sentiment.indicators import read_prices
    from apps.finance_sentiment.risk import RiskScorer, train_risk_model
    from core.config import TrainConfig
    from core.engine import InferenceEngine

    splits = build_risk_data(data_dir, ["CTSO", "NWT"], _articles(), steps=10, val_start="2026-01-01",
                             test_start="2026-02-01")
    cfg = TrainConfig.quick(max_epochs=1, batch_size=32, lr=1e-3, head_lr=1e-3, max_length=24)
    train_risk_model(splits, fin_artifact, tmp_path / "risk", cfg=cfg, lora_r=2)
    scorer = RiskScorer(InferenceEngine(tmp_path / "risk"), steps=10)
    prices = {t: read_prices(SAMPLES / "prices" / f"{t}.csv", t) for t in ("CTSO", "NWT")}
    arts = _articles().assign(id=["a1", "a2"])
    as_of = pd.Timestamp("2026-03-12T21:30:00Z")  # after the 12 March close (21:00 UTC in winter)
    risk = scorer.score(prices, arts, as_of)
    assert list(risk["ticker"]) == ["CTSO", "NWT"]
    assert (risk["ts"] <= as_of).all() and risk["p"].between(0, 1).all()
    ctso = risk[risk["ticker"] == "CTSO"].iloc[0]
    assert ctso["article_ids"] == ["a1"]  # the 13:20 story counts for the 12 March session; 22:00 is after it
    assert ctso["text"] == "Contoso Freight shares plunge"
    low = RiskModelRule(name="r", threshold=1e-6)
    high = RiskModelRule(name="r", threshold=0.999999)
    fired = evaluate([low], None, None, as_of, risk)
    assert {a.ticker for a in fired} == {"CTSO", "NWT"} and fired[0].article_ids in (["a1"], [])
    assert evaluate([high], None, None, as_of, risk) == [] or all(a.value >= 0.999999 for a in
                                                                   evaluate([high], None, None, as_of, risk))
    assert evaluate([low], None, None, as_of, None) == []  # no model: the rule stays quiet
