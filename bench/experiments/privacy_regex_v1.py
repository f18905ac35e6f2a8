"""The regex PII detector that ``core/privacy.py`` used before Presidio, kept as the baseline of ``bench/privacy.py``.

It is no longer used by the product. Each detected span is replaced by a typed placeholder such as ``[EMAIL]`` or
``[CARD]``; it knows eight kinds (no names, places, addresses, dates of birth or account numbers).

Design notes:

* Detectors prefer structure that can be checked (Luhn for cards, ISO 13616 mod-97 for IBANs, valid octets for IPv4,
  allocation rules for SSNs and National Insurance numbers) over bare digit counts. That keeps order numbers, dates,
  amounts and version strings out of the redacted output.
* Every pattern is either free of nested quantifiers or bounded, so a long text is scanned in linear time.
* Placeholders contain no digits and no ``@``, so no detector matches them. Removing a span can still change what its
  neighbours look like, so :func:`find_pii` re-scans the redacted text until nothing new is found. That makes
  ``redact(redact(x)) == redact(x)`` hold by construction.

Known limitations, by choice: phone numbers written as one unbroken block of digits without a leading ``+`` are not
redacted, because they look the same as order and account numbers. IBANs in lower case are only recognised in their
compact form, because four-letter words in lower case would otherwise look like IBAN groups. Only ASCII digits are
recognised.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence

from core.privacy import Redaction, RedactionResult  # the same result types as the product's detector

__all__ = [
    "KINDS",
    "Redaction",
    "RedactionResult",
    "find_pii",
    "redact",
    "redact_many",
    "redact_with_details",
]

# Supported kinds in priority order. When two detections overlap, the kind listed first wins. URL credentials come
# before EMAIL because "scheme://user:password@host.tld" also contains an email-shaped "password@host.tld". The
# validated account numbers (IBAN, CARD) come before the looser PHONE.
KINDS: tuple[str, ...] = ("URL_CREDENTIALS", "EMAIL", "IBAN", "CARD", "SSN", "NINO", "IP", "PHONE")

_PRIORITY: dict[str, int] = {kind: rank for rank, kind in enumerate(KINDS)}

# Limit on re-scan passes in find_pii. In practice the second pass finds nothing. The limit only bounds the loop.
_MAX_PASSES = 8


# --------------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------------

_DIGITS_RE = re.compile(r"[0-9]+")


def _is_word_char(text: str, index: int) -> bool:
    """Return True if ``text[index]`` exists and is a letter, digit or underscore."""
    if index < 0 or index >= len(text):
        return False
    char = text[index]
    return char.isalnum() or char == "_"


def _placeholder(kind: str) -> str:
    """Return the placeholder that replaces a span of ``kind``."""
    return f"[{kind}]"


# --------------------------------------------------------------------------------------------------------------------
# EMAIL
# --------------------------------------------------------------------------------------------------------------------

# A practical subset of RFC 5322: the local part allows dots, "+" (plus-addressing), "%", "_" and "-". The domain is
# one or more DNS labels (subdomains) and an alphabetic TLD. The lookbehind makes a match start only at the beginning
# of a local part. Together with the single character class for the local part, that keeps the scan linear (no retry
# from every character of a long word). Label lengths are bounded as in DNS (63 characters).
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])"
    r"[A-Za-z0-9._%+\-]+"
    r"@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9\-])"
)


def _find_emails(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` spans of email addresses."""
    for match in _EMAIL_RE.finditer(text):
        yield match.span()


# --------------------------------------------------------------------------------------------------------------------
# URL_CREDENTIALS
# --------------------------------------------------------------------------------------------------------------------

# "scheme://user:password@host": only the "user:password" part is removed, so the host stays readable. A password is
# required. A bare "user@host" is handled by EMAIL (when it looks like one). Brackets are not allowed in the user name,
# so a placeholder is never taken for a user name.
_URL_CREDENTIALS_RE = re.compile(r"(?<=://)[^\s/?#@:\[\]]+:[^\s/?#@]+(?=@)")


def _find_url_credentials(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` spans of ``user:password`` in URLs."""
    for match in _URL_CREDENTIALS_RE.finditer(text):
        yield match.span()


# --------------------------------------------------------------------------------------------------------------------
# IBAN
# --------------------------------------------------------------------------------------------------------------------

# Country code, two check digits, then 11-30 alphanumerics (ISO 13616 lengths run from 15 to 34 characters). The
# printed form uses groups of four separated by single spaces and must be upper case. Otherwise runs of four-letter
# words in lower case would look like IBAN groups. The compact electronic form may be in any case. Every candidate
# must also pass the mod-97 check, so a wrong check digit is not redacted.
_IBAN_RE = re.compile(
    r"(?<![A-Za-z0-9])"
    r"(?:[A-Z]{2}[0-9]{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?"
    r"|[A-Za-z]{2}[0-9]{2}[A-Za-z0-9]{11,30})"
    r"(?![A-Za-z0-9])"
)


def _iban_checksum_ok(compact: str) -> bool:
    """Return True if ``compact`` (no spaces) passes the ISO 13616 mod-97 check."""
    rearranged = (compact[4:] + compact[:4]).upper()
    # int(ch, 36) maps 0-9 to themselves and A-Z to 10-35, as the standard requires.
    numeric = "".join(str(int(char, 36)) for char in rearranged)
    return int(numeric) % 97 == 1


def _find_ibans(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` spans of IBANs that pass the mod-97 check."""
    for match in _IBAN_RE.finditer(text):
        start, end = match.span()
        candidate = match.group()
        # Try the whole match first, then shorter ends at group boundaries. Otherwise a capitalised word after a
        # printed IBAN ("... 7654 32 THEN") would be absorbed as a group and hide a valid IBAN.
        ends = [end] + [start + i for i in range(len(candidate) - 1, 0, -1) if candidate[i] == " "]
        for candidate_end in ends:
            compact = text[start:candidate_end].replace(" ", "")
            if 15 <= len(compact) <= 34 and _iban_checksum_ok(compact):
                yield start, candidate_end
                break


# --------------------------------------------------------------------------------------------------------------------
# CARD
# --------------------------------------------------------------------------------------------------------------------

# A digit run is digits joined by single spaces or dashes. Card numbers are printed that way: "4111 1111 1111 1111",
# "4111-1111-1111-1111", "4111111111111111". Runs are cut into cards by _card_end_at.
_DIGIT_RUN_RE = re.compile(r"[0-9]+(?:[ -][0-9]+)*")


def _luhn_ok(digits: str) -> bool:
    """Return True if the ASCII digit string ``digits`` passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _is_card_layout(lengths: Sequence[int]) -> bool:
    """Return True if digit groups of these lengths are laid out like a printed card number.

    Accepted layouts, 13-19 digits in total: one unbroken block; groups of four with a shorter last group (Visa,
    Mastercard, Discover, 19-digit cards); and 4-6-5 / 4-6-4 (American Express, Diners Club).
    """
    total = sum(lengths)
    if not 13 <= total <= 19:
        return False
    if len(lengths) == 1:
        return True
    if tuple(lengths) in ((4, 6, 5), (4, 6, 4)):
        return True
    return all(length == 4 for length in lengths[:-1]) and 1 <= lengths[-1] <= 4


def _card_end_at(
    text: str, groups: list[tuple[int, int]], first: int, left_glued: bool, right_glued: bool
) -> int | None:
    """Return the index of the last group of a card starting at group ``first``, or None.

    A card must not be part of a longer digit run. Digits glued to it directly or by a dash, or to a letter, count as
    the same token. A neighbouring group separated by a space counts as a separate number ("ref 12 4111 1111 1111
    1111"). The exception is a neighbouring group of four digits next to a card printed in groups: that continues the
    grouping, so the card is only a window of a longer number.
    """
    count = len(groups)
    first_length = groups[first][1] - groups[first][0]
    if first_length != 4 and not 13 <= first_length <= 19:
        return None  # No card layout starts with such a group. Checking this first keeps long runs cheap.
    if first == 0 and left_glued:
        return None
    lengths: list[int] = []
    separator = ""
    total = 0
    last = first
    while last < count:
        if last > first:
            gap = text[groups[last - 1][1] : groups[last][0]]
            if separator and gap != separator:
                break
            separator = gap
        length = groups[last][1] - groups[last][0]
        total += length
        if total > 19:
            break
        lengths.append(length)
        last += 1
    # Prefer the longest layout that fits. "4111 1111 1111 1111 123" is one 19-digit number, not a card plus "123".
    for end_index in range(first + len(lengths) - 1, first - 1, -1):
        layout = lengths[: end_index - first + 1]
        if not _is_card_layout(layout):
            continue
        grouped = len(layout) > 1
        if first > 0:
            gap = text[groups[first - 1][1] : groups[first][0]]
            previous_length = groups[first - 1][1] - groups[first - 1][0]
            if gap != " " or (grouped and previous_length == 4):
                continue
        if end_index == count - 1:
            if right_glued:
                continue
        else:
            gap = text[groups[end_index][1] : groups[end_index + 1][0]]
            next_length = groups[end_index + 1][1] - groups[end_index + 1][0]
            if gap != " " or (grouped and next_length == 4):
                continue
        digits = "".join(text[start:end] for start, end in groups[first : end_index + 1])
        if _luhn_ok(digits):
            return end_index
    return None


def _find_cards(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` spans of Luhn-valid payment card numbers."""
    for run in _DIGIT_RUN_RE.finditer(text):
        run_start, run_end = run.span()
        groups = [match.span() for match in _DIGITS_RE.finditer(text, run_start, run_end)]
        left_glued = _is_word_char(text, run_start - 1)
        right_glued = _is_word_char(text, run_end)
        index = 0
        while index < len(groups):
            last = _card_end_at(text, groups, index, left_glued, right_glued)
            if last is None:
                index += 1
            else:
                yield groups[index][0], groups[last][1]
                index = last + 1


# --------------------------------------------------------------------------------------------------------------------
# SSN (US)
# --------------------------------------------------------------------------------------------------------------------

# ddd-dd-dddd, only in the dashed form. Nine bare digits are far more often something else. The SSA never issues
# area 000, 666 or 900-999, group 00 or serial 0000, so those are excluded to avoid matching placeholder or test data.
_SSN_RE = re.compile(r"(?<![\w-])(?!000|666|9[0-9]{2})[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![\w-])")


def _find_ssns(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` spans of US Social Security numbers."""
    for match in _SSN_RE.finditer(text):
        yield match.span()


# --------------------------------------------------------------------------------------------------------------------
# NINO (UK National Insurance number)
# --------------------------------------------------------------------------------------------------------------------

# Two prefix letters, six digits (optionally in pairs), suffix A-D. HMRC never uses D, F, I, Q, U or V in the prefix,
# nor O as the second letter, nor the prefixes BG, GB, KN, NK, NT, TN and ZZ. Excluding them keeps random codes out.
_NINO_RE = re.compile(
    r"(?<![A-Za-z0-9])"
    r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"(?: ?[0-9]{2}){3} ?[A-D]"
    r"(?![A-Za-z0-9])"
)


def _find_ninos(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` spans of UK National Insurance numbers."""
    for match in _NINO_RE.finditer(text):
        yield match.span()


# --------------------------------------------------------------------------------------------------------------------
# IP (IPv4)
# --------------------------------------------------------------------------------------------------------------------

# Four decimal octets 0-255 without leading zeros. The lookarounds reject longer dotted runs ("1.2.3.4.5") and tokens
# glued to letters ("v1.2.3.4"), which are version numbers rather than addresses.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.[0-9])")


def _find_ips(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` spans of IPv4 addresses."""
    for match in _IPV4_RE.finditer(text):
        yield match.span()


# --------------------------------------------------------------------------------------------------------------------
# PHONE
# --------------------------------------------------------------------------------------------------------------------

# Candidate runs: an optional "+", then digit groups joined by one space, dash or dot, with optional parenthesised
# area codes ("(202) 555-0173", "+44 (0)20 7946 0958"). Each step starts with a different character (separator, "(",
# or a digit only right after ")"), so the pattern has one way to match and runs in linear time. The lookbehind
# rejects runs that continue a word, amount, version, time or "#123" (e.g. "$1,234.56", "v1.2.3", "10:30"). Whether
# a run is really a phone number is decided in Python by _phone_shape_ok, which is easier to read than a regex.
_PHONE_RUN_RE = re.compile(
    r"(?<![\w+$€£¥#@.,:/\\-])"
    r"\+?"
    r"(?:\([0-9]{1,5}\)|[0-9]+)"
    r"(?:[ .-](?:\([0-9]{1,5}\)|[0-9]+)|(?<=\))[0-9]+|\([0-9]{1,5}\))*"
)

# US and Canada (NANP) layouts: 202-555-0173, 1-800-555-0199, and the local 555-0173.
_NANP_LAYOUTS = ((3, 3, 4), (1, 3, 3, 4))


def _looks_like_date(lengths: Sequence[int], values: Sequence[str]) -> bool:
    """Return True for YYYY-MM-DD and DD-MM-YYYY / MM-DD-YYYY shaped groups with plausible values."""
    if len(lengths) != 3:
        return False
    if lengths[0] == 4 and lengths[1] <= 2 and lengths[2] <= 2:
        year, first, second = values
    elif lengths[2] == 4 and lengths[0] <= 2 and lengths[1] <= 2:
        first, second, year = values
    else:
        return False
    return 1000 <= int(year) <= 2999 and 1 <= int(first) <= 31 and 1 <= int(second) <= 31


def _phone_shape_ok(text: str, start: int, end: int, groups: Sequence[re.Match[str]]) -> bool:
    """Decide whether the run ``text[start:end]`` with digit ``groups`` is a phone number.

    Rules, in order:

    * 7-15 digits in total (E.164 allows at most 15). That rules out years, "#12345" and most amounts.
    * A leading "+" is a strong signal: any grouping is accepted.
    * Otherwise at least two groups are required. A single block of digits is as likely to be an order number.
    * Dates, year ranges (2019-2024) and the SSN layout are rejected.
    * Without a trunk "0" or parentheses, only the US/Canada layouts are accepted. That rejects "1.234.567",
      "100 200 300", "12345-6789", versions and the digit groups of an IBAN.
    * National numbers with a trunk "0" or an area code in parentheses need a last group of at least three digits
      (or all pairs, as in French "01 23 45 67 89"). A one-digit group may appear only first. Dots must be the only
      separator and leave at least three groups that do not look like an IPv4 address.
    """
    lengths = [match.end() - match.start() for match in groups]
    total = sum(lengths)
    if not 7 <= total <= 15:
        return False
    if text[start] == "+":
        return True
    if len(groups) < 2:
        return False
    values = [match.group() for match in groups]
    gaps = {text[left.end() : right.start()] for left, right in itertools.pairwise(groups)}
    has_parens = "(" in text[start:end]
    if _looks_like_date(lengths, values):
        return False
    if lengths == [4, 4] and all(1000 <= int(value) <= 2999 for value in values):
        return False  # A year range such as 2019-2024.
    if lengths == [3, 2, 4] and gaps == {"-"}:
        return False  # SSN layout; the SSN detector owns it, with its own validity rules.
    if not has_parens and not values[0].startswith("0"):
        if tuple(lengths) in _NANP_LAYOUTS:
            return gaps <= {" ", "-"} or gaps == {"."}
        return lengths == [3, 4] and gaps == {"-"}
    if any(length == 1 for length in lengths[1:]):
        return False
    dotted = any("." in gap for gap in gaps)
    if dotted and (gaps != {"."} or len(groups) < 3 or (len(groups) == 4 and max(lengths) <= 3)):
        return False
    return lengths[-1] >= 3 or (values[0].startswith("0") and all(length == 2 for length in lengths))


def _phone_right_boundary_ok(text: str, end: int) -> bool:
    """Return True unless the run is glued to a word, a unit/currency or continues as a decimal, time or date."""
    if end >= len(text):
        return True
    char = text[end]
    if char.isalnum() or char in "_%$€£¥":
        return False
    return not (char in ",:/." and end + 1 < len(text) and text[end + 1].isdigit())


def _find_phones(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` spans of phone numbers."""
    for run in _PHONE_RUN_RE.finditer(text):
        start, end = run.span()
        groups = list(_DIGITS_RE.finditer(text, start, end))
        if _phone_right_boundary_ok(text, end) and _phone_shape_ok(text, start, end, groups):
            yield start, end
            continue
        # A short run may end with an unrelated number after a space ("call 020 7946 0958 2 times"). Try prefixes
        # that end at a space. Long runs (more digits than any phone number) are left alone, so a window of a longer
        # number is never taken.
        if sum(match.end() - match.start() for match in groups) > 15:
            continue
        for count in range(len(groups) - 1, 0, -1):
            cut = groups[count - 1].end()
            if text[cut : groups[count].start()] == " " and _phone_shape_ok(text, start, cut, groups[:count]):
                yield start, cut
                break


# --------------------------------------------------------------------------------------------------------------------
# Detection pipeline
# --------------------------------------------------------------------------------------------------------------------

_DETECTORS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "URL_CREDENTIALS": _find_url_credentials,
    "EMAIL": _find_emails,
    "IBAN": _find_ibans,
    "CARD": _find_cards,
    "SSN": _find_ssns,
    "NINO": _find_ninos,
    "IP": _find_ips,
    "PHONE": _find_phones,
}


def _check_text(text: object, name: str = "text") -> str:
    """Return ``text`` if it is a str, else raise TypeError."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be str, got {type(text).__name__}")
    return text


def _normalise_kinds(kinds: Iterable[str] | str | None) -> tuple[str, ...]:
    """Validate ``kinds`` and return them in priority order.

    Args:
        kinds: None for all kinds, one kind name, or an iterable of kind names (case-insensitive).

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
        kind = item.strip().upper()
        if kind not in _PRIORITY:
            raise ValueError(f"unknown PII kind {item!r}; supported kinds: {', '.join(KINDS)}")
        selected.add(kind)
    return tuple(kind for kind in KINDS if kind in selected)


def _resolve_overlaps(candidates: Iterable[Redaction]) -> list[Redaction]:
    """Keep non-overlapping detections: higher priority first, then the longer span, then the earlier one."""
    ordered = sorted(candidates, key=lambda r: (_PRIORITY[r.kind], r.start - r.end, r.start))
    starts: list[int] = []
    kept: list[Redaction] = []
    for candidate in ordered:
        index = bisect.bisect_left(starts, candidate.start)
        if index > 0 and kept[index - 1].end > candidate.start:
            continue
        if index < len(kept) and kept[index].start < candidate.end:
            continue
        starts.insert(index, candidate.start)
        kept.insert(index, candidate)
    return kept


def _detect_once(text: str, kinds: tuple[str, ...]) -> list[Redaction]:
    """Run the selected detectors once and return resolved, sorted detections."""
    candidates = [
        Redaction(kind, start, end, text[start:end])
        for kind in kinds
        for start, end in _DETECTORS[kind](text)
        if end > start
    ]
    return _resolve_overlaps(candidates)


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
            literal = text[cursor : redaction.start]
            parts.append(literal)
            segments.append((out, out + len(literal), cursor, redaction.start, False))
            out += len(literal)
        placeholder = _placeholder(redaction.kind)
        parts.append(placeholder)
        segments.append((out, out + len(placeholder), redaction.start, redaction.end, True))
        out += len(placeholder)
        cursor = redaction.end
    if cursor < len(text):
        parts.append(text[cursor:])
        segments.append((out, out + len(text) - cursor, cursor, len(text), False))
    return "".join(parts), segments


def _to_original(
    segments: Sequence[tuple[int, int, int, int, bool]], seg_starts: Sequence[int], start: int, end: int
) -> tuple[int, int]:
    """Map the span ``[start, end)`` of redacted text to the original text, widening to whole placeholders."""
    first = segments[bisect.bisect_right(seg_starts, start) - 1]
    last = segments[bisect.bisect_right(seg_starts, end - 1) - 1]
    orig_start = first[2] if first[4] else first[2] + (start - first[0])
    orig_end = last[3] if last[4] else last[2] + (end - last[0])
    return orig_start, orig_end


def _find(text: str, kinds: tuple[str, ...]) -> list[Redaction]:
    """Detect PII and re-scan the redacted text until it is stable. See :func:`find_pii`."""
    if not text or not kinds:
        return []
    found = _detect_once(text, kinds)
    for _ in range(_MAX_PASSES):
        if not found:
            break
        redacted, segments = _apply(text, found)
        extra = _detect_once(redacted, kinds)
        if not extra:
            break
        # Removing a span changed a neighbour's context (e.g. a phone number next to a card). Fold the new detections
        # back into original coordinates; any earlier redaction they cover is absorbed.
        seg_starts = [segment[0] for segment in segments]
        mapped = []
        for redaction in extra:
            orig_start, orig_end = _to_original(segments, seg_starts, redaction.start, redaction.end)
            mapped.append(Redaction(redaction.kind, orig_start, orig_end, text[orig_start:orig_end]))
        survivors = [r for r in found if not any(m.start < r.end and r.start < m.end for m in mapped)]
        found = sorted(survivors + mapped, key=lambda r: r.start)
    return found


# --------------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------------


def find_pii(text: str, kinds: Iterable[str] | None = None) -> list[Redaction]:
    """Find PII spans in ``text``.

    Detections never overlap. When two overlap, the kind that comes first in :data:`KINDS` wins; among equal kinds
    the longer span wins. The result is exactly the set of spans that :func:`redact` replaces, and applying it gives
    text in which nothing more is detected.

    Args:
        text: The text to scan.
        kinds: Kinds to detect (case-insensitive names from :data:`KINDS`, or one name as a str). None means all.

    Returns:
        Detections sorted by start, with positions in ``text``.

    Raises:
        TypeError: If ``text`` is not a str, or ``kinds`` is not an iterable of str.
        ValueError: If ``kinds`` names an unsupported kind.
    """
    return _find(_check_text(text), _normalise_kinds(kinds))


def redact_with_details(text: str, kinds: Iterable[str] | None = None) -> RedactionResult:
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
    redacted, _ = _apply(text, redactions)
    return RedactionResult(text=redacted, redactions=tuple(redactions))


def redact(text: str, kinds: Iterable[str] | None = None) -> str:
    """Replace each PII span in ``text`` by a typed placeholder such as ``[EMAIL]``.

    The function is idempotent: ``redact(redact(x)) == redact(x)``.

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


def redact_many(texts: Iterable[str], kinds: Iterable[str] | None = None) -> list[str]:
    """Redact every text in ``texts``.

    Args:
        texts: The texts to redact. A single str is rejected, because it would be read one character at a time.
        kinds: Kinds to redact, as for :func:`find_pii`. None means all.

    Returns:
        The redacted texts, in input order.

    Raises:
        TypeError: If ``texts`` is a str or not iterable, or an item is not a str.
        ValueError: If ``kinds`` names an unsupported kind.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of str, not a single str; use redact() for one text")
    try:
        iterator = iter(texts)
    except TypeError:
        raise TypeError(f"texts must be an iterable of str, got {type(texts).__name__}") from None
    selected = _normalise_kinds(kinds)
    results: list[str] = []
    for index, item in enumerate(iterator):
        text = _check_text(item, f"texts[{index}]")
        results.append(_apply(text, _find(text, selected))[0])
    return results
