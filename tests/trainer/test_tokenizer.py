import numpy as np
import pytest

from trainer.tokenizer import BPETokenizer, ByteTokenizer

tok = ByteTokenizer()


def test_round_trip_ascii_and_non_ascii():
    for text in ["", "hello", "héllo wörld", "日本語のテキスト", "emoji 🙂 and\ttabs\n"]:
        ids = tok.encode(text)
        assert ids.dtype == np.uint16
        assert ids[0] == tok.BOS and len(ids) == 1 + len(text.encode("utf-8"))
        assert tok.decode(ids) == text


def test_bos_eos_flags():
    assert tok.encode("ab", bos=False).tolist() == [97, 98]
    assert tok.encode("ab", bos=True, eos=True).tolist() == [256, 97, 98, 257]
    assert tok.vocab_size == 258


def test_decode_drops_specials_and_replaces_invalid_utf8():
    assert tok.decode([256, 104, 105, 257]) == "hi"
    assert tok.decode([0xFF, 104]) == "\ufffdh"  # lone continuation byte
    assert tok.decode(np.array([0xE6, 0x97], dtype=np.uint16)) == "\ufffd"  # truncated char


def test_lone_surrogate_does_not_raise():
    ids = tok.encode("a\ud800b", bos=False)
    assert tok.decode(ids) == "a?b"


# -- byte-level BPE ------------------------------------------------------------------------
BPE_CORPUS = [
    "the quick brown fox jumps over the lazy dog. " * 4,
    "héllo wörld, ça va? naïve café " * 4,
    "日本語のテキストと絵文字 🙂🙂 " * 4,
]
UNICODE = [
    "",
    "the lazy fox",
    "héllo wörld",
    "日本語のテキスト",
    "emoji 🙂 and\ttabs\n",
    "new 𝔘 chars",
]


@pytest.fixture(scope="module")
def bpe():
    pytest.importorskip("tokenizers")
    return BPETokenizer.train(BPE_CORPUS, vocab_size=320)


def test_bpe_round_trip_unicode_and_token_bytes(bpe):
    assert 258 < bpe.vocab_size <= 320 and (bpe.BOS, bpe.EOS) == (0, 1)
    for text in UNICODE:
        ids = bpe.encode(text, bos=True, eos=True)
        assert ids.dtype == np.uint16 and ids[0] == bpe.BOS and ids[-1] == bpe.EOS
        assert bpe.decode(ids) == text
        # the tokens of a text stand for exactly its UTF-8 bytes (what bpb divides by)
        assert bpe.token_bytes[ids].sum() == len(text.encode("utf-8"))
    assert len(bpe.encode("the quick brown fox", bos=False)) < len("the quick brown fox")


def test_bpe_special_token_text_is_plain_bytes(bpe):
    ids = bpe.encode("a <|eos|> b <|bos|>", bos=False)
    assert bpe.EOS not in ids.tolist() and bpe.BOS not in ids.tolist()
    assert bpe.decode(ids) == "a <|eos|> b <|bos|>"
    assert bpe.decode(bpe.encode("a\ud800b", bos=False)) == "a?b"  # as ByteTokenizer


def test_bpe_save_load_same_ids(bpe, tmp_path):
    bpe.save(tmp_path / "tokenizer.json")
    loaded = BPETokenizer.load(tmp_path / "tokenizer.json")
    assert loaded.vocab_size == bpe.vocab_size
    for text in UNICODE:
        assert loaded.encode(text).tolist() == bpe.encode(text).tolist()
    np.testing.assert_array_equal(loaded.token_bytes, bpe.token_bytes)


def test_bpe_batch_equals_single_and_vocab_checked(bpe):
    batch = bpe.encode_batch(UNICODE, bos=True, eos=False)
    assert [b.tolist() for b in batch] == [bpe.encode(t).tolist() for t in UNICODE]
    with pytest.raises(ValueError, match="must be >= 258"):
        BPETokenizer.train(BPE_CORPUS, vocab_size=100)
