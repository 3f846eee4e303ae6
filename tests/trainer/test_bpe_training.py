"""BPE through the trainer: train, save, load, score, sample, continue, and bpb accounting."""

import json
import math

import numpy as np
import pytest
import torch

from scoring.loss import LossScorer, example_bpb
from trainer.checkpoint import (
    CONFIG,
    CheckpointError,
    load_model,
    load_tokenizer,
    save_checkpoint,
)
from trainer.config import ModelConfig, TrainConfig
from trainer.evaluate import corpus_bpb
from trainer.model import SSMLanguageModel
from trainer.sample import sample_texts
from trainer.tokenizer import BPE_FILE, BPETokenizer, ByteTokenizer, tokenizer_of
from trainer.train import train

pytest.importorskip("tokenizers")

BPE_MODEL = ModelConfig(
    d_model=32, n_layers=2, d_state=8, headdim=16, chunk_size=16, tokenizer="bpe", vocab_size=320
)
TEXTS = [f"The quick brown fox {i} jumps over the lazy dog. Ça va? 🙂 " * 3 for i in range(20)]
VAL = ["The lazy dog sleeps while the quick brown fox jumps.", "naïve café 🙂"]
CFG = TrainConfig(seq_len=32, batch_size=4, steps=4, warmup_steps=1, checkpoint_every=2)


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe") / "run"
    return out, train(TEXTS, VAL, BPE_MODEL, CFG, out)


def test_bpe_train_save_load_same_tokenizer_and_bpb(bpe_run):
    out, result = bpe_run
    assert (out / BPE_FILE).is_file() and json.loads((out / CONFIG).read_text())["files"][BPE_FILE]
    model, cfg = load_model(out)
    tok = tokenizer_of(model)
    assert cfg.tokenizer == "bpe" and isinstance(tok, BPETokenizer)
    assert 258 < tok.vocab_size <= cfg.vocab_size
    fresh = BPETokenizer.train(TEXTS, BPE_MODEL.vocab_size)  # what the run learnt
    assert tok.to_str() == fresh.to_str()
    # the loaded model, with the tokenizer it carries, reproduces the run's val bpb
    assert math.isfinite(result.val_bpb)
    assert corpus_bpb(model, VAL, CFG.seq_len, CFG.batch_size) == pytest.approx(
        result.val_bpb, rel=1e-6
    )
    # a byte tokenizer on the same model gives another number: the default is not bytes
    assert corpus_bpb(
        model, VAL, CFG.seq_len, CFG.batch_size, tokenizer=ByteTokenizer()
    ) != pytest.approx(result.val_bpb, rel=1e-3)
    # scoring a loaded checkpoint uses its tokenizer too
    scored = LossScorer(model).bpb(VAL)
    np.testing.assert_allclose(scored, example_bpb(model, VAL, tokenizer=tok))
    assert np.all(np.isfinite(scored))


def test_continue_bpe_checkpoint_keeps_its_tokenizer(bpe_run, tmp_path, monkeypatch):
    out, _ = bpe_run

    def no_retraining(*a, **k):
        raise AssertionError("the tokenizer must not be retrained when a model is continued")

    monkeypatch.setattr(BPETokenizer, "train", no_retraining)
    other_texts = ["completely different words here, zebra xylophone quartz " * 3] * 10
    train(other_texts, VAL, BPE_MODEL, CFG, tmp_path / "next", init_from=out)
    assert (tmp_path / "next" / BPE_FILE).read_text() == (out / BPE_FILE).read_text()
    assert load_tokenizer(tmp_path / "next").to_str() == load_tokenizer(out).to_str()


def test_resume_reuses_the_saved_tokenizer(tmp_path, monkeypatch):
    class Crash(Exception):
        pass

    def crash_at_3(step, total, stats):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train(TEXTS, VAL, BPE_MODEL, CFG, tmp_path, progress=crash_at_3)
    monkeypatch.setattr(BPETokenizer, "train", None)  # resuming must not call it
    assert train(TEXTS, VAL, BPE_MODEL, CFG, tmp_path).resumed_from_step == 2


def test_old_checkpoint_without_tokenizer_loads_as_bytes(tmp_path):
    model = SSMLanguageModel(ModelConfig(d_model=32, n_layers=1, d_state=8, headdim=16))
    save_checkpoint(tmp_path, model, {"step": 1})
    config = json.loads((tmp_path / CONFIG).read_text())
    del config["model"]["tokenizer"]  # written before the key existed
    (tmp_path / CONFIG).write_text(json.dumps(config))
    loaded, cfg = load_model(tmp_path)
    assert cfg.tokenizer == "byte" and not (tmp_path / BPE_FILE).exists()
    assert isinstance(tokenizer_of(loaded), ByteTokenizer)
    assert isinstance(load_tokenizer(tmp_path), ByteTokenizer)


def test_bpe_checkpoint_missing_or_tampered_tokenizer_fails(bpe_run, tmp_path):
    out, _ = bpe_run
    model, _ = load_model(out)
    save_checkpoint(tmp_path, model, {}, tokenizer=tokenizer_of(model))
    (tmp_path / BPE_FILE).write_text((tmp_path / BPE_FILE).read_text().replace("Ġ", "G", 1))
    with pytest.raises(CheckpointError, match="checksum"):
        load_model(tmp_path)
    (tmp_path / BPE_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="needs its BPETokenizer"):
        save_checkpoint(tmp_path, model, {})


class UniformLM(torch.nn.Module):
    """Equal logits everywhere: every token costs log2(vocab) bits."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, ids):
        return torch.zeros(*ids.shape, self.vocab) + self.dummy


def test_bpb_is_normalised_by_bytes_not_tokens():
    bpe = BPETokenizer.train(TEXTS, 320)
    texts = ["The quick brown fox jumps.", "Ça va? 🙂 naïve"]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(bpe.encode(t, bos=False)) for t in texts)
    assert n_tokens < n_bytes  # merges happened, so the two accountings differ
    vocab = 320
    model = UniformLM(vocab)
    # bytes: one token per byte, so bpb = log2(vocab)
    assert corpus_bpb(model, texts, tokenizer=ByteTokenizer()) == pytest.approx(math.log2(vocab))
    # BPE: every text token (EOS/BOS excluded) costs log2(vocab) bits, over the bytes
    expected = math.log2(vocab) * n_tokens / n_bytes
    assert corpus_bpb(model, texts, seq_len=8, tokenizer=bpe) == pytest.approx(expected)
    per_text = example_bpb(model, texts, tokenizer=bpe)
    for text, got in zip(texts, per_text, strict=True):
        n_tok = len(bpe.encode(text, bos=False))
        assert got == pytest.approx(math.log2(vocab) * n_tok / len(text.encode("utf-8")))
    # truncation keeps whole tokens and divides by the bytes they cover
    cut = example_bpb(model, ["The quick brown fox jumps."], max_bytes=7, tokenizer=bpe)[0]
    ids = bpe.encode("The quick brown fox jumps.", bos=False)
    covered = np.cumsum(bpe.token_bytes[ids])
    k = int((covered <= 7).sum())
    assert cut == pytest.approx(math.log2(vocab) * k / covered[k - 1])


class ScriptedLM(torch.nn.Module):
    """Steps through a fixed list of token ids (then EOS), whatever the input."""

    def __init__(self, script: list[int], eos: int, vocab: int):
        super().__init__()
        self.cfg = ModelConfig(vocab_size=vocab, tokenizer="bpe")
        self.script, self.eos = script, eos
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def allocate_inference_cache(self, batch, device):
        return {"t": 0}

    def step(self, ids, cache):
        t = cache["t"]
        cache["t"] += 1
        target = self.script[t] if t < len(self.script) else self.eos
        logits = torch.zeros(len(ids), self.cfg.vocab_size)
        logits[:, target] = 10.0
        return logits + self.dummy


def test_sampling_decodes_with_the_model_tokenizer():
    bpe = BPETokenizer.train(TEXTS, 320)
    fox = bpe.encode(" fox", bos=False).tolist()
    assert len(fox) == 1 and bpe.token_bytes[fox[0]] == 4  # one merged token
    model = ScriptedLM(fox * 3, bpe.EOS, 320)
    model.tokenizer = bpe
    assert sample_texts(model, 2, max_bytes=64, temperature=0) == [" fox fox fox"] * 2
    # the byte budget counts bytes, not tokens, and cuts a token that crosses it
    assert sample_texts(model, 1, max_bytes=6, temperature=0) == [" fox f"]


def test_sampling_a_trained_bpe_checkpoint(bpe_run):
    out, _ = bpe_run
    model, _ = load_model(out)
    texts = sample_texts(model, 6, max_bytes=24, seed=1)
    assert texts == sample_texts(model, 6, max_bytes=24, seed=1)
    assert len(texts) == 6 and all(len(t) <= 24 for t in texts)
