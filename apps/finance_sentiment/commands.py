"""``trident fin ...``: the finance-sentiment commands of the one CLI; their flags are ``FinSettings`` fields.

The modules that load torch and the model are imported inside the command that needs them, so that building the CLI
(``trident --help``, any other app's command) does not pay for them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from apps.common.commands import CLIError, add_dashboard, command_adder, flag, settings_from_args
from apps.common.output import emit
from apps.common.settings import REPO_ROOT
from apps.finance_sentiment.fairness import FAIRNESS_FILE, measure, write_report
from apps.finance_sentiment.names import load_nlp
from apps.finance_sentiment.scoring import SentimentScorer
from apps.finance_sentiment.settings import FinSettings
from apps.finance_sentiment.store import FinanceStore

log = logging.getLogger(__name__)
RUNTIME = flag("core.inference.runtime", "--runtime")  # torch, torch-int8, onnx, onnx-int8 (TRIDENT_INFERENCE__RUNTIME)


def _settings(args) -> FinSettings:
    return settings_from_args(FinSettings, args)


def _as_of(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"--as-of must be an ISO time such as 2026-03-13T18:00:00Z, not {value!r}") from exc
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def fin_train(args) -> None:
    from apps.finance_sentiment.pipeline import soft_targets, train_sentiment  # heavy: torch, Lightning

    s = _settings(args)
    t = s.train
    data = Path(args.data) if args.data else s.core.data_dir / "financial_phrasebank" / "Sentences_50Agree.txt"
    fmt = args.format or ("phrasebank" if data.suffix == ".txt" else "csv")
    soft = soft_targets(data, fmt, t.soft_labels)
    report = train_sentiment(data, Path(args.out) if args.out else s.artifact_dir, fmt=fmt, members=t.members,
                             cfg=t.config(soft), soft_labels=soft, refit_epochs=t.refit_epochs,
                             entity_blind=t.entity_blind)
    emit(report, args.json)


def fin_distil(args) -> None:
    from apps.finance_sentiment.pipeline import distil_sentiment  # heavy: torch, Lightning

    s = _settings(args)
    data = Path(args.data) if args.data else s.core.data_dir / "financial_phrasebank" / "Sentences_50Agree.txt"
    fmt = args.format or ("phrasebank" if data.suffix == ".txt" else "csv")
    report = distil_sentiment(s.teacher_dir, data, Path(args.out) if args.out else s.artifact_dir, fmt=fmt,
                              settings=s.distil, unlabelled=s.unlabelled_paths, scoring=s.scoring)
    emit(report, args.json)


def fin_score(args) -> None:
    from apps.finance_sentiment.service import FinService  # heavy: torch

    s = _settings(args)
    svc = FinService(s, FinanceStore("sqlite://"), feeds=[], entities={})  # scoring only: an in-memory store
    result = svc.score_text(" ".join(args.text))
    if args.json:
        emit(result.model_dump(mode="json"), True)
        return
    console = Console()
    console.print(f"[bold]{result.label}[/bold]  score {result.score:+.3f}  "
                  + "  ".join(f"{k} {v:.3f}" for k, v in result.probs.items())
                  + ("  [yellow](text truncated)[/yellow]" if result.truncated else ""))
    table = Table("sentence", "label", "score", "weight")
    for sent in result.sentences:
        table.add_row(sent.text[:100], sent.label, f"{sent.score:+.3f}", f"{sent.weight:.2f}")
    console.print(table)
    for item in (result.explanation or {}).get("sentences", []):
        top = sorted(item["words"], key=lambda w: -abs(w[1]))[:6]
        console.print("  words that moved it: " + ", ".join(f"{w} {a:+.2f}" for w, a in top))


def _check_prices(s: FinSettings) -> None:
    if not s.prices_folder.is_dir():  # else no price is ever loaded and no indicator rule can fire
        raise CLIError(f"prices folder not found: {s.prices_folder} (--prices, FIN_PRICES_DIR)")


def _scorer(svc, allow_unscored: bool):
    """The service's scorer; None (and a warning) when no model exists and ``--allow-unscored`` was given."""
    try:
        return svc.scorer
    except Exception as exc:  # noqa: BLE001 - no model yet: store the news unscored and say so once
        if not allow_unscored:
            raise
        log.warning("no sentiment model (%s): storing articles unscored", exc)
        return None


def fin_monitor(args) -> None:
    from apps.finance_sentiment.monitor import Monitor, StopFlag  # heavy: torch
    from apps.finance_sentiment.service import FinService

    s = _settings(args)
    _check_prices(s)
    svc = FinService.build(s)
    scorer = _scorer(svc, args.allow_unscored)
    stop = StopFlag()
    stop.install()
    monitor = Monitor(s, svc.store, scorer)
    try:
        reports = monitor.run(once=args.once, stop=stop, as_of=_as_of(args.as_of),
                              on_cycle=lambda r: emit(r.model_dump(mode="json"), args.json) if not args.once else None)
    finally:
        monitor.close()
    if args.once and reports:
        emit(reports[-1].model_dump(mode="json"), args.json)


def fin_worker(args) -> None:
    from apps.finance_sentiment.feeds import load_feeds_file
    from apps.finance_sentiment.jobs import FeedJobs, queue_conninfo, run_worker
    from apps.finance_sentiment.service import FinService  # heavy: torch

    s = _settings(args)
    queue_conninfo(s.core.effective_database_url)  # PostgreSQL only: say so before loading anything
    _check_prices(s)
    as_of = _as_of(args.as_of)
    feeds, entities = load_feeds_file(s.feeds_path)
    svc = FinService.build(s)
    jobs = FeedJobs(s, svc.store, _scorer(svc, args.allow_unscored), feeds, entities, as_of=as_of,
                    on_report=lambda r: emit(r.model_dump(mode="json"), args.json))
    try:
        run_worker(s, jobs)
    finally:
        jobs.close()
        svc.store.close()


def fin_risk(args) -> None:
    if args.stride < 1:
        raise CLIError(f"--stride: must be >= 1, not {args.stride}")
    from apps.finance_sentiment.risk import build_risk_data, captured_articles, train_risk_model  # heavy: torch

    s = _settings(args)
    data = s.core.data_dir
    if not (data / "market_prices").is_dir():
        raise FileNotFoundError(f"no market_prices under {data} (set TRIDENT_DATA_DIR)")
    articles = captured_articles(data / "finance_feeds", s.feeds_path)
    splits = build_risk_data(data, args.tickers, articles, train_stride=args.stride)
    out = Path(args.out) if args.out else s.core.artifacts_dir / "fin-risk"
    emit(train_risk_model(splits, s.artifact_dir, out), args.json)


def fin_eval(args) -> None:
    from apps.finance_sentiment.model import load_sentiment_model  # heavy: torch, Lightning
    from apps.finance_sentiment.pipeline import eval_sentiment

    s = _settings(args)
    emit(eval_sentiment(load_sentiment_model(s.artifact_dir, s.core.inference), Path(args.data),
                        args.format), args.json)


def _progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def fin_fairness(args) -> None:
    from apps.finance_sentiment.model import load_sentiment_model, reads_entity_blind  # heavy: torch, Lightning
    from apps.finance_sentiment.pipeline import sentiment_task

    s = _settings(args)
    data = Path(args.data) if args.data else s.core.data_dir / "financial_phrasebank" / "Sentences_50Agree.txt"
    fmt = args.format or ("phrasebank" if data.suffix == ".txt" else "csv")
    if args.variants < 1 or args.top < 0:
        raise CLIError("--variants must be >= 1 and --top >= 0")
    scorer = SentimentScorer(load_sentiment_model(s.artifact_dir, s.core.inference), s.scoring)
    task = sentiment_task(data, fmt)
    out = Path(args.out) if args.out else s.artifact_dir / FAIRNESS_FILE
    if not out.parent.is_dir():
        raise FileNotFoundError(f"no folder {out.parent} to write the fairness report into")
    texts, labels = task.test[0], [task.labels[i] for i in task.test[1]]
    meta = {"artifact": str(s.artifact_dir), "entity_blind": reads_entity_blind(s.artifact_dir),
            "data": {"path": str(data), "format": fmt, "split": "test", "seed": task.source["seed"],
                     "sentences": len(texts)}}
    nlp = load_nlp()
    with _progress_bar(Console(stderr=True)) as bar:
        stages = {name: bar.add_task(name, total=None) for name in ("finding names", "scoring")}

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(stages["finding names" if stage == "names" else "scoring"], completed=done, total=total)

        report = measure(scorer, texts, labels, nlp=nlp, seed=args.seed, variants=args.variants, top=args.top,
                         progress=progress, **meta)
    write_report(report, out)
    card = None
    if out.resolve() == (s.artifact_dir / FAIRNESS_FILE).resolve():  # the report beside the artifact: its card says so
        from apps.finance_sentiment.card import write_cards  # heavy: torch, Lightning

        card = write_cards(s.artifact_dir)
    if args.json:
        emit(report.model_dump(mode="json"), True)
        return
    console = Console()
    table = Table("swap", "sentences", "pairs", "flips", "flip rate", "mean |shift|", title="Counterfactual fairness")
    for kind, f in [*report.kinds.items(), ("overall", report.overall)]:
        table.add_row(kind, str(f.n), str(f.pairs), str(f.flips),
                      "-" if f.flip_rate is None else f"{f.flip_rate:.2%}",
                      "-" if f.mean_abs_shift is None else f"{f.mean_abs_shift:.3f}")
    console.print(table)
    verdict = "meets" if report.meets_target else "misses"
    console.print(f"{verdict} the target of at most {report.target_flip_rate:.0%} flipped labels; test accuracy "
                  f"{report.test['accuracy']:.3f}, macro-F1 {report.test['macro_f1']:.3f}")
    if report.worst_flips:
        flips = Table("id", "swap", "label", "shift", title="Worst flips")
        for f in report.worst_flips[:10]:
            flips.add_row(str(f.id), f.swap, f"{f.before} -> {f.after}", f"{f.shift:.3f}")
        console.print(flips)
    console.print(f"report written to {out}" + (f", and the model card {card}" if card else ""))


def register(sub) -> None:
    """Add ``trident fin`` and its commands to the CLI."""
    fin = sub.add_parser("fin", help="finance sentiment: feeds, scoring, alerts, dashboard")
    c = fin.add_subparsers(dest="command", required=True)

    base = command_adder(c, FinSettings)
    files = (flag("feeds_path", "--feeds"), flag("rules_path", "--rules"), flag("prices_dir", "--prices"))

    sp = base("train", "fine-tune the sentiment model (default: Financial PhraseBank, 50%% agreement; FIN_TRAIN__...)",
              fin_train, "train.members", "train.soft_labels", "train.refit_epochs", "train.entity_blind")
    sp.add_argument("--data", help="labelled sentences (default: <data>/financial_phrasebank/Sentences_50Agree.txt)")
    sp.add_argument("--format", choices=["phrasebank", "csv"], help="default: phrasebank for .txt, else csv")
    sp.add_argument("--out", help="artifact folder (default: <artifacts>/fin)")
    sp = base("distil", "distil the sentiment teacher (the ensemble of `fin train`) into the one student model that "
              "is served (FIN_DISTIL__...)", fin_distil, "distil.teacher", "distil.layers", "distil.unlabelled",
              "distil.alpha", "distil.temperature")
    sp.add_argument("--data", help="labelled sentences the teacher was trained on (default: "
                                   "<data>/financial_phrasebank/Sentences_50Agree.txt)")
    sp.add_argument("--format", choices=["phrasebank", "csv"], help="default: phrasebank for .txt, else csv")
    sp.add_argument("--out", help="the student's artifact folder (default: <artifacts>/fin)")
    base("score", "score a text: sentences, article score, the words that moved it", fin_score,
         "artifact").add_argument("text", nargs="+")
    sp = base("monitor", "poll, score, store and alert in a loop (SIGTERM: finish the cycle, then stop)", fin_monitor,
              "artifact", *files)
    sp.add_argument("--once", action="store_true", help="run one cycle and exit")
    sp.add_argument("--as-of", help="evaluate the alert rules at this UTC time (replaying captured feeds)")
    sp.add_argument("--allow-unscored", action="store_true", help="store articles unscored when no model exists")
    sp = base("worker", "a queue worker on PostgreSQL: runs the feeds' poll jobs with the other workers (one job per "
              "feed per FIN_QUEUE__CRON tick; SIGTERM: finish the jobs in hand, then stop)", fin_worker, "artifact",
              *files, flag("queue.concurrency", "--concurrency"))
    sp.add_argument("--as-of", help="evaluate the alert rules at this UTC time (replaying captured feeds)")
    sp.add_argument("--allow-unscored", action="store_true", help="store articles unscored when no model exists")
    sp = base("risk", "train the fusion risk model (indicator window + news) and compare it with text-only scoring",
              fin_risk, "artifact", files[0])
    sp.add_argument("--tickers", nargs="+", default=["AAPL", "AMZN", "GOOGL", "MSFT", "NVDA", "TSLA", "JPM", "META"])
    sp.add_argument("--stride", type=int, default=2, help="keep every n-th training session")
    sp.add_argument("--out", help="artifact folder (default: <artifacts>/fin-risk)")
    sp = base("eval", "accuracy, macro-F1 and weighted F1 on labelled sentences", fin_eval, "artifact",
              RUNTIME)
    sp.add_argument("--data", required=True)
    sp.add_argument("--format", default="phrasebank", choices=["phrasebank", "csv"])
    sp = base("fairness", "counterfactual fairness: how often swapping a company name, a person's name or a pronoun "
              "changes a test sentence's label", fin_fairness, "artifact", RUNTIME)
    sp.add_argument("--data", help="labelled sentences whose test split is measured (default: "
                                   "<data>/financial_phrasebank/Sentences_50Agree.txt)")
    sp.add_argument("--format", choices=["phrasebank", "csv"], help="default: phrasebank for .txt, else csv")
    sp.add_argument("--variants", type=int, default=3, help="counterfactuals per sentence and name kind (default 3)")
    sp.add_argument("--seed", type=int, default=13, help="seed of the name draws (default 13)")
    sp.add_argument("--top", type=int, default=20, help="worst flips kept in the report (default 20)")
    sp.add_argument("--out", help=f"report file (default: <artifact>/{FAIRNESS_FILE}, which the dashboard shows)")
    add_dashboard(base, FinSettings, "dashboard", "start the analysts' dashboard (Streamlit)",
                  REPO_ROOT / "apps" / "finance_sentiment" / "ui" / "app.py", 8502, "artifact", *files)
