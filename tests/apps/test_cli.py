"""The CLI: help for every command, one-line errors, settings precedence."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from apps.cli import build_parser, main
from apps.common.settings import CoreSettings

CORE_COMMANDS = ["info", "pretrain", "finetune", "eval-images", "eval-text", "classify", "embed", "generate",
                 "artifacts"]


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
