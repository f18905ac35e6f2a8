"""Forgetting a person end to end, on SQLite and PostgreSQL: one customer's and one user's data seeded through every
entry point (chat, an agent's edit that became a KB entry, the feedback pairs `cs learn` trains on, the recommender's
batch job, the logs), then `trident privacy forget`; nothing of theirs is left in any table or file, the other
customer's and user's data are intact, and a console and a recommender service that were running stop serving it."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from rich.console import Console

from apps.cli import main
from apps.common.db import make_engine, utcnow
from apps.common.erasure import AuditStore, ErasureReport, scrub_logs, subject_hash
from apps.common.settings import REPO_ROOT, CoreSettings
from apps.customer_service.schemas import Feedback, KBEntry
from apps.customer_service.service import CSService
from apps.customer_service.settings import CSSettings
from apps.customer_service.store import Store, UnknownConversation, conversations
from apps.recommender.batch import run_batch
from apps.recommender.model import load_artifact
from apps.recommender.service import RecService
from apps.recommender.settings import BatchSettings, RecSettings
from apps.recommender.store import RecStore
from apps.suite.plan import Plan, SuiteSettings
from apps.suite.supervisor import retention

SAMPLES = REPO_ROOT / "samples"
ALICE, BOB = "cust-alice-7731", "cust-bob-2208"
ALICE_SAYS = "My parrot Bartholomew chewed my debit card at Quillby's Pet Emporium, can I get a new one?"
ALICE_WORDS = ("Bartholomew", "Quillby")  # hers only: nobody else says them
EDIT = "Sorry about Bartholomew! Order a replacement card under Cards > Replace."
BOB_SAYS = "my parrot chewed my debit card, can I get a new one?"
BOB_EDIT = "Bob: open the app and tap Activate."
GONE_USER, KEPT_USER = "u003", "u004"


def dump_tables(engine: sa.Engine) -> str:
    """Every row of every table, as text."""
    out = []
    with engine.connect() as conn:
        for name in sorted(sa.inspect(engine).get_table_names()):
            out += [f"{name}: {tuple(row)}" for row in conn.execute(sa.text(f'SELECT * FROM "{name}"'))]
    return "\n".join(out)


def file_texts(*folders: Path) -> dict[Path, str]:
    """Every file under ``folders``: Parquet files as their rows, others as their bytes (latin-1, so any byte
    sequence reads)."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                out[p] = (pq.read_table(p).to_pandas().to_string() if p.suffix == ".parquet"
                          else p.read_bytes().decode("latin-1"))
    return out


def digests(*folders: Path) -> dict[Path, str]:
    """Every file's hash, but SQLite's write-ahead log and its index, which readers touch (the tables are compared
    instead)."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def users_count(artifact: Path) -> int:
    """The artifact's popularity counts over all data, summed: one per (user, item) interaction."""
    return int(pq.read_table(artifact / "items.parquet")["users"].to_numpy().sum())


@pytest.fixture
def world(cs_artifact, rec_artifact, db_url, tmp_path):
    """Alice and Bob at the support desk, users u003 and u004 in the recommender, everything in one var folder and
    one database (SQLite: the file under var), and a console and a recommender service built before any forget."""
    var = tmp_path / "var"
    url = f"sqlite:///{var / 'trident.db'}" if db_url.startswith("sqlite") else db_url
    core = CoreSettings(var_dir=var, database_url=url, artifacts_dir=tmp_path / "artifacts")
    cs = CSSettings(core=core, artifact=cs_artifact, kb_path=SAMPLES / "faq.csv")
    console = CSService.build(cs, Store(url).create())

    alice = console.start_conversation(ALICE)
    t1, _ = console.customer_message(alice.id, ALICE_SAYS)
    console.feedback(alice.id, t1.id, "agent-1", "edited", final_text=EDIT)  # becomes a KB entry at once
    t2, _ = console.customer_message(alice.id, "Also my card was stolen, how do I block it?")
    console.feedback(alice.id, t2.id, "agent-1", "accepted")  # a pair `cs learn` trains on
    entry = f"fb-{alice.id[:8]}-{t1.id}"
    saved = console.store.kb_entry(entry)  # an admin improves it: its history keeps her words twice
    console.edit_kb_entry(entry, saved.entry.question, EDIT + " It arrives in 3 days.", "admin-1", saved.version)

    bob = console.start_conversation(BOB)
    b1, bob_reply = console.customer_message(bob.id, BOB_SAYS)
    assert entry in [h.entry.id for h in bob_reply.hits]  # Bob's stored suggestion lists Alice's entry
    console.feedback(bob.id, b1.id, "agent-2", "accepted")
    b2, _ = console.customer_message(bob.id, "How do I activate my card?")
    console.feedback(bob.id, b2.id, "agent-2", "edited", final_text=BOB_EDIT)
    assert console.search_kb(ALICE_SAYS)[0].entry.id == entry

    artifact = var / "demo" / "artifacts" / "samples" / "rec"  # where the suite keeps its quick artifact
    shutil.copytree(rec_artifact, artifact)
    rec = RecSettings(core=core, artifact=artifact, data=SAMPLES / "rec_interactions.csv",
                      items=SAMPLES / "rec_items.csv")
    out = var / "rec" / "recommendations.parquet"
    with RecStore(url).create() as store:
        run_batch(load_artifact(artifact), out, BatchSettings(chunk_size=64), k=5, store=store, progress=False)
    dashboard = RecService.build(rec)
    assert GONE_USER in dashboard.users()

    logs = var / "demo" / "logs"
    logs.mkdir(parents=True)
    (logs / "cs.log").write_text(f"INFO customer {ALICE} opened {alice.id}\nINFO customer {BOB} opened {bob.id}\n"
                                 "INFO epoch 3 of 4, 2 users done\n")
    (logs / "rec.log").write_text(f"INFO recommend user={GONE_USER}\nINFO recommend user={KEPT_USER}\n")
    return dict(var=var, url=url, cs=cs, rec=rec, console=console, dashboard=dashboard, alice=alice, bob=bob,
                entry=entry, out=out, artifact=artifact, rec_artifact=rec_artifact)


def forget(world, *extra: str) -> list[str]:
    return ["privacy", "forget", "--customer", ALICE, "--user", GONE_USER, "--var-dir", str(world["var"]),
            "--database-url", world["url"], "--rec-artifact", str(world["artifact"]), "--actor", "dpo-jane", *extra]


def test_dry_run_lists_what_would_go_and_changes_nothing(world, capsys):
    engine = make_engine(world["url"])
    before, files = dump_tables(engine), digests(world["var"])
    assert main(forget(world, "--dry-run", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    customer, user = out["customer"], out["user"]
    assert customer["dry_run"] and customer["found"] and customer["audit_id"] is None
    assert {k: customer["counts"][k] for k in ("conversations", "turns", "feedback", "kb_entries", "kb_history",
                                               "log_lines")} == \
        {"conversations": 1, "turns": 4, "feedback": 2, "kb_entries": 1, "kb_history": 2, "log_lines": 1}
    assert customer["items"]["conversations"] == [world["alice"].id] and customer["items"]["kb_entries"] == \
        [world["entry"]]
    assert customer["counts"]["other_turns_scrubbed"] >= 1  # Bob's suggestion that listed Alice's entry
    assert user["counts"]["recommendations"] == 5 and user["counts"]["parquet_rows"] == 5
    assert user["counts"]["batch_part_rows"] == 5 and user["counts"]["histories"] == 1
    assert user["counts"]["history_items"] == 14 and user["counts"]["log_lines"] == 1
    assert any("rec_interactions.csv still holds 14 interactions" in n for n in user["notes"])
    assert dump_tables(engine) == before and digests(world["var"]) == files  # not even the audit key was made
    engine.dispose()

    assert main(forget(world, "--dry-run")) == 0
    text = capsys.readouterr().out
    assert "would remove (dry run: nothing changed)" in text and world["alice"].id in text and "kb_entries" in text


def test_forget_leaves_nothing_of_theirs_and_everything_of_the_others(world, capsys):
    console, dashboard, alice, bob, entry = (world[k] for k in ("console", "dashboard", "alice", "bob", "entry"))
    assert main(forget(world, "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["customer"]["audit_id"] and out["user"]["audit_id"] and not out["customer"]["dry_run"]

    # nothing of theirs in any table nor in any file of the var folder (database, index, batch outputs, artifact
    # copy, logs)
    theirs = [ALICE, alice.id, alice.id[:8], entry, *ALICE_WORDS, f"user={GONE_USER}"]
    engine = make_engine(world["url"])
    tables = dump_tables(engine)
    assert [w for w in theirs + [GONE_USER] if w in tables] == []
    texts = file_texts(world["var"], world["cs"].index_folder)
    assert {str(p): w for p, t in texts.items() for w in [*theirs, GONE_USER] if w in t} == {}

    # the others' data is intact
    store = Store(world["url"])
    kept = store.get_conversation(bob.id)
    assert [t.role for t in kept.turns] == ["customer", "agent", "customer", "agent"]
    assert kept.turns[0].text == BOB_SAYS and kept.turns[-1].text == BOB_EDIT
    assert entry not in kept.turns[0].reply.model_dump_json()  # her entry left his stored suggestion
    assert store.feedback_stats() == {"accepted": 1, "edited": 1, "rejected": 0}
    pairs = store.feedback_pairs()  # what `cs learn` trains on; Bob's first pair pointed at her entry: it is gone
    assert ("How do I activate my card?", f"fb-{bob.id[:8]}-{kept.turns[2].id}") in pairs
    assert all(e != entry and q != ALICE_SAYS for q, e in pairs)
    assert [e.answer for e in store.kb_entries(origin="feedback")] == [BOB_EDIT]
    with RecStore(world["url"]) as rec_store:
        assert rec_store.count() == 159 * 5
    merged = pq.read_table(world["out"]).to_pandas()
    assert GONE_USER not in set(merged.user_id) and (merged.user_id == KEPT_USER).sum() == 5
    logs = world["var"] / "demo" / "logs"
    assert (logs / "cs.log").read_text() == f"INFO customer {BOB} opened {bob.id}\nINFO epoch 3 of 4, 2 users done\n"
    assert (logs / "rec.log").read_text() == f"INFO recommend user={KEPT_USER}\n"

    # the console that was running stops serving her entry at its next call, and still serves Bob's
    assert entry not in [h.entry.id for h in console.search_kb(ALICE_SAYS)]
    assert entry not in console.kb and entry not in console.retriever.dense.ids
    assert console.search_kb("activate my card in the app")[0].entry.answer == BOB_EDIT
    # the recommender: the running dashboard and a new service no longer know the user; a re-run leaves them out
    assert GONE_USER not in dashboard.users() and dashboard.history(GONE_USER) == []
    fresh = RecService.build(world["rec"])
    assert fresh.recommend(GONE_USER).source == "popularity" and fresh.recommend(KEPT_USER).source == "model"
    assert users_count(world["artifact"]) == users_count(world["rec_artifact"]) - 14  # her 14 items counted out
    art = load_artifact(world["artifact"])
    rerun = run_batch(art, world["out"], BatchSettings(chunk_size=64), k=5, progress=False)
    assert rerun.users == 159 and GONE_USER not in set(pq.read_table(world["out"]).to_pandas().user_id)

    # the audit trail: who asked and how many rows of each kind, never whom in clear
    assert main(["privacy", "audit", "--json", "--var-dir", str(world["var"]), "--database-url", world["url"],
                 "--customer", ALICE]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["actor"] == "dpo-jane" and record["action"] == "forget-customer"
    assert record["counts"]["conversations"] == 1 and record["counts"]["kb_entries"] == 1
    assert len(record["subject"]) == 32 and ALICE not in json.dumps(record)
    engine.dispose()

    # forgetting again finds nothing: one line, exit 0
    assert main(["privacy", "forget", "--customer", ALICE, "--var-dir", str(world["var"]), "--database-url",
                 world["url"]]) == 0
    assert capsys.readouterr().out.strip() == f"no data for customer {ALICE}"


# ------------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv, message", [
    (["--customer", ""], "error: give a non-empty customer id"),
    (["--customer", "   "], "error: give a non-empty customer id"),
    (["--customer", ALICE, "--user", ""], "error: give a non-empty user id"),
    ([], "error: give --customer ID, --user ID or both"),
])
def test_an_empty_id_is_one_line_exit_2_and_nothing_goes(argv, message, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'var' / 'trident.db'}"
    store = Store(url).create()
    conv = store.open_conversation(ALICE)
    store.add_turn(conv.id, "customer", ALICE_SAYS)
    anonymous = store.open_conversation("")  # an empty id must never match the conversations opened without one
    rc = main(["privacy", "forget", *argv, "--var-dir", str(tmp_path / "var"), "--database-url", url])
    captured = capsys.readouterr()
    assert rc == 2 and captured.err.strip() == message and captured.out == ""
    assert len(store.get_conversation(conv.id).turns) == 1 and store.get_conversation(anonymous.id)
    assert not (tmp_path / "var" / "privacy.key").exists()
    store.close()


def test_an_unknown_id_is_one_line_exit_0(tmp_path, capsys):
    rc = main(["privacy", "forget", "--customer", "cust-nobody", "--var-dir", str(tmp_path / "var"),
               "--database-url", f"sqlite:///{tmp_path / 'var' / 'trident.db'}"])
    assert rc == 0 and capsys.readouterr().out.strip() == "no data for customer cust-nobody"


# ------------------------------------------------------------------------------------------------------- retention
def _age(store: Store, conversation_id: str, days: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.update(conversations).where(conversations.c.id == conversation_id)
                     .values(updated_at=utcnow() - timedelta(days=days)))


def _seed_old_and_new(store: Store) -> tuple[str, str, str]:
    """A conversation last updated 400 days ago, with a KB entry made from it, and one of today."""
    old = store.open_conversation("cust-old")
    turn = store.add_turn(old.id, "customer", "Where is the Zanzibar branch?")
    entry = f"fb-{old.id[:8]}-{turn.id}"
    store.upsert_kb_entries([KBEntry(id=entry, question=turn.text, answer="Next to the harbour.",
                                     source="feedback:a")])
    store.record_feedback(Feedback(conversation_id=old.id, turn_id=turn.id, agent="a", verdict="edited",
                                   query=turn.text, new_entry_id=entry, final_text="Next to the harbour."))
    _age(store, old.id, 400)
    new = store.open_conversation("cust-new")
    store.add_turn(new.id, "customer", "How do I check my balance?")
    return old.id, new.id, entry


def test_retention_deletes_what_is_older_than_the_period_with_an_audit_record(db_url, tmp_path, capsys):
    store = Store(db_url).create()
    old, new, entry = _seed_old_and_new(store)
    version = store.kb_version()
    argv = ["privacy", "retention", "--var-dir", str(tmp_path / "var"), "--database-url", db_url, "--json"]

    assert main([*argv, "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)["retention"]
    assert dry["counts"]["conversations"] == 1 and dry["items"]["kb_entries"] == [entry] and dry["dry_run"]
    assert store.get_conversation(old) and store.kb_version() == version

    assert main([*argv, "--actor", "nightly"]) == 0
    done = json.loads(capsys.readouterr().out)["retention"]
    assert (done["counts"]["conversations"], done["counts"]["turns"], done["counts"]["feedback"],
            done["counts"]["kb_entries"], done["counts"]["kb_history"]) == (1, 1, 1, 1, 1)
    with pytest.raises(UnknownConversation):
        store.get_conversation(old)
    assert [t.text for t in store.get_conversation(new).turns] == ["How do I check my balance?"]
    assert store.kb_entries() == [] and store.kb_version() > version  # a running console catches up
    with AuditStore(store.engine) as trail:
        (record,) = trail.records()
    assert (record.action, record.actor, record.subject) == ("retention", "nightly", "")

    _age(store, new, 30)
    assert main(["privacy", "retention", "--days", "0", "--var-dir", str(tmp_path / "var"), "--database-url",
                 db_url]) == 0
    assert capsys.readouterr().out.splitlines() == ["nothing to remove", "note: retention is off "
                                                    "(CS_RETENTION_DAYS=0): conversations are kept"]
    assert main([*argv, "--days", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["retention"]["items"]["conversations"] == [new]
    store.close()


def test_the_suite_applies_the_retention_period(tmp_path, monkeypatch):
    monkeypatch.setenv("CS_RETENTION_DAYS", "90")
    plan = Plan.build(CoreSettings(var_dir=tmp_path / "var", data_dir=tmp_path / "data",
                                   artifacts_dir=tmp_path / "artifacts"), SuiteSettings())
    with Store(plan.database_url).create() as store:
        old, new, _ = _seed_old_and_new(store)
        out = io.StringIO()
        retention(plan, Console(file=out, width=200))
        assert "retention: 1 conversation(s) removed" in out.getvalue() and "(90 days)" in out.getvalue()
        assert [c.id for c in store.list_conversations()] == [new]


# ------------------------------------------------------------------------------------------------------------ logs
def test_log_lines_go_when_they_name_an_id_and_short_ids_need_to_be_named_as_one(tmp_path):
    log = tmp_path / "logs" / "x.log"
    log.parent.mkdir()
    log.write_text("user 42 logged in\nepoch 42 done\ncustomer cust-alice-7731 opened\ncust-alice-77310 is another\n"
                   "saw 42 items\n")
    report = ErasureReport("forget-user", dry_run=True)
    scrub_logs([tmp_path], ["42", "cust-alice-7731"], report)
    assert report.counts == {"log_lines": 2} and log.read_text().count("\n") == 5  # a dry run writes nothing
    scrub_logs([tmp_path], ["42", "cust-alice-7731"], ErasureReport("forget-user", dry_run=False))
    assert log.read_text() == "epoch 42 done\ncust-alice-77310 is another\nsaw 42 items\n"


def test_the_audit_names_a_person_by_a_keyed_hash(tmp_path):
    first = subject_hash(tmp_path, "customer", ALICE)
    assert first == subject_hash(tmp_path, "customer", ALICE) and len(first) == 32 and ALICE not in first
    assert first != subject_hash(tmp_path, "user", ALICE) and first != subject_hash(tmp_path / "other", "customer",
                                                                                     ALICE)
    assert (tmp_path / "privacy.key").stat().st_mode & 0o077 == 0
    assert subject_hash(tmp_path / "none", "customer", ALICE, create=False) is None
