"""The one CLI: ``trident {core,cs,fin,rec,privacy,users,data,settings,suite,demo} ...``.

``core`` is the shared model; ``cs``, ``fin``, ``rec`` the three apps (``apps/<app>/commands.py``); ``privacy`` scores
the PII detector and forgets a person; ``users`` manages the dashboards' accounts; ``data`` the public data sets;
``settings`` every setting as an environment variable; ``suite`` prepares or brings up the whole suite; ``demo`` is
the core's terminal tour. A command's flags are fields of its settings: a flag beats the
environment, which beats the default. Errors a user can fix print one line, ``error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from apps.common.commands import (
    CLIError,
    Parser,
    command_adder,
    error_line,
    flag,
    given,
    settings_flags,
    settings_from_args,
)
from apps.common.data_commands import register as register_data
from apps.common.output import emit, setup_logging
from apps.common.privacy_commands import register as register_privacy
from apps.common.settings import CoreSettings, CoreTrainSettings, train_config
from apps.common.users_commands import register as register_users
from apps.customer_service.commands import register as register_cs
from apps.demo import run_core_demo
from apps.finance_sentiment.commands import register as register_fin
from apps.forget import register as register_forget
from apps.recommender.commands import register as register_rec
from apps.settings_doc import register as register_settings
from apps.suite.commands import register as register_suite
from core.metrics import accuracy, precision_recall_f1


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
            TokenizerError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, ValueError,
            SuiteError, *CS_ERRORS, *FIN_ERRORS, *rec_errors())


def _settings(args: argparse.Namespace) -> CoreSettings:
    return settings_from_args(CoreSettings, args)


def _artifact(args, default: str) -> Path:
    return Path(args.artifact) if args.artifact else _settings(args).artifacts_dir / default


# ------------------------------------------------------------------------------------------------------ core commands
def core_info(args) -> None:
    s = _settings(args)
    if args.artifact:
        from core.artifacts import read_config  # heavy: torch

        cfg = read_config(args.artifact)
        emit({"artifact": str(args.artifact), "model": cfg["model"], "tasks": cfg["tasks"],
              "adapters": cfg.get("adapters", []), "meta": cfg.get("meta", {})}, args.json)
        return
    import torch  # heavy

    arts = sorted(p.name for p in s.artifacts_dir.glob("*") if (p / "config.json").is_file())
    emit({"torch": torch.__version__, "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
          "data_dir": str(s.data_dir), "data_dir_exists": s.data_dir.is_dir(),
          "artifacts_dir": str(s.artifacts_dir), "artifacts": ", ".join(arts) or "none"}, args.json)


def core_model_card(args) -> None:
    from apps.model_cards import write_model_card  # heavy: torch, the apps' artifact readers

    path, markdown = write_model_card(args.artifact)
    if args.json:
        emit({"artifact": str(args.artifact), "card": str(path), "markdown": markdown}, True)
        return
    print(markdown)


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
    emit({"artifact": str(out), **read_config(out)["meta"].get("training", {})}, as_json)


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

    images, labels = load_image_npz(args.data)
    eng = InferenceEngine(_artifact(args, "images-fashion"), _settings(args).inference)
    pred = eng.classify_images_proba(images).argmax(-1)
    emit({"accuracy": accuracy(labels, pred), "n": int(len(labels))}, args.json)


def core_eval_text(args) -> None:
    from core.data import read_labelled_texts  # heavy: torch, Lightning
    from core.engine import InferenceEngine

    eng = InferenceEngine(_artifact(args, "text-multitask"), _settings(args).inference)
    texts, raw = read_labelled_texts(args.data, args.format)
    labels = eng.model.task(args.task).labels
    if unknown := sorted(set(raw) - set(labels)):
        raise CLIError(f"{args.data} has labels the task {args.task!r} does not know: {unknown[:5]}")
    pred = eng.classify_proba(texts, args.task).argmax(-1)
    y = [labels.index(r) for r in raw]
    emit({"accuracy": accuracy(y, pred), "macro_f1": precision_recall_f1(y, pred)["f1"],
          "weighted_f1": precision_recall_f1(y, pred, average="weighted")["f1"], "n": len(y)}, args.json)


def core_classify(args) -> None:
    from core.engine import InferenceEngine  # heavy: torch

    eng = InferenceEngine(_artifact(args, "text-multitask"), _settings(args).inference)
    task = args.task or next((n for n, t in eng.tasks.items() if t.kind == "classify"), None)
    if task is None:
        raise CLIError("this artifact has no text classification task")
    for text, p in zip(args.text, eng.classify(args.text, task)):
        top = sorted(p.probs.items(), key=lambda kv: -kv[1])[:3]
        emit({"text": text[:80], "task": task, "label": p.label, "score": round(p.score, 4),
              "top": {k: round(v, 4) for k, v in top}}, args.json)


def core_embed(args) -> None:
    from core.engine import InferenceEngine  # heavy: torch

    eng = InferenceEngine(_artifact(args, "text-multitask"), _settings(args).inference)
    vecs = eng.embed(args.text)
    out = {"dim": int(vecs.shape[1]), "n": len(args.text)}
    if len(args.text) > 1:
        out["cosine"] = np.round(vecs @ vecs.T, 4).tolist()
    emit(out, args.json)


def core_generate(args) -> None:
    from core.engine import InferenceEngine  # heavy: torch
    from core.generation import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, strategy=args.strategy, temperature=args.temperature,
                           top_k=args.top_k, top_p=args.top_p, num_beams=args.num_beams, seed=args.seed)
    eng = InferenceEngine(_artifact(args, "text-pretrain"))  # after the flags are checked
    for prompt, text in zip(args.prompt, eng.generate(args.prompt, cfg)):
        emit({"prompt": prompt, "generated": text}, args.json)


def core_export_onnx(args) -> None:
    from core.runtime import export_onnx  # heavy: torch, onnx

    if not args.artifact:
        raise CLIError("name the artifact folder to export: --artifact DIR")
    manifest = export_onnx(Path(args.artifact), force=args.force)
    emit({"artifact": str(args.artifact), "exported": manifest["exported"], "graphs": ", ".join(manifest["graphs"]),
          "tasks": ", ".join(manifest["tasks"]) or "none",
          "parity_fp32_probs": max(p["fp32_probs"] for p in manifest["parity"].values()),
          "parity_int8_probs": max(p["int8_probs"] for p in manifest["parity"].values())}, args.json)


def core_artifacts(args) -> None:
    from core.recipes import build_artifacts  # heavy: torch, Lightning

    s = _settings(args)
    if not s.data_dir.is_dir():
        raise CLIError(f"data folder not found: {s.data_dir} (set TRIDENT_DATA_DIR)")
    configs = settings_from_args(CoreTrainSettings, args).configs()
    done = build_artifacts(s.data_dir, s.artifacts_dir, configs, args.only or None, force=args.force)
    emit({k: str(v) for k, v in done.items()}, args.json)


# ------------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="trident", description="Trident: one multimodal core, three apps.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="group", required=True)

    core = sub.add_parser("core", help="the shared model: train, evaluate, inspect, generate")
    # every core command takes --json and the folders (CoreSettings)
    add = command_adder(core.add_subparsers(dest="command", required=True), CoreSettings, ("data_dir", "artifacts_dir"))

    def with_artifact(name: str, help_: str, fn, *fields) -> argparse.ArgumentParser:
        sp = add(name, help_, fn, *fields)
        sp.add_argument("--artifact", help="artifact folder (default: the one under --artifacts-dir)")
        return sp

    def training(name: str, help_: str, fn, part: str) -> argparse.ArgumentParser:
        """``--out``, ``--init-from`` and the fields of ``CoreTrainSettings.<part>``."""
        sp = add(name, help_, fn)
        sp.add_argument("--out", help="artifact folder to write")
        sp.add_argument("--init-from", default="minilm",
                        help="minilm (pretrained), a preset (tiny, small, base) or an artifact folder, e.g. one "
                             "`trident core pretrain` wrote")
        fields = CoreTrainSettings.model_fields[part].annotation.model_fields
        settings_flags(sp, CoreTrainSettings, [flag(f"{part}.max_epochs", "--epochs", "--max-epochs"),
                                               *(f"{part}.{f}" for f in fields if f != "max_epochs")])
        return sp

    runtime = flag("inference.runtime", "--runtime")  # TRIDENT_INFERENCE__RUNTIME
    with_artifact("info", "environment, or one artifact's config and training history", core_info)
    add("model-card", "write an artifact's model card (MODEL_CARD.md) again from its records, and print it",
        core_model_card).add_argument("--artifact", required=True,
                                      help="artifact folder: a core, cs, fin, fin-risk or rec artifact, or a member")

    sp = training("pretrain", "continued pretraining (masked + next-token) on a text corpus "
                              "(TRIDENT_TRAIN__PRETRAIN__...)", core_pretrain, "pretrain")
    sp.add_argument("--corpus", nargs="*", help="text files (a text per line), CSV or PhraseBank files; default: "
                                                "the training parts of the data sets")

    sp = training("finetune", "multi-task fine-tuning on labelled text files (TRIDENT_TRAIN__TEXT__...)",
                  core_finetune, "text")
    sp.add_argument("--task", action="append", help="NAME=csv:PATH[:TEST_PATH] or NAME=phrasebank:PATH (repeat)")

    sp = training("train-images", "train the Fashion-MNIST image artifact (or continue one) "
                                  "(TRIDENT_TRAIN__IMAGES__...)", core_train_images, "images")
    sp.add_argument("--from", dest="init_artifact", help="continue from this image artifact (a warm restart)")

    sp = with_artifact("eval-images", "accuracy of the image artifact on an npz (images, labels)", core_eval_images,
                       runtime)
    sp.add_argument("--data", required=True, help="npz with images (N, H, W) uint8 and labels (N,)")

    sp = with_artifact("eval-text", "accuracy and F1 of a text task on a labelled file", core_eval_text, runtime)
    sp.add_argument("--data", required=True)
    sp.add_argument("--format", default="csv", choices=["csv", "phrasebank"])
    sp.add_argument("--task", required=True)

    sp = with_artifact("classify", "classify texts with a text task", core_classify, runtime)
    sp.add_argument("text", nargs="+")
    sp.add_argument("--task")

    sp = with_artifact("embed", "embed texts; prints the dimension and pairwise cosines", core_embed, runtime)
    sp.add_argument("text", nargs="+")

    sp = with_artifact("export-onnx", "export an artifact's text graph to ONNX (fp32 and int8) beside it, unless a "
                                      "current export is there", core_export_onnx)
    sp.add_argument("--force", action="store_true", help="export even if a current export is there")

    sp = with_artifact("generate", "continue prompts with text", core_generate)
    sp.add_argument("prompt", nargs="+")
    sp.add_argument("--strategy", default="greedy", choices=["greedy", "sample", "beam"])
    for option, type_, default in (("--max-new-tokens", int, 24), ("--temperature", float, 1.0), ("--top-k", int, 0),
                                   ("--top-p", float, 1.0), ("--num-beams", int, 4), ("--seed", int, 0)):
        sp.add_argument(option, type=type_, default=default)

    sp = add("artifacts", "train every benchmark artifact that is missing", core_artifacts)
    sp.add_argument("--only", nargs="*", help="artifact names")
    sp.add_argument("--force", action="store_true", help="retrain even if present")

    for register in (register_cs, register_rec, register_fin, register_settings, register_data, register_suite):
        register(sub)
    register_users(sub)
    privacy = sub.add_parser("privacy", help="personal data: score the PII detector, forget a person, retention, "
                                             "the audit trail").add_subparsers(dest="command", required=True)
    register_privacy(privacy)
    register_forget(privacy)

    sp = sub.add_parser("demo", help="the core end to end in the terminal: train what is missing, then classify, "
                                     "embed and generate")
    settings_flags(sp, CoreSettings, ("data_dir", "artifacts_dir"))
    sp.set_defaults(fn=lambda args: run_core_demo(_settings(args)))
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
            print(f"error: {error_line(exc)}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
