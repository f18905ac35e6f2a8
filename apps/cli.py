"""The one CLI: ``trident {core,cs,fin,rec,data,settings,suite,demo} ...``.

- ``core``: the shared model: pretrain, finetune, train-images, eval-*, classify, embed, generate, artifacts, info;
- ``cs``, ``fin``, ``rec``: the three apps (``apps/<app>/commands.py``);
- ``data``: list the public data sets, fetch one into ``TRIDENT_DATA_DIR`` (``apps/common/data_commands.py``);
- ``settings``: every setting as an environment variable (``.env.example``, docs/settings.md; ``settings_doc.py``);
- ``suite``: ``prepare`` what the dashboards need, or bring the whole suite ``up`` (``apps/suite/``, ``make demo``);
- ``demo``: the core's terminal tour.

A command's flags are fields of its settings (``apps/common/commands.py``): a flag beats the environment (prefix
``TRIDENT_``, ``CS_``, ``FIN_``, ``REC_``), which beats the default. Errors a user can fix (a missing file, a bad
format, a value out of range, an unknown task) are printed as one line, ``error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from apps.common.commands import CLIError, flag, given, settings_flags, settings_from_args
from apps.common.data_commands import register as register_data
from apps.common.output import emit as _emit
from apps.common.output import setup_logging
from apps.common.privacy_commands import register as register_privacy
from apps.common.settings import CoreSettings, CoreTrainSettings, train_config
from apps.customer_service.commands import register as register_cs
from apps.demo import run_core_demo
from apps.finance_sentiment.commands import register as register_fin
from apps.recommender.commands import register as register_rec
from apps.settings_doc import register as register_settings
from apps.suite.commands import register as register_suite
from core.metrics import accuracy, precision_recall_f1

log = logging.getLogger("trident")


def _user_errors() -> tuple[type[BaseException], ...]:
    # heavy: torch (the services and core); only when an error is raised
    from apps.customer_service.service import USER_ERRORS as CS_ERRORS
    from apps.finance_sentiment.service import USER_ERRORS as FIN_ERRORS
    from apps.recommender.commands import user_errors as rec_errors
    from apps.suite.plan import SuiteError
    from core.artifacts import ArtifactError
    from core.data import DataFormatError
    from core.modalities import InputError
    from core.pretrained import PretrainedNotInstalled
    from core.tasks import UnknownTaskError
    from core.tokenizer import TokenizerError

    return (CLIError, ArtifactError, DataFormatError, InputError, PretrainedNotInstalled, UnknownTaskError,
            TokenizerError, FileNotFoundError, ValueError, SuiteError, *CS_ERRORS, *FIN_ERRORS, *rec_errors())


def _settings(args: argparse.Namespace) -> CoreSettings:
    return settings_from_args(CoreSettings, args)


def _artifact(args, s: CoreSettings, default: str) -> Path:
    return Path(args.artifact) if args.artifact else s.artifacts_dir / default


# ------------------------------------------------------------------------------------------------------ core commands
def core_info(args) -> None:
    s = _settings(args)
    if args.artifact:
        from core.artifacts import read_config  # heavy: torch

        cfg = read_config(args.artifact)
        info = {"artifact": str(args.artifact), "model": cfg["model"], "tasks": cfg["tasks"],
                "adapters": cfg.get("adapters", []), "meta": cfg.get("meta", {})}
        _emit(info, args.json)
        return
    import torch  # heavy

    arts = sorted(p.name for p in s.artifacts_dir.glob("*") if (p / "config.json").is_file()) \
        if s.artifacts_dir.is_dir() else []
    _emit({"torch": torch.__version__, "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
           "data_dir": str(s.data_dir), "data_dir_exists": s.data_dir.is_dir(),
           "artifacts_dir": str(s.artifacts_dir), "artifacts": ", ".join(arts) or "none"}, args.json)


def _train_config(args, training: str):
    """The config of the core's ``training`` (text, images, pretrain): its flags, then ``TRIDENT_TRAIN__...``."""
    return train_config(getattr(settings_from_args(CoreTrainSettings, args), training))


def core_pretrain(args) -> None:
    from core.recipes import pretrain, pretrain_corpus, read_corpus  # heavy: torch, Lightning

    s = _settings(args)
    cfg = _train_config(args, "pretrain")
    corpus = read_corpus(args.corpus) if args.corpus else pretrain_corpus(s.data_dir)
    out = pretrain(corpus, args.out or s.artifacts_dir / "text-pretrain", cfg, init_from=args.init_from)
    _emit_training_summary(out, args.json)


def core_finetune(args) -> None:
    from core.recipes import finetune_text, text_task  # heavy: torch, Lightning

    if not args.task:
        raise CLIError("give at least one --task NAME=FORMAT:PATH[:TEST_PATH]")
    cfg = _train_config(args, "text")
    tasks = []
    for spec in args.task:
        name, _, rest = spec.partition("=")
        fmt, _, paths = rest.partition(":")
        path, _, test_path = paths.partition(":")
        if not name or fmt not in ("csv", "phrasebank") or not path:
            raise CLIError(f"--task {spec!r}: expected NAME=csv:PATH[:TEST_PATH] or NAME=phrasebank:PATH")
        tasks.append(text_task(name, path, fmt, test_path=test_path or None))
    out = finetune_text(tasks, args.out or _settings(args).artifacts_dir / "text-custom", cfg, init_from=args.init_from)
    _emit_training_summary(out, args.json)


def _emit_training_summary(out: Path, as_json: bool) -> None:
    from core.artifacts import read_config  # heavy: torch, Lightning
    from core.train import is_global_zero

    if not is_global_zero():  # under ddp every process gets here: global rank 0 reports
        return
    meta = read_config(out)["meta"]
    _emit({"artifact": str(out), **meta.get("training", {})}, as_json)


def core_train_images(args) -> None:
    from core.recipes import train_image_classifier  # heavy: torch, Lightning

    s = _settings(args)
    cfg = _train_config(args, "images")
    if "images.lr" in given(CoreTrainSettings, args):  # one model trained from scratch: one learning rate
        cfg = cfg.model_copy(update={"head_lr": cfg.lr})
    out = train_image_classifier(s.data_dir, args.out or s.artifacts_dir / "images-fashion", cfg,
                                 init_artifact=args.init_artifact)
    _emit_training_summary(out, args.json)


def core_eval_images(args) -> None:
    from core.engine import InferenceEngine  # heavy: torch
    from core.recipes import load_image_npz

    s = _settings(args)
    images, labels = load_image_npz(args.data)
    eng = InferenceEngine(_artifact(args, s, "images-fashion"), quantize=args.int8)
    pred = eng.classify_images_proba(images).argmax(-1)
    _emit({"accuracy": accuracy(labels, pred), "n": int(len(labels))}, args.json)


def core_eval_text(args) -> None:
    from core.data import read_labelled_texts  # heavy: torch, Lightning
    from core.engine import InferenceEngine

    s = _settings(args)
    eng = InferenceEngine(_artifact(args, s, "text-multitask"), quantize=args.int8)
    texts, raw = read_labelled_texts(args.data, args.format)
    labels = eng.model.task(args.task).labels
    unknown = sorted(set(raw) - set(labels))
    if unknown:
        raise CLIError(f"{args.data} has labels the task {args.task!r} does not know: {unknown[:5]}")
    pred = eng.classify_proba(texts, args.task).argmax(-1)
    y = [labels.index(r) for r in raw]
    _emit({"accuracy": accuracy(y, pred), "macro_f1": precision_recall_f1(y, pred)["f1"],
           "weighted_f1": precision_recall_f1(y, pred, average="weighted")["f1"], "n": len(y)}, args.json)


def core_classify(args) -> None:
    from core.engine import InferenceEngine  # heavy: torch

    eng = InferenceEngine(_artifact(args, _settings(args), "text-multitask"))
    task = args.task or next((n for n, t in eng.tasks.items() if t.kind == "classify"), None)
    if task is None:
        raise CLIError("this artifact has no text classification task")
    for text, p in zip(args.text, eng.classify(args.text, task)):
        top = dict(sorted(p.probs.items(), key=lambda kv: -kv[1])[:3])
        _emit({"text": text[:80], "task": task, "label": p.label, "score": round(p.score, 4),
               "top": {k: round(v, 4) for k, v in top.items()}}, args.json)


def core_embed(args) -> None:
    from core.engine import InferenceEngine  # heavy: torch

    eng = InferenceEngine(_artifact(args, _settings(args), "text-multitask"))
    vecs = eng.embed(args.text)
    out = {"dim": int(vecs.shape[1]), "n": len(args.text)}
    if len(args.text) > 1:
        sims = vecs @ vecs.T
        out["cosine"] = np.round(sims, 4).tolist()
    _emit(out, args.json)


def core_generate(args) -> None:
    from core.engine import InferenceEngine  # heavy: torch
    from core.generation import GenerationConfig

    eng = InferenceEngine(_artifact(args, _settings(args), "text-pretrain"))
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, strategy=args.strategy, temperature=args.temperature,
                           top_k=args.top_k, top_p=args.top_p, num_beams=args.num_beams, seed=args.seed)
    for prompt, text in zip(args.prompt, eng.generate(args.prompt, cfg)):
        _emit({"prompt": prompt, "generated": text}, args.json)


def core_artifacts(args) -> None:
    from core.recipes import build_artifacts  # heavy: torch, Lightning

    s = _settings(args)
    if not s.data_dir.is_dir():
        raise CLIError(f"data folder not found: {s.data_dir} (set TRIDENT_DATA_DIR)")
    configs = settings_from_args(CoreTrainSettings, args).configs()
    done = build_artifacts(s.data_dir, s.artifacts_dir, configs, args.only or None, force=args.force)
    _emit({k: str(v) for k, v in done.items()}, args.json)


def demo(args) -> None:
    run_core_demo(_settings(args))


# ------------------------------------------------------------------------------------------------------ parser
def common(sp: argparse.ArgumentParser, artifact: bool = True) -> argparse.ArgumentParser:
    """The flags every core command takes: ``--json``, the folders (``CoreSettings``) and ``--artifact``."""
    sp.add_argument("--json", action="store_true", help="print JSON")
    settings_flags(sp, CoreSettings, ("data_dir", "artifacts_dir"))
    if artifact:
        sp.add_argument("--artifact", help="artifact folder (default: the one under --artifacts-dir)")
    return sp


def training(sp: argparse.ArgumentParser, name: str) -> None:
    """The flags of a core training: ``--out``, ``--init-from`` and the fields of ``CoreTrainSettings.<name>``."""
    sp.add_argument("--out", help="artifact folder to write")
    sp.add_argument("--init-from", default="minilm",
                    help="minilm (pretrained), a preset (tiny, small, base) or an artifact folder, e.g. one "
                         "`trident core pretrain` wrote")
    fields = CoreTrainSettings.model_fields[name].annotation.model_fields
    settings_flags(sp, CoreTrainSettings, [flag(f"{name}.max_epochs", "--epochs", "--max-epochs"),
                                           *(f"{name}.{f}" for f in fields if f != "max_epochs")])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trident", description="Trident: one multimodal core, three apps.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="group", required=True)

    core = sub.add_parser("core", help="the shared model: train, evaluate, inspect, generate")
    cs = core.add_subparsers(dest="command", required=True)

    sp = common(cs.add_parser("info", help="environment, or one artifact's config and training history"))
    sp.set_defaults(fn=core_info)

    sp = common(cs.add_parser("pretrain", help="continued pretraining (masked + next-token) on a text corpus "
                                               "(TRIDENT_TRAIN__PRETRAIN__...)"), False)
    training(sp, "pretrain")
    sp.add_argument("--corpus", nargs="*", help="text files (a text per line), CSV or PhraseBank files; default: "
                                                "the training parts of the data sets")
    sp.set_defaults(fn=core_pretrain)

    sp = common(cs.add_parser("finetune", help="multi-task fine-tuning on labelled text files "
                                               "(TRIDENT_TRAIN__TEXT__...)"), False)
    training(sp, "text")
    sp.add_argument("--task", action="append", help="NAME=csv:PATH[:TEST_PATH] or NAME=phrasebank:PATH (repeat)")
    sp.set_defaults(fn=core_finetune)

    sp = common(cs.add_parser("train-images", help="train the Fashion-MNIST image artifact (or continue one) "
                                                   "(TRIDENT_TRAIN__IMAGES__...)"), False)
    training(sp, "images")
    sp.add_argument("--from", dest="init_artifact", help="continue from this image artifact (a warm restart)")
    sp.set_defaults(fn=core_train_images)
    sp = common(cs.add_parser("eval-images", help="accuracy of the image artifact on an npz (images, labels)"))
    sp.add_argument("--data", required=True, help="npz with images (N, H, W) uint8 and labels (N,)")
    sp.add_argument("--int8", action="store_true", help="int8 dynamic quantisation")
    sp.set_defaults(fn=core_eval_images)

    sp = common(cs.add_parser("eval-text", help="accuracy and F1 of a text task on a labelled file"))
    sp.add_argument("--data", required=True)
    sp.add_argument("--format", default="csv", choices=["csv", "phrasebank"])
    sp.add_argument("--task", required=True)
    sp.add_argument("--int8", action="store_true")
    sp.set_defaults(fn=core_eval_text)

    sp = common(cs.add_parser("classify", help="classify texts with a text task"))
    sp.add_argument("text", nargs="+")
    sp.add_argument("--task")
    sp.set_defaults(fn=core_classify)

    sp = common(cs.add_parser("embed", help="embed texts; prints the dimension and pairwise cosines"))
    sp.add_argument("text", nargs="+")
    sp.set_defaults(fn=core_embed)

    sp = common(cs.add_parser("generate", help="continue prompts with text"))
    sp.add_argument("prompt", nargs="+")
    sp.add_argument("--strategy", default="greedy", choices=["greedy", "sample", "beam"])
    sp.add_argument("--max-new-tokens", type=int, default=24)
    sp.add_argument("--temperature", type=float, default=1.0)
    sp.add_argument("--top-k", type=int, default=0)
    sp.add_argument("--top-p", type=float, default=1.0)
    sp.add_argument("--num-beams", type=int, default=4)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=core_generate)

    sp = common(cs.add_parser("artifacts", help="train every benchmark artifact that is missing"), False)
    sp.add_argument("--only", nargs="*", help="artifact names")
    sp.add_argument("--force", action="store_true", help="retrain even if present")
    sp.set_defaults(fn=core_artifacts)

    register_cs(sub)
    register_rec(sub)
    register_fin(sub)
    register_settings(sub)
    register_data(sub)
    register_privacy(sub)
    register_suite(sub)

    sp = sub.add_parser("demo", help="the core end to end in the terminal: train what is missing, then classify, "
                                     "embed and generate")
    settings_flags(sp, CoreSettings, ("data_dir", "artifacts_dir"))
    sp.set_defaults(fn=demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        args.fn(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for what the user can fix, a traceback for real bugs
        if isinstance(exc, _user_errors()):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
