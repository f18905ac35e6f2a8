"""The bad-input table: what every command of the CLI does with input a user gets wrong.

Each row is a command line (``trident`` left out) with, optionally, files to create first, bytes on standard input
and environment variables, and its expected outcome: either an error (exit status 2, exactly one line starting with
``error:`` on stderr that contains ``Err.needle``, and no traceback), or a documented non-error outcome (``Ok``: exit
status 0 and the assertions of its check). ``tests/test_bad_inputs.py`` drives every row through the real CLI.

In argv, environment values and text files, ``{d}`` is the row's own folder (its files are created there), ``{rec}``,
``{cs}`` and ``{fin}`` are trained artifacts of the apps, ``{samples}`` the repository's sample folder and ``{mirror}``
the URL of a local HTTP server that serves ``{d}/mirror`` (for ``data fetch``). Every row runs with its own empty
data, artifacts and var folders (``TRIDENT_DATA_DIR={d}/data`` and so on), so a command that needs a model finds none
unless the row names one.

Run as ``python -m tests.bad_inputs SPEC RESULTS``, this module is the batch driver: it runs the rows of the JSON file
SPEC one after the other in this process through ``apps.cli.main``, each with its own environment, standard streams
and standard input, and appends one JSON line per row to RESULTS.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
import os
import shlex
import sqlite3
import sys
import traceback
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------------------------------------------- the row types


@dataclass(frozen=True)
class Outcome:
    """What a row's command did."""

    rc: int
    out: str
    err: str
    folder: Path  # the row's folder ({d})


@dataclass(frozen=True)
class Err:
    """An error: exit status 2, one ``error:`` line on stderr containing ``needle``, no traceback."""

    needle: str


@dataclass(frozen=True)
class Ok:
    """A documented non-error outcome: exit status 0 and ``check(outcome)`` holds (it asserts)."""

    doc: str
    check: Callable[[Outcome], None]


class Dir:
    """A folder to create (a value of ``Case.files``)."""


@dataclass(frozen=True)
class Link:
    """A symbolic link to create, pointing at ``target`` (placeholders allowed)."""

    target: str


DIR = Dir()


@dataclass(frozen=True)
class Case:
    """One row of the table."""

    name: str
    argv: tuple[str, ...]
    expect: Err | Ok
    files: Mapping[str, bytes | str | Dir | Link] = field(default_factory=dict)
    stdin: bytes | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    solo: bool = False  # run as its own `python -m apps.cli` process (bytes on stdin and in argv as a shell gives them)

    @property
    def needs(self) -> frozenset[str]:
        """The placeholders of trained artifacts or of the mirror that the row uses."""
        text = " ".join((*self.argv, *self.env.values(), *(v for v in self.files.values() if isinstance(v, str))))
        return frozenset(k for k in ("rec", "cs", "fin", "mirror") if "{" + k + "}" in text)


def _argv(command: str | list[str]) -> tuple[str, ...]:
    return tuple(shlex.split(command) if isinstance(command, str) else command)


# ---------------------------------------------------------------------------------------------------- files
BINARY = bytes(range(256)) * 8  # NUL bytes and bytes that are not UTF-8
HUGE_LINE = "x" * 2_000_000  # one 2 MB line
NOT_UTF8 = "caf\xe9".encode("latin-1")
PRICE_HEADER = "date,open,high,low,close,adj_close,volume\n"


def price_rows(closes: list[float | str], start_day: int = 2) -> str:
    """Daily rows from 2026-02-02 on, weekdays only, one per close (a ``str`` close is written as it is)."""
    day, rows = dt.date(2026, 2, start_day), []
    for c in closes:
        while day.weekday() >= 5:
            day += dt.timedelta(days=1)
        rows.append(f"{day.isoformat()},{c},{c},{c},{c},{c},1000\n")
        day += dt.timedelta(days=1)
    return "".join(rows)


STEADY = [100.0 + 0.1 * (i % 3) for i in range(30)]  # 30 quiet sessions (moves far below 5%)
LAST_DAY = "2026-03-16T21:30:00Z"  # after the close of the 31st weekday from 2026-02-02 (2026-03-16)
FEEDS = ('[[feeds]]\nname = "nothing"\nurl = "http://127.0.0.1:9/none.rss"\npoll_seconds = 60\n\n'
         '[entities]\nACME = ["Acme Corp"]\n')
MOVE_RULE = ('[[rules]]\nname = "big-daily-move"\nkind = "indicator_move"\nseverity = "warning"\nmetric = "return"\n'
             'threshold = 0.05\n')


def monitor(*extra: str) -> tuple[str, ...]:
    """``fin monitor --once`` on ``{d}/prices/ACME.csv`` (see :func:`monitor_files`), one big-daily-move rule, a feed
    that answers nothing, no model, evaluated after the close of the last row."""
    return _argv(f"fin monitor --once --allow-unscored --json --feeds {{d}}/feeds.toml --rules {{d}}/rules.toml "
                 f"--prices {{d}}/prices --as-of {LAST_DAY}") + extra


def monitor_files(prices: str) -> dict[str, str]:
    return {"feeds.toml": FEEDS, "rules.toml": MOVE_RULE, "prices/ACME.csv": PRICE_HEADER + prices}


def zip_bytes(members: Mapping[str, bytes], deflate: bool = True, links: Mapping[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link
            z.writestr(info, target)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- the checks
def _json(o: Outcome):
    return json.loads(o.out)


def popularity_for_unknown_user(o: Outcome) -> None:
    r = _json(o)
    assert r["source"] == "popularity" and "unknown user" in r["note"] and len(r["items"]) == 10, r


def k_items(k: int) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        assert len(_json(o)["items"]) == k

    return check


def chat_replied(turns: int) -> Callable[[Outcome], None]:
    def check(o: Outcome) -> None:
        assert o.out.count("customer>") >= turns and o.out.count("bot [") == turns, o.out[-2000:]

    return check


def chat_ended_at_once(o: Outcome) -> None:
    assert "customer>" in o.out and "bot [" not in o.out


def stored_prices(o: Outcome) -> list[tuple[str, float]]:
    with sqlite3.connect(o.folder / "var" / "trident.db") as db:
        return db.execute("SELECT ts, close FROM prices WHERE ticker = 'ACME' ORDER BY ts").fetchall()


def rejected_rows(n: int, alerts: int, stored: int) -> Callable[[Outcome], None]:
    """``n`` price rows rejected with one warning naming the file, ``stored`` rows stored, ``alerts`` alerts."""

    def check(o: Outcome) -> None:
        report = _json(o)
        assert report["alerts"] == alerts, report
        warnings = [ln for ln in o.err.splitlines() if "rejected" in ln and "ACME.csv" in ln]
        assert len(warnings) == 1 and f"{n} rows" in warnings[0], o.err
        rows = stored_prices(o)
        assert len(rows) == stored and all(math.isfinite(c) and c > 0 for _, c in rows), rows

    return check


def no_alert(o: Outcome) -> None:
    assert _json(o)["alerts"] == 0


def emitted_json(o: Outcome) -> None:
    _json(o)


def data_list_nothing_present(o: Outcome) -> None:
    r = _json(o)
    assert r["datasets"] and all(d["present"] == "no" for d in r["datasets"]), r


def settings_doc_from_defaults(o: Outcome) -> None:
    assert "REC_TOP_K=10\n" in o.out  # the documented default, not the environment's bad value


def scored(o: Outcome) -> None:
    r = _json(o)
    assert r["label"] in ("positive", "neutral", "negative"), r


def classified(o: Outcome) -> None:
    assert _json(o)["label"], o.out


# ---------------------------------------------------------------------------------------------------- the table
def _cases() -> list[Case]:
    rows: list[Case] = []

    def add(name: str, command: str | list[str], expect: Err | Ok, **kw) -> None:
        rows.append(Case(name, _argv(command), expect, **kw))

    # ---- top level and groups
    add("top-nothing", "", Err("required: group"))
    add("top-unknown-group", "nope", Err("invalid choice: 'nope'"))
    for group in ("core", "cs", "fin", "rec", "data", "suite"):
        add(f"{group}-no-command", group, Err("required: command"))
    add("top-unknown-flag", "rec recommend --user u1 --frobnicate", Err("unrecognized arguments: --frobnicate"))

    # ---- core
    add("core-info-missing-artifact", "core info --artifact {d}/missing", Err("artifact folder not found"))
    add("core-info-empty-artifact-folder", "core info --artifact {d}/art", Err("{d}/art"), files={"art": DIR})
    add("core-info-config-not-json", "core info --artifact {d}/art", Err("config.json"),
        files={"art/config.json": "{not json"})
    add("core-info-config-binary", "core info --artifact {d}/art", Err("config.json"),
        files={"art/config.json": BINARY})
    add("core-model-card-no-artifact", "core model-card", Err("required: --artifact"))
    add("core-model-card-missing-artifact", "core model-card --artifact {d}/missing", Err("artifact folder not found"))
    add("core-model-card-empty-artifact-folder", "core model-card --artifact {d}/art", Err("config.json is missing"),
        files={"art": DIR})
    add("core-model-card-config-binary", "core model-card --artifact {d}/art", Err("config.json"),
        files={"art/config.json": BINARY})
    add("core-model-card-config-not-a-model", "core model-card --artifact {d}/art",
        Err("does not describe a core model"),
        files={"art/config.json": '{"format": "trident-core", "version": 2, "model": 3, "tasks": 4}'})
    add("core-model-card-fin-report-not-json", "core model-card --artifact {d}/art", Err("fin_report.json is corrupt"),
        files={"art/fin_report.json": "{not json", "art/fin_model.json": '{"entity_blind": false}'})
    add("core-classify-missing-artifact", "core classify hello --artifact {d}/missing",
        Err("artifact folder not found"))
    add("core-classify-blank-text", ["core", "classify", "   ", "--artifact", "{cs}"], Err("text 0 is empty"))
    add("core-classify-unknown-task", "core classify hello --task nope --artifact {cs}", Err("unknown task 'nope'"))
    add("core-classify-not-utf8-argv", ["core", "classify", os.fsdecode(b"caf\xe9 \xff\xfe card"), "--json",
                                        "--artifact", "{cs}"],
        Ok("a text argument that is not UTF-8 is classified with its bad bytes replaced", classified), solo=True)
    add("core-embed-empty-text", ["core", "embed", "", "--artifact", "{cs}"], Err("text 0 is empty"))
    add("core-generate-zero-tokens", "core generate hi --max-new-tokens 0", Err("max_new_tokens"))
    add("core-generate-nan-temperature", "core generate hi --strategy sample --temperature nan", Err("temperature"))
    add("core-generate-zero-temperature", "core generate hi --strategy sample --temperature 0", Err("temperature"))
    add("core-generate-top-p-above-one", "core generate hi --top-p 2", Err("top_p"))
    add("core-generate-negative-top-k", "core generate hi --top-k -1", Err("top_k"))
    add("core-generate-zero-beams", "core generate hi --strategy beam --num-beams 0", Err("num_beams"))
    add("core-generate-tokens-not-a-number", "core generate hi --max-new-tokens many", Err("invalid int value"))
    add("core-generate-missing-artifact", "core generate hi --artifact {d}/missing", Err("artifact folder not found"))
    add("core-finetune-no-task", "core finetune", Err("give at least one --task"))
    add("core-finetune-malformed-task", "core finetune --task oops", Err("NAME=csv:PATH"))
    add("core-finetune-missing-file", "core finetune --task a=csv:{d}/missing.csv --init-from tiny",
        Err("data file not found"))
    add("core-finetune-empty-file", "core finetune --task a=csv:{d}/empty.csv --init-from tiny", Err("empty.csv"),
        files={"empty.csv": b""})
    add("core-finetune-binary-file", "core finetune --task a=csv:{d}/bin.csv --init-from tiny", Err("bin.csv"),
        files={"bin.csv": BINARY})
    add("core-finetune-zero-epochs", "core finetune --task a=csv:x.csv --epochs 0",
        Err("--epochs: must be >= 1 (TRIDENT_TRAIN__TEXT__MAX_EPOCHS)"))
    add("core-finetune-nan-lr", "core finetune --task a=csv:x.csv --lr nan", Err("--lr: "))
    add("core-finetune-inf-lr", "core finetune --task a=csv:x.csv --lr inf", Err("--lr: "))
    add("core-finetune-inf-weight-decay", "core finetune --task a=csv:x.csv --weight-decay inf",
        Err("--weight-decay: "))
    add("core-finetune-negative-batch", "core finetune --task a=csv:x.csv --batch-size -1",
        Err("--batch-size: must be >= 1"))
    add("core-finetune-warmup-above-one", "core finetune --task a=csv:x.csv --warmup-ratio 1.5",
        Err("--warmup-ratio: must be < 1.0"))
    add("core-finetune-tiny-max-length", "core finetune --task a=csv:x.csv --max-length 2",
        Err("--max-length: must be >= 8"))
    add("core-finetune-zero-patience", "core finetune --task a=csv:x.csv --patience 0", Err("--patience: must be >= 1"))
    add("core-finetune-smoothing-one", "core finetune --task a=csv:x.csv --label-smoothing 1",
        Err("--label-smoothing: must be < 1.0"))
    add("core-finetune-zero-nodes", "core finetune --task a=csv:x.csv --num-nodes 0", Err("--num-nodes: must be >= 1"))
    add("core-finetune-env-zero-batch", "core finetune --task a=csv:x.csv",
        Err("TRIDENT_TRAIN__TEXT__BATCH_SIZE: must be >= 1"), env={"TRIDENT_TRAIN__TEXT__BATCH_SIZE": "0"})
    add("core-pretrain-missing-corpus", "core pretrain --corpus {d}/missing.txt --init-from tiny", Err("missing.txt"))
    add("core-pretrain-mlm-prob-zero", "core pretrain --mlm-prob 0", Err("--mlm-prob: must be > 0.0"))
    add("core-pretrain-causal-above-one", "core pretrain --causal-fraction 2", Err("--causal-fraction: must be <= 1.0"))
    add("core-pretrain-max-steps-below-minus-one", "core pretrain --max-steps -5", Err("--max-steps: must be >= -1"))
    add("core-finetune-seed-too-big", "core finetune --task a=csv:x.csv --seed 4294967296", Err("--seed: must be <="))
    add("core-finetune-zero-devices", "core finetune --task a=csv:x.csv --devices 0", Err("--devices: a count of"))
    add("core-train-images-zero-epochs", "core train-images --epochs 0", Err("--epochs: must be >= 1"))
    add("core-eval-images-missing", "core eval-images --data {d}/missing.npz", Err("image file not found"))
    add("core-eval-images-not-npz", "core eval-images --data {d}/bad.npz --artifact {cs}", Err("bad.npz"),
        files={"bad.npz": BINARY})
    add("core-eval-text-missing", "core eval-text --data {d}/missing.csv --task intents --artifact {cs}",
        Err("missing.csv"))
    add("core-eval-text-format", "core eval-text --data x --task t --format xml", Err("invalid choice: 'xml'"))
    add("core-eval-text-huge-field", "core eval-text --data {d}/t.csv --task intents --artifact {cs}",
        Err("t.csv: unreadable CSV after line 1"), files={"t.csv": "text,label\n" + HUGE_LINE + ",card_lost\n"})
    add("core-eval-text-binary", "core eval-text --data {d}/t.csv --task intents --artifact {cs}", Err("not UTF-8"),
        files={"t.csv": BINARY})
    add("core-eval-images-empty-npz", "core eval-images --data {d}/e.npz --artifact {cs}",
        Err("is not a readable npz file"), files={"e.npz": b""})
    add("core-artifacts-missing-data", "core artifacts --data-dir {d}/missing", Err("data folder not found"))
    add("core-export-onnx-no-artifact", "core export-onnx", Err("name the artifact folder to export: --artifact DIR"))
    add("core-export-onnx-missing", "core export-onnx --artifact {d}/missing", Err("artifact folder not found"))
    add("core-eval-text-bad-runtime", "core eval-text --data x --task t --runtime tensorrt",
        Err("invalid choice: 'tensorrt'"))
    add("core-classify-env-bad-runtime", "core classify hello --artifact {d}/missing",
        Err("TRIDENT_INFERENCE__RUNTIME"), env={"TRIDENT_INFERENCE__RUNTIME": "gpu"})

    # ---- customer service
    add("cs-chat-not-utf8-stdin", "cs chat --artifact {cs}", Ok("bytes that are not UTF-8 are replaced, the bot "
                                                                "answers", chat_replied(1)),
        stdin=b"\xff\xfe my card \xc3 was lost\n", solo=True)
    add("cs-chat-latin1-stdin", "cs chat --artifact {cs}", Ok("Latin-1 text is read with its bad bytes replaced",
                                                              chat_replied(2)),
        stdin=NOT_UTF8 + b" my card was stolen\nI lost my card\n")
    add("cs-chat-utf16-stdin", "cs chat --artifact {cs}",
        Ok("UTF-16 is not UTF-8: its bytes are replaced and answered (its two-byte newline leaves a line of one NUL, "
           "answered too)", chat_replied(2)),
        stdin="my card was stolen\n".encode("utf-16"))
    add("cs-chat-nul-bytes", "cs chat --artifact {cs}", Ok("NUL bytes are kept, answered", chat_replied(1)),
        stdin=b"my\x00 card\x00 is lost\n")
    add("cs-chat-huge-line", "cs chat --artifact {cs}", Ok("a 2 MB message is cut, answered", chat_replied(1)),
        stdin=HUGE_LINE.encode() + b"\n")
    add("cs-chat-empty-stdin", "cs chat --artifact {cs}", Ok("no input: the chat ends at once", chat_ended_at_once),
        stdin=b"")
    add("cs-chat-missing-artifact", "cs chat --artifact {d}/missing", Err("artifact folder not found"))
    add("cs-chat-bogus-database", "cs chat --artifact {cs}", Err("not a usable database URL 'bogus://x'"),
        env={"TRIDENT_DATABASE_URL": "bogus://x"})
    add("cs-chat-unreachable-database", "cs chat --artifact {cs}", Err("cannot reach database postgresql://u:***@"),
        env={"TRIDENT_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/db"})
    add("cs-chat-database-is-a-folder", "cs chat --artifact {cs}", Err("cannot reach database"),
        env={"TRIDENT_DATABASE_URL": "sqlite:///{d}/adir"}, files={"adir": DIR})
    add("cs-chat-env-zero-top-k", "cs chat", Err("CS_RETRIEVAL__TOP_K: must be >= 1"),
        env={"CS_RETRIEVAL__TOP_K": "0"})
    add("cs-chat-env-nan-threshold", "cs chat", Err("CS_DIALOG__ANSWER_THRESHOLD"),
        env={"CS_DIALOG__ANSWER_THRESHOLD": "nan"})
    add("cs-chat-env-inf-weight", "cs chat", Err("CS_RETRIEVAL__SPARSE_WEIGHT"),
        env={"CS_RETRIEVAL__SPARSE_WEIGHT": "inf"})
    add("cs-chat-env-bad-mode", "cs chat", Err("CS_RETRIEVAL__MODE"), env={"CS_RETRIEVAL__MODE": "psychic"})
    add("cs-index-missing-kb", "cs index --artifact {cs} --kb {d}/missing.csv", Err("missing.csv"))
    add("cs-index-binary-kb", "cs index --artifact {cs} --kb {d}/kb.csv", Err("not UTF-8"), files={"kb.csv": BINARY})
    add("cs-index-empty-kb", "cs index --artifact {cs} --kb {d}/kb.csv", Err("empty file"), files={"kb.csv": b""})
    add("cs-index-header-only-kb", "cs index --artifact {cs} --kb {d}/kb.csv", Err("kb.csv: no entries to index"),
        files={"kb.csv": "id,question,answer\n"})
    add("cs-index-wrong-columns", "cs index --artifact {cs} --kb {d}/kb.csv", Err("kb.csv"),
        files={"kb.csv": "foo,bar\n1,2\n"})
    add("cs-index-malformed-jsonl", "cs index --artifact {cs} --kb {d}/kb.jsonl", Err("kb.jsonl"),
        files={"kb.jsonl": '{"question": "q", "answer": "a"}\n{not json\n'})
    add("cs-index-huge-line-kb", "cs index --artifact {cs} --kb {d}/kb.csv", Err("kb.csv"),
        files={"kb.csv": "question,answer\n" + HUGE_LINE + "\n"})
    add("cs-index-binary-calibration", "cs index --artifact {cs} --calibrate {d}/q.csv", Err("not UTF-8"),
        files={"q.csv": BINARY})
    add("cs-train-negative-full-intents", "cs train --full-intents -1", Err("--full-intents: must be >= 0"))
    add("cs-train-zero-refit", "cs train --refit-epochs 0", Err("--refit-epochs: must be >= 1"))
    add("cs-train-missing-intents", "cs train --intents {d}/missing.csv", Err("data file not found"))
    add("cs-train-empty-intents", "cs train --intents {d}/i.csv", Err("i.csv"), files={"i.csv": b""})
    add("cs-train-binary-intents", "cs train --intents {d}/i.csv", Err("i.csv"), files={"i.csv": BINARY})
    add("cs-train-missing-pairs", "cs train --no-intents --pairs-queries {d}/missing.csv", Err("missing.csv"))
    add("cs-train-env-nan-lr", "cs train", Err("CS_TRAIN__INTENTS__LR"), env={"CS_TRAIN__INTENTS__LR": "nan"})
    add("cs-train-env-inf-continue-lr", "cs train", Err("CS_TRAIN__CONTINUE_LR"), env={"CS_TRAIN__CONTINUE_LR": "inf"})
    add("cs-train-env-zero-lora", "cs train", Err("CS_TRAIN__LORA_R: must be >= 1"), env={"CS_TRAIN__LORA_R": "0"})
    add("cs-distil-missing-teacher", "cs distil", Err("teacher not found: {d}/artifacts/teachers/cs"))
    add("cs-distil-zero-layers", "cs distil --layers 0", Err("--layers: must be >= 1 (CS_DISTIL__LAYERS)"))
    add("cs-distil-too-many-layers", "cs distil --layers 7", Err("--layers: must be <= 6 (CS_DISTIL__LAYERS)"))
    add("cs-distil-teacher-without-intents", "cs distil --teacher {fin} --intents {samples}/intents.csv",
        Err("has no intents task"))
    add("cs-distil-over-its-teacher", "cs distil --teacher {cs} --out {cs}", Err("cannot be written over its teacher"))
    add("cs-eval-intents-missing", "cs eval-intents --artifact {cs} --data {d}/missing.csv", Err("missing.csv"))
    add("cs-eval-intents-no-label-column", "cs eval-intents --artifact {cs} --data {d}/e.csv", Err("needs columns"),
        files={"e.csv": "text\nhello\n"})
    add("cs-eval-retrieval-empty", "cs eval-retrieval --artifact {cs} --kb {d}/e.csv --queries {d}/e.csv",
        Err("empty file"), files={"e.csv": b""})
    add("cs-learn-number-jsonl", "cs learn --queries {d}/q.jsonl", Err("q.jsonl row 1: needs 'query'"),
        files={"q.jsonl": "5\n"})
    add("cs-index-huge-calibration-field", "cs index --artifact {cs} --calibrate {d}/q.csv", Err("malformed CSV"),
        files={"q.csv": "query,faq_id\n" + HUGE_LINE + ",lb-001\n"})
    add("cs-index-empty-kb-folder", "cs index --artifact {cs} --kb {d}/kb", Err("folder has no KB files"),
        files={"kb": DIR})
    add("cs-eval-retrieval-unknown-ids", "cs eval-retrieval --artifact {cs} --kb {samples}/faq.csv --queries {d}/q.csv",
        Err("refers to ids missing from the KB"), files={"q.csv": "query,faq_id\nhello,nope-1\n"})
    add("cs-learn-binary-queries", "cs learn --queries {d}/q.csv", Err("not UTF-8"), files={"q.csv": BINARY})
    add("cs-learn-bogus-database", "cs learn --queries {samples}/faq_queries.csv", Err("not a usable database URL"),
        env={"TRIDENT_DATABASE_URL": "postgres+nodriver://x"})
    add("cs-learn-missing-queries", "cs learn --queries {d}/missing.csv", Err("query file not found"))
    add("cs-console-port-zero", "cs console --port 0", Err("--port: must be >= 1"))
    add("cs-console-port-too-big", "cs console --port 70000", Err("--port: must be <= 65535"))
    add("cs-console-port-negative", "cs console --port -1", Err("--port: must be >= 1"))
    add("cs-console-port-not-a-number", "cs console --port http", Err("--port: input should be a valid integer"))
    add("cs-console-env-bad-setting", "cs console", Err("CS_DIALOG__CONTEXT_TURNS: must be >= 0"),
        env={"CS_DIALOG__CONTEXT_TURNS": "-1"})

    # ---- finance
    add("fin-score-empty", ["fin", "score", ""], Err("the text is empty"))
    add("fin-score-blank", ["fin", "score", "  \t "], Err("the text is empty"))
    add("fin-score-missing-artifact", "fin score hello --artifact {d}/missing", Err("no sentiment model"))
    add("fin-score-not-utf8-argv", ["fin", "score", os.fsdecode(b"profit \xff\xfe rose"), "--json", "--artifact",
                                    "{fin}"], Ok("bad bytes in the text are replaced; it is scored", scored))
    add("fin-score-huge-text", ["fin", "score", "profit rose. " * 20_000, "--json", "--artifact", "{fin}"],
        Ok("a 260 KB text is cut and scored", scored))
    add("fin-train-zero-members", "fin train --members 0", Err("--members: must be >= 1"))
    add("fin-train-members-word", "fin train --members zero", Err("--members: input should be a valid integer"))
    add("fin-train-zero-refit", "fin train --refit-epochs 0", Err("--refit-epochs: must be >= 1"))
    add("fin-train-missing-data", "fin train --data {d}/missing.txt", Err("data file not found"))
    add("fin-train-empty-data", "fin train --data {d}/s.csv --format csv", Err("s.csv"), files={"s.csv": b""})
    add("fin-train-binary-data", "fin train --data {d}/s.txt", Err("s.txt"), files={"s.txt": BINARY})
    add("fin-train-huge-field", "fin train --data {d}/s.csv --format csv", Err("s.csv: unreadable CSV"),
        files={"s.csv": "text,label\n" + HUGE_LINE + ",positive\n"})
    add("fin-train-bad-format", "fin train --format xml", Err("invalid choice: 'xml'"))
    add("fin-train-env-inf-lr", "fin train", Err("FIN_TRAIN__SOFT__LR"), env={"FIN_TRAIN__SOFT__LR": "inf"})
    add("fin-distil-missing-teacher", "fin distil", Err("teacher not found: {d}/artifacts/teachers/fin"))
    add("fin-distil-too-many-layers", "fin distil --layers 7", Err("--layers: must be <= 6 (FIN_DISTIL__LAYERS)"))
    add("fin-distil-layers-word", "fin distil --layers all", Err("--layers: input should be a valid integer"))
    add("fin-distil-teacher-without-sentiment", "fin distil --teacher {cs} --data {samples}/fin_sentences.csv",
        Err("not 'sentiment'"))
    add("fin-distil-missing-feeds", "fin distil --teacher {fin} --data {samples}/fin_sentences.csv --unlabelled "
        "{d}/none.rss", Err("feed file not found: {d}/none.rss"))
    add("fin-eval-binary-csv", "fin eval --artifact {fin} --data {d}/s.csv --format csv", Err("not UTF-8"),
        files={"s.csv": BINARY})
    add("fin-eval-bad-phrasebank-line", "fin eval --artifact {fin} --data {d}/s.txt", Err("expected 'sentence@label'"),
        files={"s.txt": NOT_UTF8 + b" no label here\n"})
    add("fin-eval-missing", "fin eval --artifact {fin} --data {d}/missing.txt", Err("missing.txt"))
    add("fin-monitor-missing-prices-folder", "fin monitor --once --allow-unscored --feeds {d}/feeds.toml "
        "--prices {d}/missing", Err("prices folder not found: {d}/missing"), files={"feeds.toml": FEEDS})
    add("fin-monitor-prices-is-a-file", "fin monitor --once --allow-unscored --feeds {d}/feeds.toml --prices {d}/p.csv",
        Err("prices folder not found"), files={"feeds.toml": FEEDS, "p.csv": PRICE_HEADER})
    add("fin-monitor-zero-close", monitor(), Ok("a close of 0 is rejected with a warning, not stored, and fires no "
                                                  "'-100%' alert", rejected_rows(1, alerts=0, stored=30)),
        files=monitor_files(price_rows([*STEADY, 0])))
    add("fin-monitor-negative-close", monitor(), Ok("a negative close is rejected, no alert",
                                                      rejected_rows(1, alerts=0, stored=30)),
        files=monitor_files(price_rows([*STEADY, -5])))
    add("fin-monitor-inf-close", monitor(), Ok("an infinite close is rejected, no alert",
                                                 rejected_rows(1, alerts=0, stored=30)),
        files=monitor_files(price_rows([*STEADY, "inf"])))
    add("fin-monitor-nan-before-a-real-move", monitor(),
        Ok("a NaN close is rejected, so the real 20% fall after it is measured against the last good close and "
           "alerts", rejected_rows(1, alerts=1, stored=30)),
        files=monitor_files(price_rows([*STEADY[:29], "nan", 80.0])))
    add("fin-monitor-empty-cells", monitor(), Ok("a row of empty cells is rejected (a missing session), no alert",
                                                   rejected_rows(1, alerts=0, stored=30)),
        files=monitor_files(price_rows(STEADY) + "2026-03-16,,,,,,\n"))
    add("fin-monitor-binary-prices", monitor(), Ok("a binary price file is logged and skipped; nothing fires",
                                                     no_alert), files={**monitor_files(""), "prices/ACME.csv": BINARY})
    add("fin-monitor-malformed-feeds-toml", "fin monitor --once --allow-unscored --feeds {d}/f.toml",
        Err("f.toml"), files={"f.toml": "[[feeds]\nname = \n"})
    add("fin-monitor-binary-feeds", "fin monitor --once --allow-unscored --feeds {d}/f.toml", Err("f.toml"),
        files={"f.toml": BINARY})
    add("fin-monitor-empty-feeds", "fin monitor --once --allow-unscored --feeds {d}/f.toml", Err("no feeds"),
        files={"f.toml": b""})
    add("fin-monitor-feeds-wrong-type", "fin monitor --once --allow-unscored --feeds {d}/f.csv",
        Err("unsupported feeds file type"), files={"f.csv": "x"})
    add("fin-monitor-feed-without-url", "fin monitor --once --allow-unscored --feeds {d}/f.toml", Err("has no url"),
        files={"f.toml": '[[feeds]]\nname = "a"\n'})
    add("fin-monitor-feed-bogus-url", "fin monitor --once --allow-unscored --feeds {d}/f.toml", Err("f.toml"),
        files={"f.toml": '[[feeds]]\nname = "a"\nurl = "bogus://x"\n'})
    add("fin-monitor-feed-negative-poll", "fin monitor --once --allow-unscored --feeds {d}/f.toml", Err("f.toml"),
        files={"f.toml": '[[feeds]]\nname = "a"\nurl = "http://127.0.0.1:9/x"\npoll_seconds = -1\n'})
    add("fin-monitor-feed-nan-timeout", "fin monitor --once --allow-unscored --feeds {d}/f.toml", Err("f.toml"),
        files={"f.toml": '[[feeds]]\nname = "a"\nurl = "http://127.0.0.1:9/x"\ntimeout_seconds = nan\n'})
    add("fin-monitor-malformed-feeds-yaml", "fin monitor --once --allow-unscored --feeds {d}/f.yaml",
        Err("invalid YAML"), files={"f.yaml": "feeds: [\n  - name: a\n url\n"})
    add("fin-monitor-malformed-rules", "fin monitor --once --allow-unscored --feeds {d}/f.toml --rules {d}/r.toml",
        Err("r.toml"), files={"f.toml": FEEDS, "r.toml": "[[rules]\n"})
    add("fin-monitor-binary-rules", "fin monitor --once --allow-unscored --feeds {d}/f.toml --rules {d}/r.toml",
        Err("r.toml"), files={"f.toml": FEEDS, "r.toml": BINARY})
    add("fin-monitor-unknown-rule-kind", "fin monitor --once --allow-unscored --feeds {d}/f.toml --rules {d}/r.toml",
        Err("r.toml"), files={"f.toml": FEEDS, "r.toml": '[[rules]]\nname = "x"\nkind = "astrology"\n'})
    add("fin-monitor-nan-rule-threshold", "fin monitor --once --allow-unscored --feeds {d}/f.toml --rules {d}/r.toml",
        Err("r.toml"), files={"f.toml": FEEDS, "r.toml": MOVE_RULE.replace("0.05", "nan")})
    add("fin-monitor-missing-rules", "fin monitor --once --allow-unscored --rules {d}/missing.toml",
        Err("alert rules file not found"))
    add("fin-monitor-bad-as-of", "fin monitor --once --allow-unscored --as-of yesterday", Err("--as-of must be"))
    add("fin-monitor-no-model", "fin monitor --once --feeds {d}/f.toml", Err("no sentiment model"),
        files={"f.toml": FEEDS})
    add("fin-monitor-bogus-database", "fin monitor --once --allow-unscored --feeds {d}/f.toml",
        Err("not a usable database URL"), files={"f.toml": FEEDS}, env={"TRIDENT_DATABASE_URL": "bogus://x"})
    add("fin-monitor-unparsable-database", "fin monitor --once --allow-unscored --feeds {d}/f.toml",
        Err("not a usable database URL"), files={"f.toml": FEEDS}, env={"TRIDENT_DATABASE_URL": "no url at all"})
    add("fin-monitor-database-not-sqlite", "fin monitor --once --allow-unscored --feeds {d}/f.toml",
        Err("file is not a database"), files={"f.toml": FEEDS, "db.sqlite": BINARY},
        env={"TRIDENT_DATABASE_URL": "sqlite:///{d}/db.sqlite"})
    add("fin-monitor-env-zero-interval", "fin monitor --once --allow-unscored",
        Err("FIN_MONITOR__INTERVAL_SECONDS: must be > 0.0"), env={"FIN_MONITOR__INTERVAL_SECONDS": "0"})
    add("fin-monitor-env-inf-interval", "fin monitor --once --allow-unscored", Err("FIN_MONITOR__INTERVAL_SECONDS"),
        env={"FIN_MONITOR__INTERVAL_SECONDS": "inf"})
    add("fin-monitor-env-short-history", "fin monitor --once --allow-unscored",
        Err("FIN_MONITOR__PRICE_HISTORY_DAYS: must be >= 30"), env={"FIN_MONITOR__PRICE_HISTORY_DAYS": "3"})
    add("fin-monitor-env-unknown-time-zone", monitor(), Err("FIN_PRICE_TZ"),
        files=monitor_files(price_rows(STEADY)), env={"FIN_PRICE_TZ": "Mars/Olympus_Mons"})
    add("fin-worker-on-sqlite", "fin worker --allow-unscored --feeds {d}/f.toml",
        Err("the job queue needs PostgreSQL, not sqlite:///"), files={"f.toml": FEEDS})
    add("fin-worker-zero-concurrency", "fin worker --concurrency 0", Err("--concurrency: must be >= 1"))
    add("fin-worker-env-bad-cron", "fin worker", Err("FIN_QUEUE__CRON: not a cron line"),
        env={"FIN_QUEUE__CRON": "every minute"})
    add("fin-worker-env-recover-not-dividing-a-minute", "fin worker", Err("FIN_QUEUE__RECOVER_SECONDS: must divide 60"),
        env={"FIN_QUEUE__RECOVER_SECONDS": "7"})
    add("fin-worker-env-stalled-before-two-heartbeats", "fin worker",
        Err("stalled_seconds (15) must be at least twice heartbeat_seconds (10)"),
        env={"FIN_QUEUE__STALLED_SECONDS": "15"})
    add("fin-risk-zero-stride", "fin risk --stride 0", Err("--stride: must be >= 1"))
    add("fin-risk-negative-stride", "fin risk --stride -2", Err("--stride: must be >= 1"))
    add("fin-risk-no-tickers", "fin risk --tickers", Err("expected at least one argument"))
    add("fin-risk-no-market-data", "fin risk --artifact {fin}", Err("no market_prices"))
    add("fin-dashboard-port-zero", "fin dashboard --port 0", Err("--port: must be >= 1"))
    add("fin-dashboard-port-too-big", "fin dashboard --port 65536", Err("--port: must be <= 65535"))
    add("fin-dashboard-env-bad-setting", "fin dashboard", Err("FIN_SCORING__BATCH_SIZE: must be >= 1"),
        env={"FIN_SCORING__BATCH_SIZE": "0"})

    # ---- recommender
    add("rec-recommend-k-zero", "rec recommend --user u001 --k 0", Err("--k: must be >= 1 (REC_TOP_K)"))
    add("rec-recommend-k-negative", "rec recommend --user u001 --k -5", Err("--k: must be >= 1 (REC_TOP_K)"))
    add("rec-recommend-k-too-big", "rec recommend --user u001 --k 101", Err("--k: must be <= 100 (REC_TOP_K)"))
    add("rec-recommend-k-word", "rec recommend --user u001 --k ten", Err("--k: input should be a valid integer"))
    add("rec-recommend-k-nan", "rec recommend --user u001 --k nan", Err("--k: "))
    add("rec-recommend-env-k-zero", "rec recommend --user u001", Err("REC_TOP_K: must be >= 1"),
        env={"REC_TOP_K": "0"})
    add("rec-recommend-empty-user", ["rec", "recommend", "--user", ""], Err("--user"))
    add("rec-recommend-blank-user", ["rec", "recommend", "--user", "   "], Err("--user"))
    add("rec-recommend-no-user", "rec recommend", Err("required: --user"))
    add("rec-recommend-unknown-user", "rec recommend --user nobody --json --artifact {rec}",
        Ok("an unknown user gets the most popular items, labelled so", popularity_for_unknown_user))
    add("rec-recommend-k-one", "rec recommend --user u001 --k 1 --json --artifact {rec}",
        Ok("--k 1 gives exactly one item", k_items(1)))
    add("rec-recommend-nan-mmr", "rec recommend --user u001 --mmr-lambda nan --artifact {rec}",
        Err("mmr_lambda must lie in [0, 1]"))
    add("rec-recommend-mmr-above-one", "rec recommend --user u001 --mmr-lambda 2 --artifact {rec}",
        Err("mmr_lambda must lie in [0, 1]"))
    add("rec-recommend-missing-artifact", "rec recommend --user u001 --artifact {d}/missing",
        Err("no recommender artifact"))
    add("rec-recommend-corrupt-artifact", "rec recommend --user u001 --artifact {d}/art", Err("art"),
        files={"art/config.json": BINARY})
    add("rec-similar-k-negative", "rec similar --item 1 --k -1", Err("--k: must be >= 1 (REC_TOP_K)"))
    add("rec-similar-unknown-item", "rec similar --item nope --artifact {rec}", Err("unknown item 'nope'"))
    add("rec-similar-empty-item", ["rec", "similar", "--item", "", "--artifact", "{rec}"], Err("unknown item"))
    add("rec-batch-chunk-zero", "rec batch --chunk-size 0", Err("--chunk-size: must be >= 1 (REC_BATCH__CHUNK_SIZE)"))
    add("rec-batch-chunk-negative", "rec batch --chunk-size -3", Err("--chunk-size: must be >= 1"))
    add("rec-batch-chunk-word", "rec batch --chunk-size lots", Err("--chunk-size: input should be a valid integer"))
    add("rec-batch-k-zero", "rec batch --k 0", Err("--k: must be >= 1 (REC_BATCH__K)"))
    add("rec-batch-k-too-big", "rec batch --k 5000", Err("--k: must be <= 1000 (REC_BATCH__K)"))
    add("rec-batch-zero-nodes", "rec batch --num-nodes 0", Err("--num-nodes: must be >= 1"))
    add("rec-batch-zero-devices", "rec batch --devices 0", Err("--devices"))
    add("rec-batch-env-chunk-zero", "rec batch", Err("REC_BATCH__CHUNK_SIZE: must be >= 1"),
        env={"REC_BATCH__CHUNK_SIZE": "0"})
    add("rec-batch-bogus-database", "rec batch --artifact {rec} --out {d}/o.parquet --database-url bogus://x",
        Err("not a usable database URL 'bogus://x'"))
    add("rec-batch-unparsable-database", "rec batch --artifact {rec} --out {d}/o.parquet --database-url nonsense",
        Err("not a usable database URL"))
    add("rec-batch-database-driver-missing", "rec batch --artifact {rec} --out {d}/o.parquet "
        "--database-url mysql://u:secret@h/db", Err("not a usable database URL 'mysql://u:***@h/db'"))
    add("rec-batch-database-bad-port", "rec batch --artifact {rec} --out {d}/o.parquet "
        "--database-url postgresql://u@h:port/db", Err("not a usable database URL"))
    add("rec-batch-database-unreachable", "rec batch --artifact {rec} --out {d}/o.parquet "
        "--database-url postgresql://u:secret@127.0.0.1:1/db", Err("cannot reach database postgresql://u:***@"))
    add("rec-batch-out-is-a-folder", "rec batch --no-db --out {d}/out", Err("--out: {d}/out is a folder"),
        files={"out": DIR})
    add("rec-batch-out-under-a-file", "rec batch --artifact {rec} --no-db --out {d}/f/r.parquet",
        Err("Not a directory"), files={"f": "x"})
    add("rec-batch-missing-artifact", "rec batch --artifact {d}/missing --no-db", Err("no recommender artifact"))
    add("rec-train-missing-data", "rec train --data {d}/missing.csv", Err("not found"))
    add("rec-train-empty-data", "rec train --data {d}/i.csv", Err("i.csv"), files={"i.csv": b""})
    add("rec-train-binary-data", "rec train --data {d}/i.csv", Err("i.csv"), files={"i.csv": BINARY})
    add("rec-train-header-only", "rec train --data {d}/i.csv", Err("i.csv"),
        files={"i.csv": "user_id,item_id,timestamp\n"})
    add("rec-train-wrong-columns", "rec train --data {d}/i.csv", Err("i.csv"), files={"i.csv": "a,b\n1,2\n"})
    add("rec-train-bad-timestamps", "rec train --data {d}/i.csv", Err("i.csv"),
        files={"i.csv": "user_id,item_id,timestamp\nu1,1,yesterday\nu1,2,today\n"})
    add("rec-train-huge-line", "rec train --data {d}/i.csv", Err("i.csv"),
        files={"i.csv": "user_id,item_id,timestamp\n" + HUGE_LINE + "\n"})
    add("rec-train-binary-parquet", "rec train --data {d}/i.parquet", Err("not a readable Parquet file"),
        files={"i.parquet": BINARY})
    add("rec-train-empty-folder", "rec train --data {d}/ml", Err("holds no interactions"), files={"ml": DIR})
    add("rec-train-binary-items", "rec train --items {d}/items.csv", Err("items.csv"), files={"items.csv": BINARY})
    add("rec-train-zero-epochs", "rec train --epochs 0", Err("--epochs: must be >= 1 (REC_TRAIN__MAX_EPOCHS)"))
    add("rec-train-nan-lr", "rec train --lr nan", Err("--lr: "))
    add("rec-train-inf-lr", "rec train --lr inf", Err("--lr: "))
    add("rec-train-zero-batch", "rec train --batch-size 0", Err("--batch-size: must be >= 1"))
    add("rec-train-zero-negatives", "rec train --n-negatives 0", Err("--n-negatives: must be >= 1"))
    add("rec-train-negative-workers", "rec train --num-workers -1", Err("--num-workers: must be >= 0"))
    add("rec-train-mlm-one", "rec train --mlm-prob 1", Err("--mlm-prob: must be < 1.0"))
    add("rec-train-negative-seed", "rec train --seed -1", Err("--seed: must be >= 0 (REC_TRAIN__SEED)"))
    add("rec-train-zero-sampled-above", "rec train --sampled-above 0", Err("--sampled-above: must be >= 1"))
    add("rec-train-negative-devices", "rec train --devices -2", Err("--devices: a count of devices must be >= 1"))
    add("rec-train-unknown-preset", "rec train --preset huge", Err("invalid choice: 'huge'"))
    add("rec-train-env-negative-cloze", "rec train", Err("REC_CLOZE_WEIGHT: must be >= 0.0"),
        env={"REC_CLOZE_WEIGHT": "-1"})
    add("rec-train-env-nan-mmr-lambdas", "rec train", Err("REC_MMR_LAMBDAS"), env={"REC_MMR_LAMBDAS": "[NaN]"})
    add("rec-train-env-model-heads", "rec train", Err("n_embd"), env={"REC_MODEL__N_HEAD": "3"})
    add("rec-eval-missing-artifact", "rec eval --artifact {d}/missing", Err("no recommender artifact"))
    add("rec-dashboard-port-zero", "rec dashboard --port 0", Err("--port: must be >= 1"))
    add("rec-dashboard-port-too-big", "rec dashboard --port 99999", Err("--port: must be <= 65535"))
    add("rec-dashboard-env-bad-setting", "rec dashboard", Err("REC_TOP_K: must be <= 100"), env={"REC_TOP_K": "500"})

    # ---- data sets
    add("data-fetch-unknown-name", "data fetch nope", Err("invalid choice: 'nope'"))
    for value in ("0", "-1", "nan", "inf"):
        add(f"data-fetch-timeout-{value}", f"data fetch movielens-100k --dest {{d}}/data --timeout {value}",
            Err("--timeout: must be a number of seconds > 0"))
    add("data-fetch-timeout-word", "data fetch movielens-100k --timeout soon", Err("invalid float value"))
    add("data-fetch-bad-sha256", "data fetch movielens-100k --dest {d}/data --sha256 xyz", Err("not a SHA-256"))
    add("data-fetch-sha256-unknown-file", "data fetch movielens-100k --dest {d}/data --sha256 nofile=" + "0" * 64,
        Err("has no such file"))
    add("data-fetch-bogus-mirror", "data fetch movielens-100k --dest {d}/data --mirror bogus://x",
        Err("cannot download bogus://x/movielens-100k/ml-100k.zip"))
    add("data-fetch-unreachable-mirror", "data fetch movielens-100k --dest {d}/data --mirror http://127.0.0.1:9",
        Err("cannot download http://127.0.0.1:9/"))
    add("data-fetch-dest-is-a-file", "data fetch movielens-100k --dest {d}/afile --mirror http://127.0.0.1:9",
        Err("afile"), files={"afile": "x"})
    add("data-fetch-symlinked-target", "data fetch movielens-100k --dest {d}/data --force --mirror {mirror}",
        Err("is a symbolic link: refusing to follow or replace it"),
        files={"elsewhere/.trident-fetch.json": "{}", "data/movielens-100k": Link("{d}/elsewhere")})
    add("data-fetch-zip-bomb", "data fetch movielens-100k --dest {d}/data --mirror {mirror}",
        Err("unpacks to more than"),
        files={"mirror/movielens-100k/ml-100k.zip": zip_bytes({"ml-100k/u.data": b"\0" * (30 << 20)})})
    add("data-fetch-zip-with-symlink", "data fetch movielens-100k --dest {d}/data --mirror {mirror}",
        Err("link 'ml-100k/u.data'"),
        files={"mirror/movielens-100k/ml-100k.zip": zip_bytes({}, links={"ml-100k/u.data": "/etc/passwd"})})
    add("data-fetch-zip-traversal", "data fetch movielens-100k --dest {d}/data --mirror {mirror}",
        Err("unsafe path '../evil.txt'"),
        files={"mirror/movielens-100k/ml-100k.zip": zip_bytes({"../evil.txt": b"x"})})
    add("data-fetch-not-a-zip", "data fetch movielens-100k --dest {d}/data --mirror {mirror}",
        Err("is not a valid zip file"), files={"mirror/movielens-100k/ml-100k.zip": BINARY})
    add("data-fetch-empty-download", "data fetch movielens-100k --dest {d}/data --mirror {mirror}",
        Err("ml-100k.zip"), files={"mirror/movielens-100k/ml-100k.zip": b""})
    add("data-fetch-not-found-on-mirror", "data fetch movielens-100k --dest {d}/data --mirror {mirror}",
        Err("HTTP 404"), files={"mirror": DIR})
    add("data-list-dest-is-a-file", "data list --json --dest {d}/afile",
        Ok("a data folder that is a file lists every data set as not present", data_list_nothing_present),
        files={"afile": "x"})
    add("data-list-missing-folder", "data list --json --dest {d}/missing",
        Ok("a data folder that does not exist lists every data set as not present", data_list_nothing_present))

    # ---- settings
    add("settings-unknown-format", "settings --format yaml", Err("invalid choice: 'yaml'"))
    add("settings-ignore-bad-environment", "settings --format env",
        Ok("the reference is written from the defaults, whatever the environment holds", settings_doc_from_defaults),
        env={"REC_TOP_K": "0"})

    # ---- suite (only what fails before anything starts)
    add("suite-up-port-zero", "suite up --cs-port 0", Err("--cs-port: must be >= 1 (TRIDENT_SUITE_CS_PORT)"))
    add("suite-up-port-too-big", "suite up --rec-port 70000", Err("--rec-port: must be <= 65535"))
    add("suite-up-port-word", "suite up --fin-port eight", Err("--fin-port: input should be a valid integer"))
    add("suite-up-nan-interval", "suite up --worker-interval nan", Err("--worker-interval"))
    add("suite-up-inf-interval", "suite up --worker-interval inf", Err("--worker-interval"))
    add("suite-up-negative-health-timeout", "suite up --health-timeout -1", Err("--health-timeout: must be > 0.0"))
    add("suite-up-env-zero-stop-timeout", "suite up", Err("TRIDENT_SUITE_STOP_TIMEOUT: must be > 0.0"),
        env={"TRIDENT_SUITE_STOP_TIMEOUT": "0"})
    add("suite-prepare-bogus-database", "suite prepare", Err("not a usable database URL 'bogus://x'"),
        env={"TRIDENT_DATABASE_URL": "bogus://x"})
    add("suite-up-unreachable-database", "suite up", Err("cannot reach database postgresql://u:***@127.0.0.1:1/x"),
        env={"TRIDENT_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/x"})
    add("suite-prepare-feeds-port-zero", "suite prepare --feeds-port 0", Err("--feeds-port: must be >= 1"))
    add("suite-prepare-env-port-word", "suite prepare", Err("TRIDENT_SUITE_FEEDS_PORT"),
        env={"TRIDENT_SUITE_FEEDS_PORT": "http"})
    return rows


CASES: list[Case] = _cases()


# ---------------------------------------------------------------------------------------------------- running rows
def substitute(text: str, places: Mapping[str, str]) -> str:
    for key, value in places.items():
        text = text.replace("{" + key + "}", value)
    return text


def create_files(case: Case, folder: Path, places: Mapping[str, str]) -> None:
    """The row's files under ``folder`` (text with its placeholders filled in)."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, content in case.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Dir):
            path.mkdir(exist_ok=True)
        elif isinstance(content, Link):
            path.symlink_to(substitute(content.target, places))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(substitute(content, places), encoding="utf-8")


def row_env(folder: Path) -> dict[str, str]:
    """A row's own environment: its empty data, artifacts and var folders; no CS_/FIN_/REC_/TRIDENT_ variable from
    outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CS_", "FIN_", "REC_", "TRIDENT_"))}
    return {**env, "TRIDENT_DATA_DIR": str(folder / "data"), "TRIDENT_ARTIFACTS_DIR": str(folder / "artifacts"),
            "TRIDENT_VAR_DIR": str(folder / "var"), "NO_PROXY": "127.0.0.1,localhost", "OMP_NUM_THREADS": "1",
            "COLUMNS": "200"}


class _Started(Exception):
    """A dashboard would have started (``os.execve``)."""


def _run_one(spec: dict) -> dict:
    """One row in this process, as ``python -m apps.cli`` would run it."""
    from apps.cli import main  # only in the driver: the test process imports this module for the table

    saved_env, saved = dict(os.environ), (sys.stdin, sys.stdout, sys.stderr)
    os.environ.clear()
    os.environ.update(spec["env"])
    stdin = bytes.fromhex(spec["stdin"]) if spec["stdin"] is not None else b""
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding=saved[0].encoding, errors=saved[0].errors)
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    logging.root.handlers.clear()  # setup_logging's handler writes to this row's stderr
    try:
        rc = main(spec["argv"])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except _Started:
        rc = 99
        print("a dashboard started", file=sys.stderr)
    except BaseException:  # noqa: BLE001 - what Python prints for an uncaught exception
        rc = 1
        traceback.print_exc(file=sys.stderr)
    out, err = sys.stdout.getvalue(), sys.stderr.getvalue()
    sys.stdin, sys.stdout, sys.stderr = saved
    os.environ.clear()
    os.environ.update(saved_env)
    return {"name": spec["name"], "rc": rc, "out": out, "err": err}


def _drive(spec_path: str, results_path: str) -> None:
    def started(*_args, **_kwargs):
        raise _Started

    os.execve = started  # a row must fail before a dashboard starts; if it does not, it must not start either
    specs = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    with open(results_path, "a", encoding="utf-8") as results:
        for spec in specs:
            results.write(json.dumps(_run_one(spec)) + "\n")
            results.flush()


if __name__ == "__main__":
    _drive(sys.argv[1], sys.argv[2])
