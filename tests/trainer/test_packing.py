import torch

from trainer.data import BatchIterator, pack
from trainer.tokenizer import ByteTokenizer

tok = ByteTokenizer()


def test_pack_shapes_and_document_boundaries():
    texts = ["abc", "de", "fghij"]
    data = pack(texts, seq_len=4, tokenizer=tok)
    stream = [256, 97, 98, 99, 257, 256, 100, 101, 257, 256, 102, 103, 104, 105, 106, 257]
    assert data.dtype == torch.int64 and data.shape == (4, 5)  # ceil(15 / 4) windows
    # stride seq_len: consecutive windows share one token, every target appears once
    assert data[0].tolist() == stream[0:5]
    assert data[1].tolist() == stream[4:9]
    assert data[2].tolist() == stream[8:13]
    assert data[3].tolist() == stream[12:16] + stream[:1]  # wraps around circularly
    targets = torch.cat([w[1:] for w in data])[: len(stream) - 1]
    assert targets.tolist() == stream[1:]


def test_pack_corpus_shorter_than_a_window():
    data = pack(["a"], seq_len=8, tokenizer=tok)
    assert data.shape == (1, 9)
    assert data[0].tolist() == [256, 97, 257] * 3


def test_batches_are_deterministic_and_resumable():
    data = pack(["some text here"] * 7, seq_len=5, tokenizer=tok)
    a = BatchIterator(data, batch_size=3, seed=1)
    first = [a.next_batch() for _ in range(10)]
    b = BatchIterator(data, batch_size=3, seed=1, position=6 * 3)
    for x, y in first[6:]:
        bx, by = b.next_batch()
        assert torch.equal(x, bx) and torch.equal(y, by)
    x, y = first[0]
    assert x.shape == y.shape == (3, 5) and torch.equal(x[:, 1:], y[:, :-1])


def test_each_epoch_visits_every_window_once():
    data = pack([f"doc {i}" for i in range(9)], seq_len=4, tokenizer=tok)
    it = BatchIterator(data, batch_size=1, seed=0)
    rows = [it.next_batch()[0] for _ in range(len(data))]
    seen = sorted(tuple(r[0].tolist()) for r in rows)
    assert seen == sorted(tuple(w[:-1].tolist()) for w in data)
    other = BatchIterator(data, batch_size=len(data), seed=5).next_batch()[0]
    assert not torch.equal(torch.stack([r[0] for r in rows]), other)
