"""Knowledge-base ingest: FAQ files into cleaned, de-duplicated, PII-redacted :class:`KBEntry` lists (:func:`load_kb`).

Inputs: ``.csv`` / ``.jsonl`` rows of ``id, question, answer[, category]`` (names case-insensitive; ``faq_id`` reads as
``id`` and ``class`` as ``category``; without an id an entry gets a hash of its content), StackFAQ threads (``faq_id,
question, answers``: the answers joined), ``.md`` (a passage per heading) and ``.txt`` (a passage per paragraph, titled
by its first sentence); long passages are split at sentences. Files are UTF-8; a problem the user can fix in a file
raises :class:`KBFormatError`. Cleaning removes HTML, collapses whitespace, drops empty rows, redacts PII and drops rows
whose normalised question was seen before (the first wins). ``KBEntry.source`` is ``"<file name>:<n>"``: the CSV data
row, the JSONL line, or the Markdown / text passage. Labelled queries are read by :func:`read_queries`.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from apps.customer_service.schemas import KBBuild, KBEntry
from core.jsonl import json_lines
from core.privacy import redact_with_details

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".jsonl", ".md", ".markdown", ".txt")

CURRENT_FILE = "CURRENT"
QUESTION_MAX_CHARS = 120
ANSWER_PREVIEW_CHARS = 400

_ID_FIELDS = ("id", "faq_id")
_CATEGORY_FIELDS = ("category", "class")
_BOM = b"\xef\xbb\xbf"


class KBFormatError(ValueError):
    """A knowledge-base file the user has to fix; the one-line message names the file (and row, line or byte)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


# -------------------------------------------------------------------------------------------------------- text cleaning

# Only tags of real HTML elements are removed: FAQ text also uses angle brackets for placeholders ("PWD<space>1234",
# ".../forum/<groupname>/join") and comparisons ("i<l.length"), which must survive.
_BLOCK_TAGS = frozenset("address article aside blockquote body br caption center dd div dl dt figcaption figure "
                        "footer form h1 h2 h3 h4 h5 h6 head header hr html li main nav ol p pre section table tbody "
                        "td tfoot th thead title tr ul".split())
_INLINE_TAGS = frozenset("a abbr b big button cite code del em font i iframe img input ins kbd label link mark meta q "
                         "s samp small span strike strong sub sup u".split())
# A tag: "<", optional "/", a name, then well-formed attributes (name, or name=value) up to ">". Requiring attribute
# syntax keeps code such as "if (a<b && c>d)" intact. Quoted values cannot contain "<" or ">", so every candidate
# stops at the next bracket and the scan stays linear.
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)"
                     r"""((?:\s+[A-Za-z_:@][-\w:.@]*(?:\s*=\s*(?:"[^"<>]*"|'[^'<>]*'|[^\s"'<>=`]+))?)*)\s*/?>""")
# What replaces a tag: a line break, a paragraph break or nothing; a tag not listed (not HTML) stays.
_TAG_REPLACEMENTS = {**dict.fromkeys(_INLINE_TAGS, ""), **dict.fromkeys(_BLOCK_TAGS, "\n\n"),
                     **dict.fromkeys(("br", "li", "tr", "dt", "dd"), "\n")}
_SCRIPT_RE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
_PARAGRAPH_BREAK_RE = re.compile(r"\n[^\S\n]*\n\s*")
_SPACE_RE = re.compile(r"\s+")
# Zero-width characters and C0 control characters other than tab and line breaks.
_INVISIBLE_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\x00-\x08\x0e-\x1f\x7f]")
_NORMALISE_RE = re.compile(r"[\W_]+")
# A sentence ends at ".", "!", "?" or "…" (optionally followed by closing quotes or brackets) and whitespace.
_SENTENCE_END_RE = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+")


def clean_text(text: str) -> str:
    """Strip HTML tags (block elements leave a paragraph break), then decode entities (so ``&lt;b&gt;`` stays the
    text ``<b>``), and collapse whitespace, keeping one blank line between paragraphs; the result is stripped."""
    if "<" in text:
        text = _COMMENT_RE.sub(" ", text)
        text = _SCRIPT_RE.sub("\n\n", text)
        text = _TAG_RE.sub(lambda tag: _TAG_REPLACEMENTS.get(tag[2].lower(), tag[0]), text)
    if "&" in text:
        text = html.unescape(text)
    text = _INVISIBLE_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    paragraphs = (_SPACE_RE.sub(" ", part).strip() for part in _PARAGRAPH_BREAK_RE.split(text))
    return "\n\n".join(part for part in paragraphs if part)


def normalise_question(text: str) -> str:
    """The key under which questions count as duplicates: case-folded, each non-alphanumeric run one space."""
    return _NORMALISE_RE.sub(" ", text.casefold()).strip()


def _sentences(paragraph: str) -> list[str]:
    """Split one paragraph into sentences (whitespace between them is dropped)."""
    return [part for part in _SENTENCE_END_RE.split(paragraph) if part] if paragraph else []


def _cut_words(text: str, limit: int) -> str:
    """Return ``text`` cut to at most ``limit`` characters, at a word boundary when one is not too far back."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    return text[: cut if cut > limit // 2 else limit].rstrip()


def _first_sentence(text: str) -> str:
    """Return the first sentence of ``text``, shortened to :data:`QUESTION_MAX_CHARS` (with "…" when cut)."""
    first = _sentences(text.split("\n\n", 1)[0])
    sentence = first[0] if first else text
    return sentence if len(sentence) <= QUESTION_MAX_CHARS else _cut_words(sentence, QUESTION_MAX_CHARS - 1) + "…"


def _split_long(text: str, limit: int) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters at sentence (else word) boundaries.

    Sentences are packed greedily; a paragraph break between two sentences in one chunk is kept. A single sentence
    longer than ``limit`` is cut at word boundaries.
    """
    if len(text) <= limit:
        return [text]
    units: list[tuple[str, str]] = []  # (separator before the unit, unit)
    for p_index, paragraph in enumerate(text.split("\n\n")):
        for s_index, sentence in enumerate(_sentences(paragraph)):
            separator = " " if s_index else ("\n\n" if p_index else "")
            while len(sentence) > limit:
                head = _cut_words(sentence, limit) or sentence[:limit]
                units.append((separator, head))
                sentence = sentence[len(head) :].lstrip()
                separator = " "
            if sentence:
                units.append((separator, sentence))
    chunks: list[str] = []
    for separator, unit in units:
        if chunks and len(chunks[-1]) + len(separator) + len(unit) <= limit:
            chunks[-1] += separator + unit
        else:
            chunks.append(unit)
    return chunks


# -------------------------------------------------------------------------------------------------------- reading files
@dataclass(frozen=True)
class _Raw:
    """One row or passage as read, before cleaning. ``answers`` has one item, or several for a thread."""

    id: str | None
    question: str
    answers: tuple[str, ...]
    category: str
    source: str
    cleaned: bool = False


def _decode(path: Path) -> str:
    """Read ``path`` as UTF-8 (a leading BOM is dropped); :class:`KBFormatError` if it is missing, unreadable or
    not UTF-8 (naming the first bad byte and its offset)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KBFormatError(f"{path}: file not found") from None
    except OSError as exc:
        raise KBFormatError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise KBFormatError(f"{path}: not UTF-8: byte 0x{data[offset]:02x} at byte offset {offset} (line {line}); "
                            "re-save the file as UTF-8") from None


def _columns(names: Iterable[str]) -> dict[str, int]:
    """Map each lower-cased, stripped field name to its position (the first spelling wins)."""
    return {name.strip().lower(): index for index, name in reversed(list(enumerate(names)))}


def _require(fields: dict[str, int], needed: tuple[str, ...], found: Iterable[str], where: str, kind: str) -> None:
    """Raise the one-line :class:`KBFormatError` naming the ``needed`` columns or fields missing from ``fields``."""
    missing = [name for name in needed if name not in fields]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise KBFormatError(f"{where}: missing {kind}{plural} {', '.join(map(repr, missing))}; found {kind}s: "
                            f"{', '.join(map(repr, found)) or 'none'}")


def _as_text(value: object) -> str:
    """Return a field value as text: None is empty, numbers are written out, strings pass through."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _cell(values: list, fields: dict[str, int], names: tuple[str, ...]) -> str:
    """The text of the first of the fields ``names`` present (``""`` when none is, or the row is short)."""
    index = next((fields[name] for name in names if name in fields), None)
    return _as_text(values[index]) if index is not None and index < len(values) else ""


def _raw(values: list, fields: dict[str, int], answers: tuple[str, ...], source: str) -> _Raw:
    """A CSV row or JSONL record: id, question and category from their fields, with its answers."""
    return _Raw(id=_cell(values, fields, _ID_FIELDS).strip() or None, question=_cell(values, fields, ("question",)),
                answers=answers, category=_cell(values, fields, _CATEGORY_FIELDS), source=source)


def _read_csv(path: Path) -> Iterator[_Raw]:
    """Yield the rows of a CSV file with ``question`` and ``answer`` columns (``id``, ``category`` optional)."""
    reader = csv.reader(io.StringIO(_decode(path), newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise KBFormatError(f"{path}: empty file; expected a header row with question and answer columns")
        fields = _columns(header)
        _require(fields, ("question", "answer"), [n.strip() for n in header if n.strip()], str(path), "column")
        for number, row in enumerate(reader, start=1):
            if any(value.strip() for value in row):  # A blank line between rows is not a row.
                yield _raw(row, fields, (_cell(row, fields, ("answer",)),), f"{path.name}:{number}")
    except csv.Error as exc:
        raise KBFormatError(f"{path} line {reader.line_num}: malformed CSV ({exc})") from None


def _read_jsonl(path: Path) -> Iterator[_Raw]:
    """Yield the records of a JSONL file: question/answer rows, or threads with an ``answers`` list."""
    for number, line in json_lines(_decode(path)):
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KBFormatError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise KBFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
        fields, values = _columns(record), list(record.values())
        threaded = "answer" not in fields and "answers" in fields
        _require(fields, ("question", "answers" if threaded else "answer"), list(record), where, "field")
        raw_answers = values[fields["answers" if threaded else "answer"]]
        if threaded and isinstance(raw_answers, list):
            answers = tuple(_as_text(item) for item in raw_answers)
        elif threaded and raw_answers is not None and not isinstance(raw_answers, str):
            raise KBFormatError(f"{where}: 'answers' must be a list of strings, got {type(raw_answers).__name__}")
        else:
            answers = (_as_text(raw_answers),)
        yield _raw(values, fields, answers, f"{path.name}:{number}")


_FENCE_RE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}(?:\s+(.*?))?\s*$")
_CLOSING_HASHES_RE = re.compile(r"\s+#+$")


def _markdown_sections(text: str) -> Iterator[tuple[str, str]]:
    """Yield ``(heading, body)`` for each ATX heading (not inside fenced code); text before the first heading has
    the heading ``""``."""
    heading = ""
    body: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE_RE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING_RE.match(line)
        if match:
            yield heading, "\n".join(body)
            heading = _CLOSING_HASHES_RE.sub("", match.group(1) or "").strip()
            body = []
        else:
            body.append(line)
    yield heading, "\n".join(body)


def _passages(path: Path, pieces: Iterable[tuple[str, str]], limit: int) -> Iterator[_Raw]:
    """Turn ``(question, text)`` pieces into numbered passages, splitting long texts. An empty question means "use
    the first sentence"; later chunks of a section get " (part k)", so they are not duplicates of the first."""
    number = 0
    for question, body in pieces:
        for part, chunk in enumerate(_split_long(body, limit), start=1):
            number += 1
            title = (question if part == 1 else f"{question} (part {part})") if question else _first_sentence(chunk)
            yield _Raw(id=f"{path.stem}#{number}", question=title, answers=(chunk,), category="",
                       source=f"{path.name}:{number}", cleaned=True)


def _read_markdown(path: Path, limit: int) -> Iterator[_Raw]:
    """Yield one passage per Markdown section; headings with an empty body (section titles) are skipped."""
    sections = ((clean_text(heading), clean_text(body)) for heading, body in _markdown_sections(_decode(path)))
    return _passages(path, ((heading, body) for heading, body in sections if body), limit)


def _read_text(path: Path, limit: int) -> Iterator[_Raw]:
    """Yield one passage per blank-line paragraph of a text file."""
    paragraphs = (clean_text(part) for part in _PARAGRAPH_BREAK_RE.split(_decode(path)))
    return _passages(path, (("", paragraph) for paragraph in paragraphs if paragraph), limit)


def _read_file(path: Path, limit: int) -> Iterator[_Raw]:
    """Dispatch on the file's extension (one of :data:`SUPPORTED_SUFFIXES`)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".jsonl"):
        return (_read_csv if suffix == ".csv" else _read_jsonl)(path)
    return (_read_text if suffix == ".txt" else _read_markdown)(path, limit)


def _expand(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Resolve the ``paths`` argument of :func:`load_kb` to the files to read, in order, without repeats."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise KBFormatError("no KB files given")
    supported = ", ".join(SUPPORTED_SUFFIXES)
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise KBFormatError(f"{path}: folder has no KB files ({supported})")
            files.extend(found)
        elif not path.exists():
            raise KBFormatError(f"{path}: file not found")
        elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise KBFormatError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; use one of {supported}")
        else:
            files.append(path)
    unique: dict[Path, Path] = {}
    for path in files:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


# ------------------------------------------------------------------------------------------------------ building the KB
def _content_id(question: str, answer: str) -> str:
    """Return the stable id of an entry without one: 12 hex chars of sha1 over the normalised question and answer."""
    key = normalise_question(question) + "\n" + normalise_question(answer)
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def _unique_ids(entries: list[KBEntry]) -> list[KBEntry]:
    """Give repeated ids a numeric suffix (``x``, ``x-2``, ``x-3``...), never clashing with another entry's id."""
    taken = {entry.id for entry in entries}
    used: set[str] = set()
    out: list[KBEntry] = []
    for entry in entries:
        new_id, n = entry.id, 1
        while new_id in used or (n > 1 and new_id in taken):
            n += 1
            new_id = f"{entry.id}-{n}"
        used.add(new_id)
        out.append(entry if n == 1 else entry.model_copy(update={"id": new_id}))
    return out


def kb_version(entries: Iterable[KBEntry]) -> str:
    """The content version of a KB: 12 hex chars of sha256 over its sorted ``(id, question, answer, category)``
    rows (plus the paraphrases of an entry that has some), so the order of entries and files does not matter."""
    rows = sorted((e.id, e.question, e.answer, e.category, *((list(e.paraphrases),) if e.paraphrases else ()))
                  for e in entries)
    payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def load_kb(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *, passage_chars: int = 800) -> KBBuild:
    """Load, clean, redact and de-duplicate knowledge-base files.

    Args:
        paths: A file, a folder (every supported file inside it, recursively, sorted; hidden files are skipped), or
            a list of files and folders.
        passage_chars: The longest Markdown or text passage, in characters; longer ones are split at sentences.

    Returns:
        The kept entries in input order, the content version, and the counts of rows read, dropped as duplicates,
        dropped as empty, and redacted.

    Raises:
        KBFormatError: A file is missing, of an unsupported type, not UTF-8, lacks the question/answer fields, or
            holds malformed CSV or JSONL.
        ValueError: ``passage_chars`` is smaller than 1.
    """
    if isinstance(passage_chars, bool) or not isinstance(passage_chars, int) or passage_chars < 1:
        raise ValueError(f"passage_chars must be a positive int, got {passage_chars!r}")
    files = _expand(paths)
    n_read = n_empty = n_duplicates = n_redacted = 0
    seen_questions: set[str] = set()
    entries: list[KBEntry] = []
    for path in files:
        for raw in _read_file(path, passage_chars):
            n_read += 1
            if raw.cleaned:
                question, answer = raw.question, raw.answers[0]
            else:
                question = clean_text(raw.question)
                answer = "\n\n".join(text for text in map(clean_text, raw.answers) if text)
            if not question or not answer:
                n_empty += 1
                continue
            q_redacted, a_redacted = redact_with_details(question), redact_with_details(answer)
            key = normalise_question(q_redacted.text)
            if key in seen_questions:
                n_duplicates += 1
                continue
            seen_questions.add(key)
            n_redacted += bool(q_redacted.redactions or a_redacted.redactions)
            entries.append(KBEntry(id=raw.id or _content_id(q_redacted.text, a_redacted.text),
                                   question=q_redacted.text, answer=a_redacted.text,
                                   category=" ".join(raw.category.split()), source=raw.source))
    entries = _unique_ids(entries)
    return KBBuild(entries=entries, version=kb_version(entries), n_read=n_read, n_duplicates=n_duplicates,
                   n_empty=n_empty, n_redacted=n_redacted, sources=[str(path) for path in files])


# -------------------------------------------------------------------------------------------- saving and reading builds

_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_kb(build: KBBuild, path: str | os.PathLike[str]) -> Path:
    """Save a build as JSON and return the file written.

    A path ending in ``.json`` is written as that file. Any other path is a folder (created if needed): the build is
    written to ``kb-<version>.json`` in it and the folder's ``CURRENT`` file is set to the version, so earlier
    builds stay available and :func:`read_kb` on the folder reads this one.

    Raises:
        ValueError: The build's version cannot be used in a file name (folder mode).
    """
    target = Path(path)
    payload = json.dumps(build.model_dump(mode="json"), ensure_ascii=False, indent=1) + "\n"
    if target.suffix.lower() == ".json" and not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(target, payload)
        return target
    if not _VERSION_RE.fullmatch(build.version):
        raise ValueError(f"KB version {build.version!r} cannot be used in a file name")
    target.mkdir(parents=True, exist_ok=True)
    file = target / f"kb-{build.version}.json"
    _write_atomic(file, payload)
    _write_atomic(target / CURRENT_FILE, build.version + "\n")
    return file


def read_kb(path: str | os.PathLike[str]) -> KBBuild:
    """Read a build written by :func:`save_kb`: a build's JSON file, or the one a folder's ``CURRENT`` file names.

    Raises:
        KBFormatError: The file, the folder's ``CURRENT`` file or the build it names is missing, or the file is not
            a KB build.
    """
    source = Path(path)
    if source.is_dir():
        pointer = source / CURRENT_FILE
        if not pointer.is_file():
            raise KBFormatError(f"{source}: no {CURRENT_FILE} file; save a KB build there with save_kb first")
        version = pointer.read_text(encoding="utf-8").strip()
        if not _VERSION_RE.fullmatch(version):
            raise KBFormatError(f"{pointer}: not a KB version: {version[:40]!r}")
        source = source / f"kb-{version}.json"
    try:
        return KBBuild.model_validate_json(_decode(source))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        raise KBFormatError(f"{source}: not a KB build file ({where}: {first['msg']})") from None


# ----------------------------------------------------------------------------------------------------------- index text
def entry_text(entry: KBEntry, with_answer: bool = True) -> str:
    """The text to embed or index for an entry, one item per line: the question, each paraphrase that differs from
    it, and with ``with_answer`` the answer's first :data:`ANSWER_PREVIEW_CHARS` characters (cut at a word)."""
    lines = [entry.question]
    seen = {normalise_question(entry.question)}
    for paraphrase in entry.paraphrases:
        key = normalise_question(paraphrase)
        if key and key not in seen:
            seen.add(key)
            lines.append(paraphrase.strip())
    if with_answer and entry.answer:
        lines.append(_cut_words(" ".join(entry.answer.split()), ANSWER_PREVIEW_CHARS))
    return "\n".join(lines)


def read_queries(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(query, gold KB id) pairs from JSONL or CSV with a ``query`` field and ``faq_id`` (or ``entry_id`` / ``id``).

    Raises:
        KBFormatError: The file is missing, not UTF-8, malformed, of another kind, or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise KBFormatError(f"query file not found: {path}")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KBFormatError(f"{path} is not UTF-8 (byte offset {exc.start})") from exc
    if path.suffix == ".jsonl":
        rows = []
        for n, line in json_lines(raw):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise KBFormatError(f"{path} line {n}: malformed JSON ({exc.msg})") from exc
    elif path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(raw))
        try:
            rows = list(reader)
        except csv.Error as exc:  # e.g. a field longer than the csv module's limit (128 KiB)
            raise KBFormatError(f"{path} line {reader.line_num}: malformed CSV ({exc})") from None
    else:
        raise KBFormatError(f"{path}: queries must be .jsonl or .csv")
    out = []
    for n, row in enumerate(rows, 1):
        gold = next((row[k] for k in ("faq_id", "entry_id", "id") if k in row and row[k] not in (None, "")),
                    None) if isinstance(row, dict) else None  # a JSONL line may hold a number or a list
        if gold is None or "query" not in row:
            raise KBFormatError(f"{path} row {n}: needs 'query' and 'faq_id' (or 'entry_id'/'id')")
        out.append((str(row["query"]), str(gold)))
    if not out:
        raise KBFormatError(f"{path}: no queries")
    return out
