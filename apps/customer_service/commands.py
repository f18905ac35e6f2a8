"""``trident cs ...``: the customer-service commands of the one CLI; their flags are ``CSSettings`` fields.

The modules that load torch and the model are imported inside the command that needs them, so that building the CLI
(``trident --help``, any other app's command) does not pay for them.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from apps.common.commands import add_dashboard, command_adder, flag, settings_from_args
from apps.common.output import emit
from apps.common.settings import REPO_ROOT
from apps.customer_service.knowledge import read_queries
from apps.customer_service.settings import CSSettings
from apps.customer_service.store import Store

KB = flag("kb_path", "--kb")


def _settings(args) -> CSSettings:
    return settings_from_args(CSSettings, args)


def _engine(settings):
    from core.engine import InferenceEngine  # heavy: torch

    return InferenceEngine(settings.artifact_dir, settings.core.inference)


def cs_train(args) -> None:
    from apps.customer_service.pipeline import retrieval_pairs, train_cs  # heavy: torch, Lightning

    s = _settings(args)
    t = s.train
    pairs = []
    if args.pairs_queries:
        pairs = retrieval_pairs(args.pairs_queries, args.pairs_kb or s.kb_path, s.retrieval.index_answers)
    intents = None if args.no_intents else s.intents_path
    init = Path(args.continue_from) if args.continue_from else None
    out = train_cs(Path(args.out) if args.out else s.artifact_dir, intents, pairs,
                   intents_cfg=t.intents_config(continuing=init is not None), retrieval_cfg=t.retrieval_config(),
                   lora_r=t.lora_r, init_from=init, full=t.full_intents, full_cfg=t.full_config(),
                   refit_epochs=t.refit_epochs)
    emit({"artifact": str(out), "retrieval_pairs": len(pairs), "intents": str(intents)}, args.json)


def cs_distil(args) -> None:
    from apps.customer_service.pipeline import distil_intents  # heavy: torch, Lightning

    s = _settings(args)
    report = distil_intents(s.teacher_dir, s.intents_path, Path(args.out) if args.out else s.artifact_dir,
                            settings=s.distil, unlabelled=s.unlabelled_paths, test_path=s.distil.test_path)
    emit(report, args.json)


def cs_index(args) -> None:
    from apps.customer_service.index import build_index  # heavy: torch, faiss

    s = _settings(args)
    calib = read_queries(args.calibrate) if args.calibrate else ()
    build, retriever = build_index(s, _engine(s), calibration=calib)
    emit({"version": build.version, "entries": len(build.entries), "read": build.n_read,
          "duplicates": build.n_duplicates, "empty": build.n_empty, "redacted": build.n_redacted,
          "index": retriever.dense.kind if retriever.mode != "sparse" else "bm25", "folder": str(s.index_folder)},
         args.json)


def cs_eval_intents(args) -> None:
    from apps.customer_service.pipeline import eval_intents  # heavy: torch, Lightning

    emit(eval_intents(_engine(_settings(args)), Path(args.data)), args.json)


def cs_eval_retrieval(args) -> None:
    from apps.customer_service.pipeline import eval_retrieval  # heavy: torch, Lightning

    s = _settings(args)
    emit(eval_retrieval(s, _engine(s), Path(args.kb), Path(args.queries)), args.json)


def cs_learn(args) -> None:
    from apps.customer_service.pipeline import learn  # heavy: torch, Lightning

    s = _settings(args)
    store = Store(s.core.effective_database_url).create()
    emit(learn(s, store, read_queries(args.queries)), args.json)


def cs_chat(args) -> None:
    from apps.customer_service.service import USER_ERRORS, CSService  # heavy: torch, faiss

    console = Console()
    svc = CSService.build(_settings(args))
    # any bytes on standard input: what is not UTF-8 (a pipe) or the terminal's encoding becomes U+FFFD, never an error
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(encoding=sys.stdin.encoding if sys.stdin.isatty() else "utf-8", errors="replace")
    conv = svc.start_conversation("terminal")
    console.print(f"[dim]conversation {conv.id} - type a customer message, empty line or Ctrl-D to quit[/dim]")
    while True:
        try:
            text = input("customer> ")
        except EOFError:
            break
        if not text.strip():
            break
        try:
            _, reply = svc.customer_message(conv.id, text)
        except USER_ERRORS as exc:
            console.print(f"[red]error:[/red] {exc}")
            continue
        intent = f"{reply.intent.label} ({reply.intent.confidence:.2f})" if reply.intent else "-"
        status = escape(f"[{reply.action}, confidence {reply.confidence:.2f}, intent {intent}]")  # not markup
        console.print(f"[bold]bot[/bold] {status}")
        console.print(f"  {escape(reply.text)}")
        for h in reply.hits[:3]:
            console.print(f"  [dim]{h.rank}. {h.score:.3f} {escape(f'[{h.entry.id}] {h.entry.question}')}[/dim]")


def register(sub) -> None:
    """Add ``trident cs`` and its commands to the CLI."""
    cs = sub.add_parser("cs", help="customer service: knowledge base, bot, console")
    c = cs.add_subparsers(dest="command", required=True)

    base = command_adder(c, CSSettings)

    sp = base("train", "train the intents and retrieval adapters (CS_TRAIN__...)", cs_train,
              flag("intents_path", "--intents"), flag("train.full_intents", "--full-intents", nargs="?", const="1"),
              "train.refit_epochs")
    sp.add_argument("--no-intents", action="store_true", help="train retrieval only")
    sp.add_argument("--pairs-queries", help="queries (JSONL/CSV with query, faq_id) to train retrieval on")
    sp.add_argument("--pairs-kb", help="the KB those queries point into (default: CS_KB_PATH)")
    sp.add_argument("--out", help="artifact folder (default: <artifacts>/cs)")
    sp.add_argument("--continue-from", metavar="ARTIFACT",
                    help="continue training from this cs artifact (a warm restart; untrained parts are kept)")
    sp = base("distil", "distil the intent ensemble of a cs artifact (the teacher) into the one student model that "
              "the served artifact runs (CS_DISTIL__...)", cs_distil, "distil.teacher", "distil.layers",
              flag("intents_path", "--intents"), "distil.unlabelled", flag("distil.test_path", "--test"),
              "distil.alpha", "distil.temperature", KB)
    sp.add_argument("--out", help="the served artifact's folder (default: <artifacts>/cs)")
    sp = base("index", "ingest the KB and build the FAISS + BM25 index", cs_index, "artifact", KB)
    sp.add_argument("--calibrate", help="queries with gold ids to calibrate the answer confidence on")
    sp = base("eval-intents", "accuracy and macro-F1 of intent detection", cs_eval_intents, "artifact")
    sp.add_argument("--data", required=True, help="text,category CSV")
    sp = base("eval-retrieval", "hit@1, hit@5 and MRR of retrieval", cs_eval_retrieval, "artifact")
    sp.add_argument("--kb", required=True)
    sp.add_argument("--queries", required=True, help="JSONL/CSV with query and faq_id")
    base("learn", "fine-tune retrieval on the agents' feedback; before/after on fixed queries", cs_learn, "artifact",
         KB).add_argument("--queries", required=True, help="the fixed query set (query, faq_id)")
    base("chat", "chat with the bot in the terminal", cs_chat, "artifact", KB)
    add_dashboard(base, CSSettings, "console", "start the agents' console (Streamlit)",
                  REPO_ROOT / "apps" / "customer_service" / "ui" / "app.py", 8501, "artifact", KB)
