"""Tokenizers for the trainer: bytes (the default) or byte-level BPE (optional).

``ByteTokenizer``: UTF-8 bytes 0..255 plus BOS=256 and EOS=257 (vocab 258). No merges, no
training, nothing to download: every string round-trips, and bits per token are bits per
byte.

``BPETokenizer``: byte-level BPE (Sennrich et al. 2016; byte-level as in GPT-2) trained on
the training texts with the Hugging Face ``tokenizers`` library. The initial alphabet holds
all 256 bytes, so every string still encodes; BOS and EOS are special tokens (ids 0 and 1)
that are only ever added by ``encode``, never matched inside the text, so a document that
contains the string ``<|eos|>`` is tokenised as ordinary bytes. It is saved as
``tokenizer.json`` beside a checkpoint's config.json (see trainer.checkpoint).

Both expose ``token_bytes``: the number of UTF-8 bytes each id stands for (0 for BOS, EOS).
Summed over a document's tokens it is the document's UTF-8 byte count, which is what bits
per byte divides by (trainer.evaluate, scoring.loss), so the metric stays comparable
across tokenizers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

BPE_FILE = "tokenizer.json"
TOKENIZERS = ("byte", "bpe")  # ModelConfig.tokenizer
_BOS_TOKEN = "<|bos|>"
_EOS_TOKEN = "<|eos|>"


def _clean(text: str) -> str:
    """``text`` with lone surrogates (invalid in UTF-8) replaced by '?', as ByteTokenizer does."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _with_specials(ids: np.ndarray, bos_id: int, eos_id: int, bos: bool, eos: bool) -> np.ndarray:
    parts = [np.array([bos_id], np.uint16)] if bos else []
    parts.append(ids.astype(np.uint16))
    if eos:
        parts.append(np.array([eos_id], np.uint16))
    return np.concatenate(parts)


class ByteTokenizer:
    kind = "byte"
    BOS = 256
    EOS = 257
    vocab_size = 258
    token_bytes = np.array([1] * 256 + [0, 0], dtype=np.int64)  # bytes per id

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> np.ndarray:
        """UTF-8 bytes of ``text`` as uint16 ids. Lone surrogates (invalid in UTF-8) become '?'."""
        data = text.encode("utf-8", errors="replace")
        ids = np.frombuffer(data, dtype=np.uint8)
        return _with_specials(ids, self.BOS, self.EOS, bos, eos)

    def encode_batch(
        self, texts: Sequence[str], bos: bool = True, eos: bool = False
    ) -> list[np.ndarray]:
        return [self.encode(t, bos=bos, eos=eos) for t in texts]

    def decode_bytes(self, ids: Iterable[int] | np.ndarray) -> bytes:
        """The bytes ``ids`` stand for; special ids are dropped."""
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
        return arr[arr < 256].astype(np.uint8).tobytes()

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Bytes back to text; special ids are dropped, invalid UTF-8 becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def _byte_to_char() -> dict[int, str]:
    """The byte -> printable character map of byte-level BPE (GPT-2's convention).

    Printable Latin-1 bytes map to themselves; the other 68 bytes map, in byte order, to
    the code points 256, 257, ... so every token's string form is printable.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _tokenizers():
    """The ``tokenizers`` module, or an error that says how to get it (BPE is optional)."""
    try:
        import tokenizers
    except ImportError as e:
        raise ImportError(
            "tokenizer='bpe' needs the Hugging Face `tokenizers` package: "
            "pip install 'datawall[bpe]' (or use the default tokenizer='byte')"
        ) from e
    return tokenizers


class BPETokenizer:
    """Byte-level BPE over ``tokenizers.Tokenizer``; build with ``train`` or ``load``."""

    kind = "bpe"

    def __init__(self, tok) -> None:  # tok: tokenizers.Tokenizer
        bos, eos = tok.token_to_id(_BOS_TOKEN), tok.token_to_id(_EOS_TOKEN)
        if bos is None or eos is None:
            raise ValueError(f"BPE tokenizer has no {_BOS_TOKEN} / {_EOS_TOKEN} special tokens")
        tok.encode_special_tokens = True  # "<|eos|>" inside a text is plain bytes
        self._tok = tok
        self.BOS, self.EOS = bos, eos
        self.vocab_size = tok.get_vocab_size()
        char_to_byte = {c: b for b, c in _byte_to_char().items()}
        pieces = [b""] * self.vocab_size
        for token, i in tok.get_vocab().items():
            if i not in (bos, eos):
                try:
                    pieces[i] = bytes(char_to_byte[c] for c in token)
                except KeyError as e:
                    raise ValueError(f"BPE token {token!r} (id {i}) is not byte-level") from e
        self._pieces = pieces
        self.token_bytes = np.array([len(p) for p in pieces], dtype=np.int64)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn merges on ``texts`` until ``vocab_size`` ids (fewer if the texts run out)."""
        tk = _tokenizers()
        if vocab_size < 258:
            raise ValueError(f"BPE vocab_size={vocab_size} must be >= 258 (256 bytes + BOS + EOS)")
        tok = tk.Tokenizer(tk.models.BPE())
        # no normaliser: the tokens of a text must add up to exactly its UTF-8 bytes
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[_BOS_TOKEN, _EOS_TOKEN],  # ids 0 and 1
            initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator((_clean(t) for t in texts), trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: Path | str) -> BPETokenizer:
        return cls(_tokenizers().Tokenizer.from_file(str(path)))

    def save(self, path: Path | str) -> None:
        self._tok.save(str(path))

    def to_str(self) -> str:
        return self._tok.to_str()

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> np.ndarray:
        """Token ids (uint16) of ``text``, with BOS / EOS added as asked."""
        return self.encode_batch([text], bos=bos, eos=eos)[0]

    def encode_batch(
        self, texts: Sequence[str], bos: bool = True, eos: bool = False
    ) -> list[np.ndarray]:
        """``encode`` over many texts at once (the library tokenises them in parallel)."""
        out = self._tok.encode_batch([_clean(t) for t in texts], add_special_tokens=False)
        return [
            _with_specials(np.asarray(e.ids, dtype=np.uint16), self.BOS, self.EOS, bos, eos)
            for e in out
        ]

    def decode_bytes(self, ids: Iterable[int] | np.ndarray) -> bytes:
        """The bytes ``ids`` stand for; special and out-of-vocabulary ids are dropped."""
        return b"".join(self._pieces[int(i)] for i in ids if int(i) < self.vocab_size)

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Ids back to text; special ids are dropped, invalid UTF-8 becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


Tokenizer = ByteTokenizer | BPETokenizer


def tokenizer_of(model: object) -> Tokenizer:
    """The tokenizer a model was trained with (set by trainer.checkpoint.load_model and
    trainer.train.train as ``model.tokenizer``); bytes when none was attached."""
    tok = getattr(model, "tokenizer", None)
    return tok if tok is not None else ByteTokenizer()
