"""Every row of the bad-input table (``tests/bad_inputs.py``) through the real CLI, in fresh processes.

The rows run in batches: each batch is one ``python -m tests.bad_inputs`` process that calls ``apps.cli.main`` for its
rows in turn (starting Python and importing the apps once per batch instead of once per row), two batches at a time.
Rows marked ``solo`` (bytes on standard input as a pipe gives them) run as their own ``python -m apps.cli`` process.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apps.common.settings import REPO_ROOT
from tests.apps.conftest import cs_artifact, fin_artifact, rec_artifact  # noqa: F401 - the trained artifacts
from tests.bad_inputs import CASES, Err, Ok, Outcome, create_files, row_env, substitute

BATCH = 30  # rows per driver process
TIMEOUT = 600  # seconds for one batch


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, request) -> dict[str, Outcome]:
    """Every row's outcome, by name."""
    root = tmp_path_factory.mktemp("bad_inputs")
    needs = set().union(*(c.needs for c in CASES))
    places = {"samples": str(REPO_ROOT / "samples")}
    for name in ("rec", "cs", "fin"):
        if name in needs:
            places[name] = str(request.getfixturevalue(f"{name}_artifact"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    specs, solos, folders = [], [], {}
    try:
        for n, case in enumerate(CASES):
            folder = root / f"r{n}"  # not the row's name: a needle must not match the paths in a message
            row = {**places, "d": str(folder), "mirror": f"http://127.0.0.1:{server.server_address[1]}/r{n}/mirror"}
            create_files(case, folder, row)
            folders[case.name] = folder
            spec = {"name": case.name, "argv": [substitute(a, row) for a in case.argv],
                    "env": {**row_env(folder), **{k: substitute(v, row) for k, v in case.env.items()}},
                    "stdin": case.stdin.hex() if case.stdin is not None else None}
            (solos if case.solo else specs).append(spec)
        batches = [specs[i:i + BATCH] for i in range(0, len(specs), BATCH)]
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(_batch, batch, root / f"batch-{n}") for n, batch in enumerate(batches)]
            jobs += [pool.submit(_solo, spec, root) for spec in solos]
            results = [r for job in jobs for r in job.result()]
    finally:
        server.shutdown()
        server.server_close()
    return {r["name"]: Outcome(r["rc"], r["out"], r["err"], folders[r["name"]]) for r in results}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


def _batch(specs: list[dict], folder: Path) -> list[dict]:
    folder.mkdir()
    (folder / "spec.json").write_text(json.dumps(specs), encoding="utf-8")
    results = folder / "results.jsonl"
    proc = subprocess.run([sys.executable, "-m", "tests.bad_inputs", str(folder / "spec.json"), str(results)],
                          cwd=folder, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    done = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()] if results.exists() else []
    if len(done) < len(specs):  # the driver itself died: the row it was on is the culprit
        culprit = specs[len(done)]["name"]
        done.append({"name": culprit, "rc": proc.returncode, "out": proc.stdout, "err": proc.stderr})
        done += [{"name": s["name"], "rc": -1, "out": "", "err": f"not run: the batch died on {culprit}"}
                 for s in specs[len(done):]]
    return done


def _solo(spec: dict, root: Path) -> list[dict]:
    """The row as its own process, argv and stdin as bytes (what a shell and a pipe give)."""
    cwd = Path(spec["env"]["TRIDENT_VAR_DIR"]).parent
    proc = subprocess.run([sys.executable, "-m", "apps.cli", *(os.fsencode(a) for a in spec["argv"])], cwd=cwd,
                          env={**spec["env"], "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, timeout=TIMEOUT,
                          input=bytes.fromhex(spec["stdin"]) if spec["stdin"] is not None else b"")
    return [{"name": spec["name"], "rc": proc.returncode, "out": proc.stdout.decode(errors="replace"),
             "err": proc.stderr.decode(errors="replace")}]


def test_the_table_is_large_and_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 120
    groups = {c.argv[0] for c in CASES if c.argv}
    assert groups >= {"core", "cs", "fin", "rec", "data", "settings", "suite"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, outcomes):
    o = outcomes[case.name]
    places = {"d": str(o.folder)}
    assert "Traceback" not in o.err, o.err[-3000:]
    if isinstance(case.expect, Err):
        errors = [line for line in o.err.splitlines() if line.startswith("error:")]
        assert o.rc == 2, (o.rc, o.err[-3000:])
        assert len(errors) == 1, o.err[-3000:]
        assert substitute(case.expect.needle, places) in errors[0], errors[0]
    else:
        assert isinstance(case.expect, Ok)
        assert o.rc == 0, (o.rc, o.err[-3000:])
        case.expect.check(o)
