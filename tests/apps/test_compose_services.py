"""Every long-running service of docker-compose.yml, run as a local process: its own ``command:`` and environment
(.env.example's defaults, the service's ``environment:``), against a fresh local PostgreSQL database instead of the
``postgres`` service, with the container's volumes mapped to temporary folders and the ports to free ones. Each
answers its health check, then stops on SIGTERM, as under ``docker compose up`` / ``down``. (No Docker engine here.)
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from apps.common.settings import REPO_ROOT
from tests.composefile import ENV_EXAMPLE, load_compose, read_env_file

pytestmark = pytest.mark.slow

DASHBOARDS = ("cs-console", "fin-dashboard", "rec-dashboard")
LONG_RUNNING = ("fin-worker", *DASHBOARDS)
PREFIXES = ("TRIDENT_", "CS_", "FIN_", "REC_")
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_command(command: list[str], port: int | None) -> list[str]:
    """The compose command with the image's ``trident`` replaced by this venv's, and ``--port`` by a free one."""
    exe = Path(sys.executable).with_name("trident")
    head = [str(exe)] if exe.is_file() else [sys.executable, "-m", "apps.cli"]
    args = list(command[1:])
    if port is not None:
        args[args.index("--port") + 1] = str(port)
    return head + args


def service_env(service: dict, volumes: dict[str, Path], overrides: dict[str, str]) -> dict[str, str]:
    """What the container would see: .env (here .env.example, as `cp .env.example .env`), then the service's
    ``environment:`` with the volumes' container paths mapped to local folders; then this machine's replacements for
    what only exists in the compose network (the database) or in the trainer's output (the artifacts)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(PREFIXES)}
    env.update(read_env_file(ENV_EXAMPLE))
    for name, value in service.get("environment", {}).items():
        for inside, here in volumes.items():
            if value == inside or value.startswith(inside + "/"):
                value = str(here) + value[len(inside):]
        env[name] = value
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **overrides)
    return env


@pytest.fixture
def feed_server():
    """The sample feeds over HTTP on a free port (the worker's feeds file points here)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(Quiet, directory=str(REPO_ROOT / "samples" / "feeds")))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=2)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"
    except OSError:
        return False


def json_documents(text: str) -> list[dict]:
    """The complete JSON objects that start a line (the worker's cycle reports, printed on one line or several)."""
    decoder, out = json.JSONDecoder(), []
    for match in re.finditer(r"^\{", text, re.M):
        try:
            out.append(decoder.raw_decode(text, match.start())[0])
        except json.JSONDecodeError:  # still being written
            continue
    return out


def tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def test_long_running_services_start_answer_their_health_checks_and_stop_on_sigterm(
        tmp_path, pg_url, cs_artifact, fin_artifact, rec_artifact, feed_server):
    compose = load_compose()
    services = compose["services"]
    assert set(LONG_RUNNING) == {n for n, s in services.items()
                                 if n != "postgres" and "profiles" not in s and s.get("restart") != "no"}
    # the container's volumes, mapped to folders of this test
    volumes = {"/app/artifacts": tmp_path / "artifacts", "/app/var": tmp_path / "var"}
    for name in LONG_RUNNING:
        mounts = {v.split(":")[1] for v in services[name]["volumes"]}
        assert set(volumes) <= mounts, name
    feeds = tmp_path / "feeds.toml"
    feeds.write_text(f'[[feeds]]\nname = "larkspur_wire"\nurl = "{feed_server}/larkspur_wire.rss"\n\n'
                     f'[[feeds]]\nname = "market_digest"\nurl = "{feed_server}/market_digest.atom"\n\n'
                     '[entities]\nNWT = ["Northwind Traders", "Northwind"]\nCTSO = ["Contoso Freight", "Contoso"]\n')
    overrides = {"TRIDENT_DATABASE_URL": pg_url, "TRIDENT_ARTIFACTS_DIR": str(volumes["/app/artifacts"]),
                 "TRIDENT_VAR_DIR": str(volumes["/app/var"]), "CS_ARTIFACT": str(cs_artifact),
                 "FIN_ARTIFACT": str(fin_artifact), "REC_ARTIFACT": str(rec_artifact), "FIN_FEEDS_PATH": str(feeds),
                 "FIN_PRICES_DIR": str(REPO_ROOT / "samples" / "prices")}
    assert services["fin-worker"]["environment"]["TRIDENT_DATABASE_URL"].startswith("postgresql://")

    procs: dict[str, tuple[subprocess.Popen, int | None, Path]] = {}
    try:
        for name in LONG_RUNNING:
            port = free_port() if name in DASHBOARDS else None
            log = tmp_path / f"{name}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(local_command(services[name]["command"], port), cwd=REPO_ROOT,
                                        env=service_env(services[name], volumes, overrides), stdout=out,
                                        stderr=subprocess.STDOUT)
            procs[name] = (proc, port, log)

        waiting = set(LONG_RUNNING)
        reports: list[dict] = []
        deadline = time.monotonic() + START_TIMEOUT
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                proc, port, log = procs[name]
                assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{tail(log)}"
                if name in DASHBOARDS:
                    ok = healthy(port)
                else:  # the worker prints one JSON report per job: one job per feed
                    reports = json_documents(log.read_text(errors="replace"))
                    ok = {r.get("feed") for r in reports} >= {"larkspur_wire", "market_digest"}
                if ok:
                    waiting.discard(name)
            time.sleep(0.5)
        assert not waiting, f"not healthy after {START_TIMEOUT:.0f} s: " + "; ".join(
            f"{n}:\n{tail(procs[n][2])}" for n in sorted(waiting))

        # the worker's first jobs went into the local PostgreSQL database
        engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                articles = conn.execute(sa.text("SELECT count(*) FROM articles")).scalar_one()
        finally:
            engine.dispose()
        assert articles == 10, reports
    finally:
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, (proc, _, _) in procs.items():
            try:
                codes[name] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes[name] = "killed"
    assert codes == dict.fromkeys(LONG_RUNNING, 0), {n: (c, tail(procs[n][2], 800)) for n, c in codes.items()}
    for name in DASHBOARDS:  # the server itself stopped: nothing answers on its port any more
        assert not healthy(procs[name][1]), name
