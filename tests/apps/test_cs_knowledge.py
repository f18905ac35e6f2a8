"""Knowledge-base ingest: formats, one-line errors, cleaning, redaction, versions, save/read, and the real FAQ data."""

from __future__ import annotations

import csv
import json

import pytest

from apps.common.settings import CoreSettings
from apps.customer_service.knowledge import (
    KBFormatError,
    clean_text,
    entry_text,
    load_kb,
    normalise_question,
    read_kb,
    save_kb,
)
from apps.customer_service.schemas import KBEntry
from core.privacy import redact

DATA = CoreSettings().data_dir
BANK_FAQS = DATA / "bank_faqs" / "BankFAQs.csv"
STACKFAQ_THREADS = DATA / "stackfaq" / "faq_threads.jsonl"
BANK_CLASSES = {"insurance", "cards", "loans", "accounts", "investments", "security", "fundstransfer"}


def write_csv(path, header, rows):
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def one_line_error(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------------------------
# Real data (skipped when ../shared/datasets is absent)
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.data
@pytest.mark.skipif(not BANK_FAQS.is_file(), reason=f"BankFAQs not found at {BANK_FAQS}")
def test_bank_faqs_reads_every_row_and_keeps_one_entry_per_question():
    build = load_kb(BANK_FAQS)
    assert build.n_read == 1764
    keys = [normalise_question(e.question) for e in build.entries]
    assert len(keys) == len(set(keys))
    assert build.n_duplicates >= 430 and build.n_empty == 0
    assert len(build.entries) + build.n_duplicates + build.n_empty == build.n_read
    assert {e.category for e in build.entries} <= BANK_CLASSES
    assert len({e.id for e in build.entries}) == len(build.entries)
    assert all(e.source.startswith("BankFAQs.csv:") for e in build.entries)


@pytest.mark.data
@pytest.mark.skipif(not STACKFAQ_THREADS.is_file(), reason=f"StackFAQ not found at {STACKFAQ_THREADS}")
def test_stackfaq_threads_give_one_entry_per_thread_with_all_answers():
    threads = [json.loads(line) for line in STACKFAQ_THREADS.read_text(encoding="utf-8").splitlines()]
    build = load_kb(STACKFAQ_THREADS)
    assert len(build.entries) == 125
    assert [e.id for e in build.entries] == [str(i) for i in range(125)]
    for entry, thread in zip(build.entries, threads, strict=True):
        assert entry.category == ""
        assert entry.question == redact(clean_text(thread["question"]))
        assert all(redact(clean_text(answer)) in entry.answer for answer in thread["answers"])


# ------------------------------------------------------------------------------------------------------------------
# Formats
# ------------------------------------------------------------------------------------------------------------------


def test_csv_columns_match_case_insensitively_and_class_becomes_category(tmp_path):
    path = write_csv(tmp_path / "faq.csv", ["Question", "ANSWER", "Class"], [["How do I pay?", "By card.", "cards"]])
    build = load_kb(path)
    (entry,) = build.entries
    assert (entry.question, entry.answer, entry.category, entry.source) == ("How do I pay?", "By card.", "cards",
                                                                           "faq.csv:1")
    assert len(entry.id) == 12  # no id column: a content hash
    assert load_kb(path).entries[0].id == entry.id


def test_csv_id_column_is_used(tmp_path):
    path = write_csv(tmp_path / "faq.csv", ["id", "question", "answer"], [["pay-1", "How do I pay?", "By card."]])
    assert load_kb(path).entries[0].id == "pay-1"


def test_jsonl_question_answer_rows_load(tmp_path):
    path = write_jsonl(tmp_path / "faq.jsonl", [{"id": 7, "question": "Opening hours?", "answer": "9 to 5.",
                                                 "category": "branch"}])
    (entry,) = load_kb(path).entries
    assert (entry.id, entry.question, entry.answer, entry.category) == ("7", "Opening hours?", "9 to 5.", "branch")


def test_thread_jsonl_keeps_every_answer(tmp_path):
    path = write_jsonl(tmp_path / "threads.jsonl", [
        {"faq_id": 0, "question": "Strike text?", "answers": ["Use tildes.", "Use the del tag.", "Or strike."]},
        {"faq_id": 1, "question": "Delete account?", "answers": ["Go to settings."]},
    ])
    build = load_kb(path)
    assert [e.id for e in build.entries] == ["0", "1"]
    assert build.entries[0].answer == "Use tildes.\n\nUse the del tag.\n\nOr strike."


def test_markdown_headings_become_entries(tmp_path):
    path = tmp_path / "help.md"
    path.write_text(
        "# Bank help\n\n## How do I reset my PIN?\n\nUse the app.\nOr call us.\n\n"
        "## Lost card\n\nFreeze it in the app.\n\n```\n# not a heading\n```\n",
        encoding="utf-8",
    )
    build = load_kb(path)
    assert [e.question for e in build.entries] == ["How do I reset my PIN?", "Lost card"]
    assert build.entries[0].answer == "Use the app. Or call us."
    assert "# not a heading" in build.entries[1].answer
    assert [e.id for e in build.entries] == ["help#1", "help#2"]
    assert [e.source for e in build.entries] == ["help.md:1", "help.md:2"]


def test_long_text_is_split_into_passages_under_the_limit(tmp_path):
    sentences = [f"Sentence number {i} explains one more detail of the savings account." for i in range(40)]
    path = tmp_path / "guide.txt"
    path.write_text("Short first paragraph. It has two sentences.\n\n" + " ".join(sentences) + "\n", encoding="utf-8")
    build = load_kb(path, passage_chars=300)
    assert len(build.entries) > 2
    assert all(len(e.answer) <= 300 for e in build.entries)
    assert build.entries[0].question == "Short first paragraph."
    assert build.entries[1].question == sentences[0]
    assert all(e.answer.endswith(".") for e in build.entries)  # cut at sentence ends
    assert " ".join(e.answer for e in build.entries[1:]) == " ".join(sentences)
    assert [e.id for e in build.entries] == [f"guide#{i}" for i in range(1, len(build.entries) + 1)]


def test_text_question_is_truncated_to_120_chars(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("word " * 60 + "end.\n", encoding="utf-8")
    (entry,) = load_kb(path).entries
    assert len(entry.question) <= 120 and entry.question.startswith("word word")


def test_folder_loads_every_supported_file_sorted(tmp_path):
    write_csv(tmp_path / "b.csv", ["question", "answer"], [["Q two?", "A two."]])
    write_csv(tmp_path / "a.csv", ["question", "answer"], [["Q one?", "A one."]])
    (tmp_path / "notes.xlsx").write_bytes(b"ignored")
    build = load_kb(tmp_path)
    assert [e.question for e in build.entries] == ["Q one?", "Q two?"]
    assert [p.rsplit("/", 1)[-1] for p in build.sources] == ["a.csv", "b.csv"]


# ------------------------------------------------------------------------------------------------------------------
# Errors a user can fix
# ------------------------------------------------------------------------------------------------------------------


def test_csv_missing_answer_column_names_the_columns_found(tmp_path):
    path = write_csv(tmp_path / "faq.csv", ["Question", "Reply", "Class"], [["Q?", "A.", "x"]])
    with pytest.raises(KBFormatError) as exc:
        load_kb(path)
    message = one_line_error(exc)
    assert "faq.csv" in message and "'answer'" in message
    assert "'Question'" in message and "'Reply'" in message and "'Class'" in message


def test_latin1_csv_error_names_the_byte_and_offset(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("question,answer\nCaf\u00e9 hours?,9 to 5\n".encode("latin-1"))
    with pytest.raises(KBFormatError) as exc:
        load_kb(path)
    message = one_line_error(exc)
    assert "latin.csv" in message and "UTF-8" in message
    assert "0xe9" in message and "offset 19" in message


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfquestion,answer\nQ?,A.\n")
    assert load_kb(path).entries[0].question == "Q?"


def test_malformed_jsonl_line_error_names_the_line(tmp_path):
    path = tmp_path / "faq.jsonl"
    path.write_text('{"question": "Q1?", "answer": "A1."}\n\n{"question": "Q2?", "answer": \n', encoding="utf-8")
    with pytest.raises(KBFormatError) as exc:
        load_kb(path)
    message = one_line_error(exc)
    assert "faq.jsonl line 3" in message and "malformed JSON" in message


def test_missing_file_and_unsupported_extension_are_one_line_errors(tmp_path):
    with pytest.raises(KBFormatError, match="file not found") as exc:
        load_kb(tmp_path / "nope.csv")
    assert "nope.csv" in one_line_error(exc)
    (tmp_path / "faq.xlsx").write_bytes(b"x")
    with pytest.raises(KBFormatError, match=r"unsupported file type '\.xlsx'") as exc:
        load_kb(tmp_path / "faq.xlsx")
    one_line_error(exc)


# ------------------------------------------------------------------------------------------------------------------
# Cleaning, redaction, de-duplication
# ------------------------------------------------------------------------------------------------------------------


def test_html_tags_and_entities_are_stripped(tmp_path):
    path = write_csv(tmp_path / "faq.csv", ["question", "answer"], [
        ["<b>Fees</b> &amp; charges?",
         "<p>No&nbsp;fee for <a href='/x'>transfers</a>.</p><p>Send 'PWD&lt;space&gt;1234' or PIN<space>.</p>"],
    ])
    (entry,) = load_kb(path).entries
    assert entry.question == "Fees & charges?"
    assert entry.answer == "No fee for transfers.\n\nSend 'PWD<space>1234' or PIN<space>."


def test_clean_text_keeps_angle_brackets_that_are_not_html():
    text = "if (a<b && c>d) go to /forum/<groupname>/join"
    assert clean_text(text) == text


def test_unterminated_csv_quote_is_one_line_error(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text('question,answer\n"How do I pay?,By card.\n', encoding="utf-8")
    with pytest.raises(KBFormatError, match="malformed CSV") as exc:
        load_kb(path)
    assert "faq.csv line 2" in one_line_error(exc)


def test_email_and_card_number_in_answer_are_redacted(tmp_path):
    path = write_csv(tmp_path / "faq.csv", ["question", "answer"], [
        ["Who do I write to?", "Mail jane.doe@example.com about card 4111 1111 1111 1111."],
        ["Opening hours?", "9 to 5."],
    ])
    build = load_kb(path)
    assert build.entries[0].answer == "Mail [EMAIL] about card [CARD]."
    assert build.n_redacted == 1


def test_empty_rows_and_duplicate_questions_are_dropped_and_counted(tmp_path):
    path = write_csv(tmp_path / "faq.csv", ["question", "answer"], [
        ["How do I pay?", "By card."],
        ["how do I pay", "By cash."],  # same normalised question, other answer: first wins
        ["How do I pay?", "By card."],  # exact duplicate pair
        ["", "Orphan answer."],
        ["<br>", "Tag-only question."],
        ["Refunds?", "   "],
    ])
    build = load_kb(path)
    assert [(e.question, e.answer) for e in build.entries] == [("How do I pay?", "By card.")]
    assert (build.n_read, build.n_duplicates, build.n_empty) == (6, 2, 3)


def test_duplicate_ids_get_a_numeric_suffix(tmp_path):
    path = write_csv(tmp_path / "faq.csv", ["id", "question", "answer"], [
        ["x", "Q one?", "A."], ["x", "Q two?", "B."], ["x-2", "Q three?", "C."], ["x", "Q four?", "D."],
    ])
    assert [e.id for e in load_kb(path).entries] == ["x", "x-3", "x-2", "x-4"]


# ------------------------------------------------------------------------------------------------------------------
# Versions, save/read, index text
# ------------------------------------------------------------------------------------------------------------------


def test_version_is_stable_under_file_order_and_changes_with_an_answer(tmp_path):
    a = write_csv(tmp_path / "a.csv", ["question", "answer"], [["Q one?", "A one."]])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": "q2", "question": "Q two?", "answer": "A two."}])
    version = load_kb([a, b]).version
    assert load_kb([b, a]).version == version
    assert load_kb(tmp_path).version == version
    write_jsonl(b, [{"id": "q2", "question": "Q two?", "answer": "A two, changed."}])
    assert load_kb([a, b]).version != version


def test_save_and_read_roundtrip_to_a_file(tmp_path):
    path = write_csv(tmp_path / "faq.csv", ["question", "answer", "category"], [["Q?", "A.", "c"]])
    build = load_kb(path)
    build.entries[0] = build.entries[0].model_copy(update={"paraphrases": ("Question?",)})
    out = save_kb(build, tmp_path / "out" / "kb.json")
    assert read_kb(out) == build


def test_save_to_a_folder_keeps_each_version_and_reads_the_current_one(tmp_path):
    faq = write_csv(tmp_path / "faq.csv", ["question", "answer"], [["Q?", "A."]])
    kb_dir = tmp_path / "kb"
    first = load_kb(faq)
    first_file = save_kb(first, kb_dir)
    write_csv(faq, ["question", "answer"], [["Q?", "A, revised."]])
    second = load_kb(faq)
    second_file = save_kb(second, kb_dir)
    assert first_file.name == f"kb-{first.version}.json" and first_file.is_file()
    assert second_file.name == f"kb-{second.version}.json"
    assert (kb_dir / "CURRENT").read_text(encoding="utf-8").strip() == second.version
    assert read_kb(kb_dir) == second
    assert read_kb(first_file) == first


def test_read_kb_without_current_file_is_one_line_error(tmp_path):
    with pytest.raises(KBFormatError, match="CURRENT") as exc:
        read_kb(tmp_path)
    one_line_error(exc)


def test_entry_text_has_question_paraphrases_and_answer_start():
    entry = KBEntry(id="1", question="How do I pay?", answer="word " * 200, paraphrases=("Payment options?",))
    text = entry_text(entry)
    lines = text.split("\n")
    assert lines[:2] == ["How do I pay?", "Payment options?"]
    assert 350 <= len(lines[2]) <= 400 and lines[2].startswith("word word")
    assert entry_text(entry, with_answer=False) == "How do I pay?\nPayment options?"


@pytest.mark.parametrize("text, counts", [("id,question,answer\n", "0 read, 0"),
                                          ("id,question,answer\n1,,x\n", "1 read, 1")])
def test_indexing_a_kb_without_entries_is_a_one_line_error_before_the_model_is_used(tmp_path, text, counts):
    from apps.customer_service.index import build_index
    from apps.customer_service.settings import CSSettings

    path = tmp_path / "kb.csv"
    path.write_text(text)
    with pytest.raises(KBFormatError, match=f"kb.csv: no entries to index \\({counts} with an empty question"):
        build_index(CSSettings(core=CoreSettings(var_dir=tmp_path)), engine=None, kb_path=path)
    assert not (tmp_path / "cs").exists()  # nothing was written


@pytest.mark.parametrize("name, text, needle", [
    ("q.jsonl", '{"query": "lost card", "faq_id": "lb-001"}\n5\n', "q.jsonl row 2: needs 'query' and 'faq_id'"),
    ("q.jsonl", '["lost card", "lb-001"]\n', "q.jsonl row 1: needs 'query' and 'faq_id'"),
    ("q.csv", "query,faq_id\n" + "x" * 200_000 + ",lb-001\n", "q.csv line 1: malformed CSV (field larger than"),
])
def test_a_malformed_query_file_is_one_kb_format_error(tmp_path, name, text, needle):
    from apps.customer_service.knowledge import read_queries

    (tmp_path / name).write_text(text)
    with pytest.raises(KBFormatError) as info:
        read_queries(tmp_path / name)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_query_file_keeps_a_line_separator_inside_a_query(tmp_path):
    from apps.customer_service.knowledge import read_queries

    path = tmp_path / "q.jsonl"
    rows = [{"query": "card lost\u2028abroad", "faq_id": "lb-001"}, {"query": "pin\u2029change", "faq_id": "lb-002"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert read_queries(path) == [("card lost\u2028abroad", "lb-001"), ("pin\u2029change", "lb-002")]
