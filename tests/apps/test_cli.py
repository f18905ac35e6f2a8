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
