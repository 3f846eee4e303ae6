"""Byte-level tokenizer: UTF-8 bytes 0..255 plus BOS=256 and EOS=257 (vocab 258).

No merges, no training, nothing to download: every string round-trips, and bits per token
are bits per byte.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class ByteTokenizer:
    BOS = 256
    EOS = 257
    vocab_size = 258

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> np.ndarray:
        """UTF-8 bytes of ``text`` as uint16 ids. Lone surrogates (invalid in UTF-8) become '?'."""
        data = text.encode("utf-8", errors="replace")
        ids = np.frombuffer(data, dtype=np.uint8).astype(np.uint16)
        parts = [np.array([self.BOS], np.uint16)] if bos else []
        parts.append(ids)
        if eos:
            parts.append(np.array([self.EOS], np.uint16))
        return np.concatenate(parts)

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Bytes back to text; special ids are dropped, invalid UTF-8 becomes U+FFFD."""
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
        arr = arr[arr < 256].astype(np.uint8)
        return arr.tobytes().decode("utf-8", errors="replace")
