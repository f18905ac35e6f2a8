"""``up``: run ``prepare``, give each role an account if none has one (``demo-<role>``, a random password printed once),
then the suite's processes, until Ctrl-C, SIGTERM or the death of one of them.

The sample feed server, the finance worker and the three dashboards each run in their own process group with their
own log file, and read the plan from the environment that ``Plan.env`` writes. Ctrl-C or SIGTERM stops them all
(SIGTERM to each group, then SIGKILL after a grace period); a child that dies stops the rest, and the suite says which.
The support console's retention period (``CS_RETENTION_DAYS``) is applied once the suite is prepared, then daily.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from apps.common.settings import REPO_ROOT
from apps.common.users import UserStore
from apps.customer_service.erasure import apply_retention
from apps.customer_service.store import Store
from apps.suite.plan import SAMPLES, Plan, SuiteError, write_state

RETENTION_EVERY_S = 24 * 3600


@dataclass
class Child:
    """One process of the running suite."""

    name: str
    label: str
    cmd: list[str]
    port: int | None = None
    url: str = ""
    log: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if the suite itself dies (even by SIGKILL), so no dashboard outlives it
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_PREEXEC = _die_with_parent if sys.platform == "linux" else None


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _answers(url: str, expect: bytes | None = None) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local: never through a proxy
    try:
        with opener.open(url, timeout=2) as r:
            return r.status == 200 and (expect is None or r.read().strip() == expect)
    except OSError:
        return False


def children(plan: Plan) -> list[Child]:
    """The processes of the running suite, in start order: feed server, worker, three dashboards."""
    py, s = sys.executable, plan.suite
    host = "127.0.0.1" if s.address in ("0.0.0.0", "") else s.address
    cli = [py, "-m", "apps.cli"]
    out = [Child("feeds", "sample feed server", [py, "-m", "http.server", str(s.feeds_port), "--bind", "127.0.0.1",
                                                 "--directory", str(SAMPLES / "feeds")], s.feeds_port,
                 f"http://127.0.0.1:{s.feeds_port}/"),
           Child("worker", "finance worker", [*cli, "fin", "monitor", "--json"])]
    for name, label, command, port in (("cs", "support console", "console", s.cs_port),
                                       ("fin", "finance dashboard", "dashboard", s.fin_port),
                                       ("rec", "recommender dashboard", "dashboard", s.rec_port)):
        out.append(Child(name, label, [*cli, name, command, "--port", str(port), "--address", s.address], port,
                         f"http://{host}:{port}"))
    for c in out:
        c.log = plan.logs_dir / f"{c.name}.log"
    return out


def _start(child: Child, env: dict[str, str]) -> None:
    child.log.parent.mkdir(parents=True, exist_ok=True)
    child.log.write_text("", encoding="utf-8")
    # appending: when `trident privacy forget` takes lines out of the log, the child goes on writing at its new end
    with child.log.open("a", encoding="utf-8") as log:
        child.proc = subprocess.Popen(child.cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_PREEXEC)


def _death(kids: list[Child]) -> str | None:
    """Which child exited, and how, if one did."""
    c = next((c for c in kids if c.proc is not None and c.proc.poll() is not None), None)
    return c and f"the {c.label} exited with status {c.proc.returncode} (log: {c.log})"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_all(kids: list[Child], timeout: float) -> list[str]:
    """SIGTERM every child's process group (the worker finishes its cycle), wait, then SIGKILL what is left.

    Returns:
        The names of the children that had to be killed.
    """
    started = [c for c in kids if c.proc is not None]
    for c in reversed(started):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group has gone, or is not ours
            os.killpg(c.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = []
    for c in reversed(started):
        try:
            c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(c.name)
        while _group_alive(c.proc.pid) and time.monotonic() < deadline:  # the group's other members, if any
            time.sleep(0.1)
        if _group_alive(c.proc.pid):
            os.killpg(c.proc.pid, signal.SIGKILL)
            if c.name not in killed:
                killed.append(c.name)
        c.proc.wait()
    return killed


def up(plan: Plan, console: Console | None = None) -> int:
    """Prepare, start the suite, wait for Ctrl-C or SIGTERM (or a child's death), stop everything.

    Returns:
        The exit status: 0 after a requested stop, 1 when a child died or a dashboard never answered, ``prepare``'s
        status when it failed.
    """
    console = console or Console()
    s = plan.suite
    kids = children(plan)
    ports = {c.label: c.port for c in kids[2:]}  # the dashboards
    busy = [f"{name} ({port})" for name, port in ports.items() if not _port_free(s.address, port)]
    if len(set(ports.values())) < len(ports):
        raise SuiteError(f"the dashboards need three different ports, not {sorted(ports.values())}")
    if busy:
        raise SuiteError(f"port in use: {', '.join(busy)}; stop what uses it or choose other ports "
                         "(--cs-port, --fin-port, --rec-port)")
    env = {**os.environ, **plan.env(), "PYTHONUNBUFFERED": "1"}
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        t0 = time.perf_counter()
        prep = subprocess.Popen([sys.executable, "-m", "apps.cli", "suite", "prepare"], cwd=REPO_ROOT, env=env,
                                preexec_fn=_PREEXEC)
        while prep.poll() is None:
            if stop.wait(0.2):
                prep.terminate()  # an artifact in training is left as OUT.tmp, which the next run replaces
                prep.wait()
                console.print("interrupted while preparing")
                return 130
        if prep.returncode != 0:
            return prep.returncode
        retention(plan, console)
        next_retention = time.monotonic() + RETENTION_EVERY_S
        with UserStore(plan.database_url).create() as store:  # an account per role that has none, shown once
            accounts = store.ensure_demo_accounts()
        console.rule("[bold]starting the suite", align="left")
        feeds, rest = kids[0], kids[1:]
        _start(feeds, env)
        deadline = time.monotonic() + 15
        while not _answers(feeds.url + "larkspur_wire.rss") and not stop.is_set():
            if feeds.proc.poll() is not None or time.monotonic() > deadline:
                return _failed(console, f"the {feeds.label} did not start (log: {feeds.log})")
            time.sleep(0.1)
        for c in rest:
            _start(c, env)
        waiting = [c for c in rest if c.port is not None]
        deadline = time.monotonic() + s.health_timeout
        while waiting and not stop.is_set():
            if dead := _death(kids):
                return _failed(console, dead)
            for c in [c for c in waiting if _answers(f"http://127.0.0.1:{c.port}/_stcore/health", b"ok")]:
                waiting.remove(c)
                console.print(f"[green]up[/green] {c.label} [dim]({time.perf_counter() - t0:.0f} s)[/dim]")
            if waiting and time.monotonic() > deadline:
                names = ", ".join(f"{c.label} (log: {c.log})" for c in waiting)
                return _failed(console, f"no answer within {s.health_timeout:.0f} s from {names}")
            stop.wait(0.5)
        if not stop.is_set():
            table = Table("", "URL", title=f"Trident is up ({time.perf_counter() - t0:.0f} s)")
            for c in kids:
                table.add_row(c.label, c.url or f"polls {plan.feeds_file} every {s.worker_interval:g} s")
            console.print(table)
            console.print(f"database: {plan.database_url}\nlogs: {plan.logs_dir}\nCtrl-C stops everything.",
                          soft_wrap=True)
            if accounts:
                console.print("Sign in with these accounts (shown this once; `trident users passwd NAME` changes a "
                              "password):\n" + "\n".join(f"  {u.role:<8} {u.name:<13} {pw}" for u, pw in accounts),
                              soft_wrap=True, highlight=False, markup=False)
            write_state(plan.demo_dir / "up.json", {"pid": os.getpid(), "database_url": plan.database_url,
                                                     "children": {c.name: {"pid": c.proc.pid, "url": c.url,
                                                                           "log": str(c.log)} for c in kids}})
        while not stop.wait(0.5):
            if dead := _death(kids):
                return _failed(console, dead)
            if time.monotonic() >= next_retention:
                retention(plan, console)
                next_retention += RETENTION_EVERY_S
        console.print("stopping...")
        killed = stop_all(kids, s.stop_timeout)
        console.print("stopped" + (f" (killed after {s.stop_timeout:g} s: {', '.join(killed)})" if killed else ""))
        return 0
    finally:
        stop_all(kids, s.stop_timeout)  # a no-op when they are stopped already; an exception on the way: stop them
        (plan.demo_dir / "up.json").unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def retention(plan: Plan, console: Console) -> None:
    """Delete the conversations older than the retention period (``apps.customer_service.erasure``) and say how many
    went; a failure is reported, and the suite goes on (the next day tries again)."""
    try:
        with Store(plan.database_url).create() as store:
            report = apply_retention(plan.cs_settings(), store, actor="trident suite")
    except Exception as exc:  # noqa: BLE001 - an unreachable database must not stop the dashboards
        console.print(f"[yellow]retention failed:[/yellow] {exc}", soft_wrap=True)
        return
    if report.total:
        console.print(f"retention: {report.counts['conversations']} conversation(s) removed "
                      f"({', '.join(report.notes)}; audit record {report.audit_id})", soft_wrap=True)


def _failed(console: Console, message: str) -> int:
    console.print(f"[red]error:[/red] {message}; stopping the rest", soft_wrap=True)  # up's `finally` stops them
    return 1
