"""What a user's terminal shows around a command's result: each log line once, no library chatter, no third-party
deprecation warnings (``apps.common.output.setup_logging`` and ``core.train.route_lightning_logs``).

Each case runs in its own process: logging and warning filters are process-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from apps.common.settings import REPO_ROOT

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600)


def test_training_prints_each_line_once_and_none_of_lightnings_notes(tmp_path):
    proc = run(["-m", "apps.cli", "core", "finetune", "--init-from", "tiny", "--task",
                f"intents=csv:{REPO_ROOT / 'samples' / 'intents.csv'}", "--epochs", "1", "--batch-size", "64",
                "--precision", "32-true", "--out", str(tmp_path / "art"), "--json"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["epochs"] == 1  # the result alone on stdout
    for noise in ("GPU available", "TPU available", "Tip:", "is deprecated", "INFO"):
        assert noise not in proc.stderr, noise
    lines = [ln.strip() for ln in proc.stderr.replace("\r", "\n").splitlines()]
    messages = [ln for ln in lines if ln and "it/s" not in ln and "s/it" not in ln]  # progress bars aside
    assert len(messages) == len(set(messages)), messages


SNIPPET = """
import logging, sys, warnings
from apps.common.output import setup_logging
setup_logging(verbose=sys.argv[1] == "verbose")
lib = logging.getLogger("somelib")
lib.setLevel(logging.DEBUG)  # as bm25s does when imported
lib.debug("library detail")
lib.warning("library warning")
warnings.warn_explicit("old api of a library", FutureWarning, "somelib/x.py", 1, module="somelib.x")
warnings.warn_explicit("old api of ours", FutureWarning, "core/x.py", 1, module="core.x")
"""


def test_one_handler_at_the_chosen_level_and_only_our_own_deprecations():
    quiet = run(["-c", SNIPPET, "quiet"])
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.count("library warning") == 1 and "library detail" not in quiet.stderr
    assert "old api of ours" in quiet.stderr and "old api of a library" not in quiet.stderr
    verbose = run(["-c", SNIPPET, "verbose"])
    assert verbose.stderr.count("library detail") == 1 and verbose.stderr.count("library warning") == 1
