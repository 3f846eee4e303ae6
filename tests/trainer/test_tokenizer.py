import numpy as np

from trainer.tokenizer import ByteTokenizer

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
