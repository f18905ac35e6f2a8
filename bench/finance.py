"""Benchmark of the finance-sentiment monitor. Prints one JSON object (and writes it to --out), each figure beside a
baseline measured in the same run:

- scoring: sentences/s of the sentiment model, fp32 against int8 dynamic quantisation (and the agreement of their
  labels), on PhraseBank sentences (or the sample sentences without the data sets);
- one full poll cycle over the ten captured feeds of ``finance_feeds`` served by a local HTTP server: fetch + parse +
  de-duplicate, then scoring every new article (without and with explanations, as the monitor's settings say:
  ``FIN_SCORING__*``, the served runtime ``TRIDENT_INFERENCE__*``), then the one-transaction store;
- storage: article rows (with scores and sentence scores) and price rows written per second to SQLite and to
  PostgreSQL by the store's batched writes, against a one-row-per-transaction loop on the same database.

Usage: python bench/finance.py [--out bench/results/finance.json] [--artifact artifacts/fin] [--only cycle]
(``--only`` measures one part and writes the JSON only to an ``--out`` given.)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.finance_sentiment.feeds import Article, Deduper, FeedPoller, FeedState, load_feeds_file  # noqa: E402
from apps.finance_sentiment.indicators import read_prices  # noqa: E402
from apps.finance_sentiment.model import load_sentiment_model  # noqa: E402
from apps.finance_sentiment.pipeline import read_sentiment_data  # noqa: E402
from apps.finance_sentiment.scoring import SentimentScorer  # noqa: E402
from apps.finance_sentiment.settings import FinSettings, ScoringSettings  # noqa: E402
from apps.finance_sentiment.store import FinanceStore  # noqa: E402
from core.config import InferenceConfig  # noqa: E402

PG_ADMIN = os.environ.get("TRIDENT_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def bench_scoring(artifact: Path, sentences: list[str]) -> dict:
    out = {"sentences": len(sentences)}
    labels = {}
    for name, runtime in (("fp32", "torch"), ("int8", "torch-int8")):
        scorer = SentimentScorer(load_sentiment_model(artifact, InferenceConfig(runtime=runtime)),
                                 ScoringSettings(batch_size=64))
        scorer.probabilities(sentences[:64])  # warm-up
        t = time.perf_counter()
        p = scorer.probabilities(sentences)
        dt = time.perf_counter() - t
        labels[name] = p.argmax(-1)
        out[name] = {"sentences_per_s": round(len(sentences) / dt, 1), "seconds": round(dt, 2)}
    out["int8_speedup"] = round(out["int8"]["sentences_per_s"] / out["fp32"]["sentences_per_s"], 2)
    out["int8_label_agreement"] = round(float((labels["fp32"] == labels["int8"]).mean()), 4)
    return out


def bench_cycle(artifact: Path, feeds_dir: Path, inference: InferenceConfig, scoring: ScoringSettings) -> dict:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(feeds_dir)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        feeds, entities = load_feeds_file(ROOT / "samples" / "feeds.toml")
        feeds = [f.model_copy(update={"url": f.url.replace("http://127.0.0.1:8765", base)}) for f in feeds]
        states = {f.name: FeedState() for f in feeds}
        with FeedPoller(feeds, entities) as poller:
            t = time.perf_counter()
            results = poller.poll_due(states)
            fetched = [a for r in results.values() for a in r.articles]
            new = Deduper().filter(fetched)
            t_poll = time.perf_counter() - t
        model = load_sentiment_model(artifact, inference)
        plain = SentimentScorer(model, scoring.model_copy(update={"explain": False}))
        plain.score_articles(new[:8])  # warm-up (an ONNX session opens on first use)
        t = time.perf_counter()
        scores = plain.score_articles(new)
        t_score = time.perf_counter() - t
        explained = SentimentScorer(model, scoring.model_copy(update={"explain": True}))
        t = time.perf_counter()
        explained_scores = explained.score_articles(new)
        t_explain = time.perf_counter() - t
        store = FinanceStore("sqlite://").create()
        t = time.perf_counter()
        with store.batch():
            store.save_articles(new, scores)
        t_store = time.perf_counter() - t
        n_sent = sum(len(s.sentences) for s in scores if s is not None)
        n_explained = sum(len(s.explanation["sentences"]) for s in explained_scores if s and s.explanation)
        return {"feeds": len(feeds), "statuses": sorted({r.status for r in results.values()}),
                "entries": len(fetched), "new_articles": len(new), "sentences": n_sent,
                "runtime": inference.runtime, "explain_sentences": scoring.explain_sentences,
                "sentences_explained": n_explained,
                "poll_parse_dedup_s": round(t_poll, 3), "score_s": round(t_score, 2),
                "score_with_explanations_s": round(t_explain, 2), "store_s": round(t_store, 3),
                "cycle_s": round(t_poll + t_score + t_store, 2),
                "cycle_with_explanations_s": round(t_poll + t_explain + t_store, 2)}
    finally:
        httpd.shutdown()


def _articles(n: int) -> tuple[list[Article], list[dict]]:
    now = datetime(2026, 3, 13, tzinfo=UTC)
    arts, scores = [], []
    for i in range(n):
        arts.append(Article(id=f"bench-{i}", url=f"http://bench.example/{i}", title=f"Headline {i}",
                            summary=f"Sentence one of {i}. Sentence two.", published=now - timedelta(minutes=i),
                            seen_at=now, source="bench", content_hash=f"{i:064x}", tickers=["AAA"]))
        scores.append({"score": 0.1, "label": "neutral", "probs": {"positive": 0.3, "neutral": 0.5, "negative": 0.2},
                       "sentences": [{"text": "Sentence one.", "label": "neutral", "positive": 0.3, "neutral": 0.5,
                                      "negative": 0.2, "score": 0.1}] * 2})
    return arts, scores


def bench_store(url: str, n_articles: int, price_file: Path) -> dict:
    store = FinanceStore(url).create()
    arts, scores = _articles(n_articles)
    t = time.perf_counter()
    store.save_articles(arts, scores)
    batched = time.perf_counter() - t
    arts2, scores2 = _articles(n_articles)
    arts2 = [a.model_copy(update={"id": a.id + "-r", "url": a.url + "-r"}) for a in arts2]
    n_loop = min(300, n_articles)
    t = time.perf_counter()
    for a, s in zip(arts2[:n_loop], scores2[:n_loop]):
        store.save_articles([a], [s])  # one transaction per article: the baseline
    loop = time.perf_counter() - t
    prices = read_prices(price_file)
    t = time.perf_counter()
    n_prices = store.save_prices("BENCH", prices)
    t_prices = time.perf_counter() - t
    store.close()
    return {"article_rows_per_s": round(n_articles / batched, 1),
            "article_rows_per_s_one_per_transaction": round(n_loop / loop, 1),
            "price_rows_per_s": round(n_prices / t_prices, 1), "articles": n_articles, "price_rows": n_prices}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="default: bench/results/finance.json, unless --only")
    ap.add_argument("--artifact", default=None)
    ap.add_argument("--articles", type=int, default=5000)
    ap.add_argument("--only", choices=["scoring", "cycle", "store"], default=None, help="measure this part alone")
    args = ap.parse_args()
    out = args.out or (None if args.only else str(ROOT / "bench" / "results" / "finance.json"))
    settings = FinSettings()
    core = settings.core
    artifact = Path(args.artifact) if args.artifact else settings.artifact_dir
    data = core.data_dir
    pb = data / "financial_phrasebank" / "Sentences_50Agree.txt"
    sentences = read_sentiment_data(pb, "phrasebank")[0][:2000] if pb.is_file() else \
        read_sentiment_data(ROOT / "samples" / "fin_sentences.csv", "csv")[0] * 20
    result = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "python": platform.python_version(), "torch": torch.__version__},
              "artifact": str(artifact)}
    if args.only in (None, "scoring"):
        result["scoring"] = bench_scoring(artifact, sentences)
    feeds_dir = data / "finance_feeds"
    if feeds_dir.is_dir() and args.only in (None, "cycle"):
        result["poll_cycle"] = bench_cycle(artifact, feeds_dir, core.inference, settings.scoring)
    if args.only not in (None, "store"):
        _emit(result, out)
        return
    price_file = data / "market_prices" / "AAPL.csv"
    if not price_file.is_file():
        price_file = ROOT / "samples" / "prices" / "NWT.csv"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result["store"] = {"sqlite": bench_store(f"sqlite:///{tmp}/bench.db", args.articles, price_file)}
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"trident_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            url = admin.url.set(database=name).render_as_string(hide_password=False)
            result["store"]["postgresql"] = bench_store(url, args.articles, price_file)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except sa.exc.OperationalError as exc:
        result["store"]["postgresql"] = {"skipped": str(exc.orig).splitlines()[0]}
    _emit(result, out)


def _emit(result: dict, out: str | None) -> None:
    text = json.dumps(result, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
