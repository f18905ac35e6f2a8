"""Scoring PII detection against labelled messages (``trident privacy eval``, ``bench/privacy.py``).

A labelled file is JSON lines, one message per line: ``{"text": ..., "spans": [{"start", "end", "type"}, ...]}``
with character offsets into ``text`` (end exclusive); other keys are ignored, and so are blank lines. A span's type
is a kind of :data:`core.privacy.KINDS` or a common name for one (:data:`TYPE_ALIASES`, any case).

Scores (:func:`score`):

* recall: the share of gold spans whose every non-space character lies inside a redacted span (of any kind);
* precision: the share of redacted spans that overlap a gold span;
* f1: their harmonic mean; per type: recall and the number of gold spans, under the type as the file writes it.

With no gold span recall is 1.0, and with no redacted span precision is 1.0: nothing was missed, or nothing was
redacted wrongly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.jsonl import json_lines
from core.privacy import KINDS, Redaction, find_pii_many, selected_kinds

# Names other labelled sets use for the kinds of core.privacy (Presidio's entity names among them).
TYPE_ALIASES: dict[str, str] = {
    **{kind: kind for kind in KINDS},
    "EMAIL_ADDRESS": "EMAIL", "E-MAIL": "EMAIL", "MAIL": "EMAIL",
    "PHONE_NUMBER": "PHONE", "TELEPHONE": "PHONE", "TEL": "PHONE", "MOBILE": "PHONE",
    "CREDIT_CARD": "CARD", "CREDIT_CARD_NUMBER": "CARD", "CARD_NUMBER": "CARD", "PAYMENT_CARD": "CARD",
    "IBAN_CODE": "IBAN", "US_SSN": "SSN", "SOCIAL_SECURITY_NUMBER": "SSN",
    "UK_NINO": "NINO", "NI_NUMBER": "NINO", "NATIONAL_INSURANCE_NUMBER": "NINO",
    "IP_ADDRESS": "IP", "IPV4": "IP", "IPV6": "IP", "IPV4_ADDRESS": "IP", "IPV6_ADDRESS": "IP",
    "URL_CREDENTIAL": "URL_CREDENTIALS", "CREDENTIALS": "URL_CREDENTIALS", "PASSWORD": "URL_CREDENTIALS",
    "DATE_OF_BIRTH": "DOB", "BIRTH_DATE": "DOB", "BIRTHDATE": "DOB",
    "ACCOUNT_NUMBER": "ACCOUNT", "BANK_ACCOUNT": "ACCOUNT", "CUSTOMER_NUMBER": "ACCOUNT", "CUSTOMER_ID": "ACCOUNT",
    "CUSTOMER": "ACCOUNT", "ACCOUNT_ID": "ACCOUNT", "US_BANK_NUMBER": "ACCOUNT", "UK_SORT_CODE": "ACCOUNT",
    "SORT_CODE": "ACCOUNT", "MEMBER_ID": "ACCOUNT", "POLICY_NUMBER": "ACCOUNT",
    "STREET_ADDRESS": "ADDRESS", "POSTCODE": "ADDRESS", "POSTAL_CODE": "ADDRESS", "ZIP": "ADDRESS",
    "ZIP_CODE": "ADDRESS", "UK_POSTCODE": "ADDRESS",
    "NAME": "PERSON", "PER": "PERSON", "PERSON_NAME": "PERSON", "FULL_NAME": "PERSON",
    "LOC": "LOCATION", "GPE": "LOCATION", "PLACE": "LOCATION", "CITY": "LOCATION", "COUNTRY": "LOCATION",
}


class LabelledDataError(ValueError):
    """A labelled file that cannot be read: one line naming the file (and the line, where there is one)."""


@dataclass(frozen=True)
class GoldSpan:
    """One labelled span: ``text[start:end]`` is PII of ``type`` (as the file writes it)."""

    start: int
    end: int
    type: str


@dataclass(frozen=True)
class LabelledMessage:
    """One labelled message."""

    text: str
    spans: tuple[GoldSpan, ...]


def canonical_type(name: str) -> str | None:
    """The kind of :data:`core.privacy.KINDS` that a labelled type stands for, or None."""
    return TYPE_ALIASES.get(name.strip().upper().replace(" ", "_"))


def _span(path: Path, line: int, index: int, raw: object, text: str) -> GoldSpan:
    where = f"{path}:{line}: span {index}"
    if not isinstance(raw, dict):
        raise LabelledDataError(f"{where} is not an object with start, end and type")
    missing = [key for key in ("start", "end", "type") if key not in raw]
    if missing:
        raise LabelledDataError(f"{where} has no {', '.join(missing)}")
    start, end, kind = raw["start"], raw["end"], raw["type"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise LabelledDataError(f"{where}: start and end must be integers, got {start!r} and {end!r}")
    if start < 0:
        raise LabelledDataError(f"{where}: start {start} is negative")
    if start >= end:
        raise LabelledDataError(f"{where}: start {start} is not before end {end}")
    if end > len(text):
        raise LabelledDataError(f"{where}: end {end} is past the end of the text ({len(text)} characters)")
    if not isinstance(kind, str) or canonical_type(kind) is None:
        raise LabelledDataError(f"{where}: unknown type {kind!r}; known types: {', '.join(KINDS)} "
                                f"(and their common names, e.g. EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD)")
    return GoldSpan(start, end, kind)


def read_labelled(path: str | Path) -> list[LabelledMessage]:
    """Read a labelled JSON-lines file.

    Args:
        path: The file.

    Returns:
        Its messages, in file order.

    Raises:
        LabelledDataError: If the file is missing, unreadable or empty, or a line is not valid JSON, not an object
            with a str ``text`` and a list ``spans``, or has a span that is not well formed (start before end,
            inside the text, a known type). The message names the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelledDataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelledDataError(f"{path}: cannot read: {exc}") from None
    messages = []
    for number, line in json_lines(text):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelledDataError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise LabelledDataError(f"{path}:{number}: expected an object with text and spans")
        text, spans = row.get("text"), row.get("spans", [])
        if not isinstance(text, str):
            raise LabelledDataError(f"{path}:{number}: text must be a string")
        if not isinstance(spans, list):
            raise LabelledDataError(f"{path}:{number}: spans must be a list")
        messages.append(LabelledMessage(text, tuple(_span(path, number, i, s, text) for i, s in enumerate(spans, 1))))
    if not messages:
        raise LabelledDataError(f"{path}: empty, no messages")
    return messages


def _covered(text: str, span: GoldSpan, redactions: Sequence[Redaction]) -> bool:
    """Whether every non-space character of ``span`` lies inside one of ``redactions``."""
    inside = [False] * (span.end - span.start)
    for redaction in redactions:
        for position in range(max(span.start, redaction.start), min(span.end, redaction.end)):
            inside[position - span.start] = True
    return all(inside[i] or text[span.start + i].isspace() for i in range(len(inside)))


def score(messages: Sequence[LabelledMessage], predicted: Sequence[Sequence[Redaction]]) -> dict:
    """Recall, precision, F1 and per-type recall of ``predicted`` (one list of redactions per message).

    Returns:
        ``{"recall", "precision", "f1", "per_type": {TYPE: {"recall", "n"}}, "n_spans", "n_redacted"}``.
    """
    hits: dict[str, list[int]] = {}
    found = total = 0
    right = redacted = 0
    for message, redactions in zip(messages, predicted, strict=True):
        for span in message.spans:
            ok = _covered(message.text, span, redactions)
            tally = hits.setdefault(span.type, [0, 0])
            tally[0] += ok
            tally[1] += 1
            found += ok
            total += 1
        for redaction in redactions:
            redacted += 1
            right += any(redaction.start < s.end and s.start < redaction.end for s in message.spans)
    recall = found / total if total else 1.0
    precision = right / redacted if redacted else 1.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    return {"recall": round(recall, 4), "precision": round(precision, 4), "f1": round(f1, 4),
            "per_type": {kind: {"recall": round(hit / n, 4), "n": n} for kind, (hit, n) in sorted(hits.items())},
            "n_spans": total, "n_redacted": redacted}


def evaluate(messages: Sequence[LabelledMessage],
             detect: Callable[[list[str]], Sequence[Sequence[Redaction]]] | None = None,
             kinds: Iterable[str] | str | None = None) -> dict:
    """Score a detector on ``messages`` and time it.

    Args:
        messages: Labelled messages (:func:`read_labelled`).
        detect: Texts to redactions per text; :func:`core.privacy.find_pii_many` by default. It is called once on a
            few messages first, so that loading models is not timed.
        kinds: With the default detector, the kinds to detect (as :func:`core.privacy.find_pii` takes them); the
            labelled spans of other kinds are then left out of the scores. None: every kind.

    Returns:
        ``{"recall", "precision", "f1", "per_type", "n_spans", "messages_per_s"}``.

    Raises:
        ValueError: If ``kinds`` names an unknown kind.
    """
    if kinds is not None:
        selected = set(selected_kinds(kinds))
        messages = [LabelledMessage(m.text, tuple(s for s in m.spans if canonical_type(s.type) in selected))
                    for m in messages]
        if detect is None:
            def detect(texts: list[str]) -> list[list[Redaction]]:
                return find_pii_many(texts, kinds)
    detect = detect or find_pii_many
    texts = [m.text for m in messages]
    detect(texts[:4])
    started = time.perf_counter()
    predicted = detect(texts)
    elapsed = time.perf_counter() - started
    result = score(messages, predicted)
    result.pop("n_redacted")
    result["messages_per_s"] = round(len(texts) / max(elapsed, 1e-9), 1)
    return result
