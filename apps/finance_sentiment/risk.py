"""Fusion risk model: the core reads a ticker's recent indicator window (a numeric-series prefix) together with the
news about it, and gives the probability of a *risk event*: a loss of ``loss_threshold`` (3%) or more in the next
trading session. It is compared, on sessions it never trained on, with text-only scoring (the sentiment model's
score of the same news, mapped to a probability by a logistic fit on the training sessions).

Data (:func:`build_risk_data`): each daily row of the watched stocks' price files (Yahoo history, then the Stooq 2026
files) is a session; its window is the last ``steps`` indicator rows up to its close, with fixed scalings
(:func:`risk_window`, so that the level of volatility survives, which a per-window z-score would hide); its text is
the titles of the ticker's articles after the previous close and up to this one (else ``"no news"``); its target is
``next adjusted close / this one - 1 <= -loss_threshold``. Splits are by time: train before ``val_start``,
validation until ``test_start``, test after (used once, for the reported comparison).

Metrics: ROC-AUC, average precision, Brier score and the base rate, overall and on the sessions with news.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from apps.finance_sentiment.card import RISK_REPORT_FILE, risk_card
from apps.finance_sentiment.feeds import Deduper, FeedPoller, load_feeds_file
from apps.finance_sentiment.indicators import indicator_frame, read_prices, utc
from apps.finance_sentiment.model import load_sentiment_model
from apps.finance_sentiment.scoring import SentimentScorer
from apps.finance_sentiment.settings import ScoringSettings
from core.adapters import apply_lora, train_only_adapters
from core.artifacts import load_artifact
from core.config import TrainConfig
from core.data import ListDataset, MultiTaskDataModule, TaskData
from core.engine import InferenceEngine
from core.model_card import write_card
from core.tasks import TaskSpec
from core.train import fit

log = logging.getLogger(__name__)

# (indicator column, scale): fixed scalings that keep every feature near [-3, 3] for large caps
RISK_FEATURES: tuple[tuple[str, float], ...] = (("ret", 20.0), ("log_ret", 20.0), ("volatility", 2.0),
                                                ("rsi", 1 / 25), ("volume_z", 0.5), ("drawdown", 5.0))
NO_NEWS = "no news"
LABELS = ("calm", "risk")


def risk_window(frame: pd.DataFrame, end: int, steps: int, n_features: int) -> np.ndarray:
    """Rows ``[end - steps, end)`` of an indicator frame, scaled by :data:`RISK_FEATURES`, clipped to [-5, 5] and
    padded to ``n_features`` columns (zeros) and ``steps`` rows (NaN rows in front: padding)."""
    cols = []
    for name, scale in RISK_FEATURES:
        v = frame[name].to_numpy(dtype="float64")[max(0, end - steps):end]
        cols.append(((v - 50.0) if name == "rsi" else v) * scale)
    x = np.clip(np.stack(cols, -1), -5.0, 5.0)
    x = np.nan_to_num(x, nan=0.0)
    if x.shape[1] < n_features:
        x = np.concatenate([x, np.zeros((len(x), n_features - x.shape[1]))], 1)
    if len(x) < steps:
        x = np.concatenate([np.full((steps - len(x), n_features), np.nan), x])
    return x.astype(np.float32)


def load_history(data_dir: Path, ticker: str) -> pd.DataFrame | None:
    """A ticker's daily prices: ``market_prices/<T>.csv``, then ``stooq_2026/<T>.csv`` for the dates after it."""
    base = data_dir / "market_prices"
    parts = [read_prices(p, ticker) for p in (base / f"{ticker}.csv", base / "stooq_2026" / f"{ticker}.csv")
             if p.is_file()]
    if not parts:
        return None
    frame = pd.concat([parts[0], *(p[p.index > parts[0].index[-1]] for p in parts[1:])])
    frame.attrs["ticker"] = ticker
    return frame


@dataclass
class RiskData:
    """Windows, texts and labels of one split, with the session keys."""

    series: np.ndarray  # (N, T, F)
    texts: list[str]
    labels: np.ndarray  # (N,) 1 = risk event
    keys: list[tuple[str, str]]  # (ticker, session date)
    news: np.ndarray  # (N,) bool: the session has news

    def __len__(self) -> int:
        return len(self.texts)


def _about(articles: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """The articles tagged with ``ticker``."""
    return articles[[ticker in t for t in articles["tickers"]]] if len(articles) else articles


def _session_news(rows: pd.DatetimeIndex, articles: pd.DataFrame) -> dict[int, list[str]]:
    """Row position -> titles of the articles that count for it (after the previous row, at or before this one)."""
    out: dict[int, list[str]] = {}
    if articles.empty:
        return out
    pos = rows.searchsorted(pd.DatetimeIndex(articles["ts"]), side="left")
    for p, title, ts in zip(pos, articles["title"], articles["ts"]):
        if p < len(rows) and (p > 0 or ts >= rows[0] - pd.Timedelta(days=3)):
            out.setdefault(int(p), []).append(str(title))
    return out


def build_risk_data(data_dir: Path, tickers: Sequence[str], articles: pd.DataFrame, steps: int = 30,
                    n_features: int = 8, loss_threshold: float = 0.03, val_start: str = "2024-01-01",
                    test_start: str = "2025-01-01", train_stride: int = 1) -> dict[str, RiskData]:
    """Sessions of ``tickers`` as (window, news text, next-session loss event), split by time.

    Args:
        data_dir: The data sets folder (``market_prices`` inside).
        tickers: Stocks to use.
        articles: Columns ``ts`` (UTC), ``title``, ``tickers`` (lists).
        steps: Window length in sessions.
        n_features: Features per step (the model's ``series_features``).
        loss_threshold: The next-session loss that counts as a risk event.
        val_start: First session of validation.
        test_start: First session of the held-back test.
        train_stride: Keep every n-th training session (cost control; the windows overlap anyway).

    Returns:
        ``{"train", "val", "test"}`` -> :class:`RiskData`.
    """
    out: dict[str, list] = {k: [] for k in ("train", "val", "test")}
    v0, t0 = pd.Timestamp(val_start, tz="UTC"), pd.Timestamp(test_start, tz="UTC")
    for ticker in tickers:
        prices = load_history(data_dir, ticker)
        if prices is None:
            log.warning("no prices for %s", ticker)
            continue
        frame = indicator_frame(prices)
        adj = prices["adj_close"].to_numpy(dtype="float64")
        news = _session_news(frame.index, _about(articles, ticker))
        n_train = 0
        for i in range(steps, len(frame) - 1):
            nxt = adj[i + 1] / adj[i] - 1.0
            if not math.isfinite(nxt):
                continue
            ts = frame.index[i]
            split = "train" if ts < v0 else "val" if ts < t0 else "test"
            if split == "train":
                n_train += 1
                if (n_train - 1) % train_stride and i not in news:
                    continue
            titles = news.get(i, [])
            text = " | ".join(titles[:4]) if titles else NO_NEWS
            out[split].append((risk_window(frame, i + 1, steps, n_features), text, int(nxt <= -loss_threshold),
                               (ticker, ts.strftime("%Y-%m-%d")), bool(titles)))
    result = {}
    for split, rows in out.items():
        s, t, y, k, n = zip(*rows) if rows else ((), (), (), (), ())
        result[split] = RiskData(np.stack(s) if rows else np.zeros((0, steps, n_features), np.float32), list(t),
                                 np.asarray(y, dtype=int), list(k), np.asarray(n, dtype=bool))
    return result


# ------------------------------------------------------------------------------------------------------- metrics
def roc_auc(y: Sequence[int], p: Sequence[float]) -> float:
    """Area under the ROC curve (rank statistic, ties averaged); NaN with one class only."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: Sequence[int], p: Sequence[float]) -> float:
    """Average precision (area under precision-recall, step-wise as in scikit-learn); NaN without positives."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=np.float64)
    if not y.any():
        return float("nan")
    order = np.argsort(-p, kind="stable")
    y, p = y[order], p[order]
    tp = np.cumsum(y)
    # thresholds at distinct scores only
    last = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]
    precision = tp[last] / (last + 1)
    recall = tp[last] / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def risk_metrics(y: Sequence[int], p: Sequence[float]) -> dict:
    """ROC-AUC, average precision, Brier score, base rate and n; the ranking metrics are None (JSON null) where they
    are undefined (only one class among the sessions)."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if not len(y):
        return {"n": 0}

    def defined(v: float) -> float | None:
        return None if not np.isfinite(v) else round(float(v), 4)

    return {"roc_auc": defined(roc_auc(y, p)), "average_precision": defined(average_precision(y, p)),
            "brier": round(float(np.mean((p - y) ** 2)), 5), "base_rate": round(float(y.mean()), 4), "n": int(len(y))}


# ------------------------------------------------------------------------------------------------------ training
def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 500) -> np.ndarray:
    """Weights (with bias last) of an L2-regularised logistic regression by Newton's method."""
    X = np.concatenate([x, np.ones((len(x), 1))], 1)
    w = np.zeros(X.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-X @ w))
        g = X.T @ (p - y) + l2 * w
        H = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _predict_logistic(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(np.concatenate([x, np.ones((len(x), 1))], 1) @ w)))


def text_only_features(sentiment: Mapping[str, float], data: RiskData) -> np.ndarray:
    """(N, 2): the news' sentiment score (0 without news) and whether there is news."""
    return np.array([[sentiment.get(t, 0.0) if t != NO_NEWS else 0.0, float(t != NO_NEWS)] for t in data.texts])


def train_risk_model(splits: dict[str, RiskData], sentiment_artifact: Path, out: Path, cfg=None,
                     lora_r: int = 8) -> dict:
    """Train the fusion model (a ``risk`` series_classify task with its own LoRA adapter on the sentiment model's
    backbone) and the text-only baseline; compare them on the held-back test split.

    Returns:
        The report: test metrics of ``fusion``, ``fusion_without_text`` (the same model reading "no news"),
        ``text_only``, each overall and on sessions with news; also written to ``out/risk_report.json``
        (and the artifact's model card).
    """
    cfg = cfg or TrainConfig(max_epochs=3, batch_size=64, lr=5e-4, head_lr=1e-3, max_length=48, precision="32-true",
                             patience=2, warmup_ratio=0.05)
    sent_model = load_sentiment_model(sentiment_artifact)
    first = sent_model.members[0].engine.path
    model, tok, _ = load_artifact(first)
    apply_lora(model.backbone, "risk", r=lora_r, alpha=2 * lora_r, dropout=0.1)
    spec = TaskSpec(name="risk", kind="series_classify", labels=LABELS, adapter="risk")
    model.add_task(spec)
    train_only_adapters(model, keep_trainable=("heads.risk.", "series_encoder."))
    # the sentiment task keeps its base weights: no adapter is active for it
    tr, va = splits["train"], splits["val"]
    dm = MultiTaskDataModule([TaskData(spec, ListDataset(list(tr.series), tr.texts, tr.labels.tolist()),
                                       ListDataset(list(va.series), va.texts, va.labels.tolist()))],
                             tok, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed)
    fit(model, dm, cfg, out, tok, meta={"recipe": "fin-risk", "sentiment_artifact": str(sentiment_artifact),
                                        "n": {k: len(v) for k, v in splits.items()}})
    engine = InferenceEngine(out)
    te = splits["test"]
    col = LABELS.index("risk")
    p_fusion = engine.classify_series_proba(te.series, te.texts, "risk")[:, col]
    p_blind = engine.classify_series_proba(te.series, [NO_NEWS] * len(te), "risk")[:, col]
    # text-only: the sentiment score of the same news, through a logistic fit on the training sessions
    scorer = SentimentScorer(sent_model, ScoringSettings(explain=False))
    texts = sorted({t for d in splits.values() for t in d.texts if t != NO_NEWS})
    scored = scorer.score_articles([{"title": t, "summary": ""} for t in texts]) if texts else []
    scores = {t: s.score if s is not None else 0.0 for t, s in zip(texts, scored)}
    w = _logistic(text_only_features(scores, tr), tr.labels.astype(float))
    p_text = _predict_logistic(w, text_only_features(scores, te))
    report = {"n": {k: len(v) for k, v in splits.items()},
              "news_sessions": {k: int(v.news.sum()) for k, v in splits.items()}}
    for name, p in (("fusion", p_fusion), ("fusion_without_text", p_blind), ("text_only", p_text)):
        report[name] = {"all": risk_metrics(te.labels, p), "with_news": risk_metrics(te.labels[te.news], p[te.news])}
    f, t = report["fusion"]["all"], report["text_only"]["all"]
    report["kept"] = "fusion" if (f.get("roc_auc", 0) or 0) > (t.get("roc_auc", 0) or 0) else "text_only"
    (Path(out) / RISK_REPORT_FILE).write_text(json.dumps(report, indent=2))
    write_card(out, risk_card(out))
    return report


def captured_articles(feeds_dir: Path, feeds_file: Path) -> pd.DataFrame:
    """The articles of the captured feed files (named as in the feeds file's URLs), parsed and tagged like the worker
    does, without HTTP: columns ``ts`` (published, else seen), ``title``, ``tickers``."""
    feeds, entities = load_feeds_file(feeds_file)
    rows = []
    with FeedPoller(feeds, entities) as poller:
        arts = []
        for f in feeds:
            path = feeds_dir / f.url.rsplit("/", 1)[-1]
            if path.is_file():
                arts += poller.parse(path.read_bytes(), f)
        for a in Deduper().filter(arts):
            if a.tickers and a.published is not None:
                rows.append({"ts": pd.Timestamp(a.published), "title": a.title, "tickers": list(a.tickers)})
    frame = pd.DataFrame(rows, columns=["ts", "title", "tickers"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame.sort_values("ts").reset_index(drop=True)


class RiskScorer:
    """Live use of the fusion model: for each ticker, the probability of a risk event in the session after its latest
    close at or before ``as_of``, from the indicator window up to that close and the headlines that count for that
    session (after the previous close, up to the close), exactly as in training.

    Args:
        engine: An ``InferenceEngine`` over the ``fin-risk`` artifact (task ``risk``).
        steps: Window length (as trained).
    """

    def __init__(self, engine, steps: int = 30) -> None:
        self.engine, self.steps = engine, steps
        self.col = list(engine.tasks["risk"].labels).index("risk")

    def score(self, prices: Mapping[str, pd.DataFrame], articles: pd.DataFrame, as_of) -> pd.DataFrame:
        """Rows ``ticker, ts`` (latest close), ``window_start`` (previous close), ``p``, ``article_ids``, ``text``.

        Args:
            prices: Ticker -> price frame (``FinanceStore.prices``).
            articles: ``id, ts, title, tickers`` (``FinanceStore.articles``).
            as_of: Nothing after this time is used.
        """
        as_of = utc(as_of)
        rows, windows, texts = [], [], []
        n_features = self.engine.model.cfg.series_features
        for ticker, frame in sorted(prices.items()):
            frame = frame[frame.index <= as_of]
            if len(frame) < 2:
                continue
            ind = indicator_frame(frame)
            close, prev = ind.index[-1], ind.index[-2]
            mine = _about(articles, ticker)
            mine = mine[(mine["ts"] > prev) & (mine["ts"] <= close)].sort_values("ts") if len(mine) else mine
            titles = [str(t) for t in mine["title"]][:4] if len(mine) else []
            windows.append(risk_window(ind, len(ind), self.steps, n_features))
            texts.append(" | ".join(titles) if titles else NO_NEWS)
            rows.append({"ticker": ticker, "ts": close, "window_start": prev,
                         "article_ids": list(mine["id"]) if len(mine) else []})
        frame = pd.DataFrame(rows, columns=["ticker", "ts", "window_start", "article_ids"])
        frame["p"] = (self.engine.classify_series_proba(np.stack(windows), texts, "risk")[:, self.col] if rows
                      else pd.Series(dtype="float64"))
        frame["text"] = texts
        return frame
