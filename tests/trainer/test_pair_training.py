"""Training and evaluation on prompt/response pairs: the prompt is read, never trained on."""

import hashlib
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer.checkpoint import load_model
from trainer.config import ModelConfig, TrainConfig
from trainer.data import (
    RESPONSE,
    TEXT,
    BatchIterator,
    Pair,
    pack,
    pack_examples,
    render_prefix,
    token_stream,
    token_stream_kinds,
)
from trainer.evaluate import corpus_bits, corpus_bpb
from trainer.models import build_model
from trainer.tokenizer import ByteTokenizer
from trainer.train import EVALS, data_fingerprint, masked_loss, train

tok = ByteTokenizer()
MODEL = ModelConfig(d_model=32, n_layers=2, d_state=8, headdim=16, chunk_size=16)
TEXTS = [f"The quick brown fox {i} jumps over the lazy dog. " * 3 for i in range(20)]
PAIRS = [Pair(f"What is {i} plus {i}?", f"It is {2 * i}.") for i in range(12)]
VAL_TEXT = ["The lazy dog sleeps while the quick brown fox jumps."]
VAL_PAIRS = [Pair("What is 3 plus 4?", "It is 7."), Pair("What is 5 plus 5?", "It is 10.")]


def cfg(**kw):
    base = dict(seq_len=32, batch_size=4, steps=4, warmup_steps=1, checkpoint_every=0, lr=3e-3)
    return TrainConfig(**(base | kw))


# -- the hand-made batch ---------------------------------------------------------------------
def hand_made_batch():
    """One pair 'Q?' -> 'AB' packed into a single window, inputs/targets/mask."""
    pair = Pair("Q?", "AB")
    prefix = render_prefix(pair.prompt).encode()
    stream = [tok.BOS, *prefix, *b"AB", tok.EOS]
    packed = pack_examples([pair], seq_len=len(stream) - 1, tokenizer=tok)
    assert packed.windows.shape == (1, len(stream))
    assert packed.windows[0].tolist() == stream
    return packed, len(prefix)


def test_hand_made_batch_masks_exactly_the_prompt_targets():
    packed, n_prefix = hand_made_batch()
    mask = packed.mask[0].tolist()
    # targets: prefix bytes (n_prefix), then 'A', 'B', EOS; window[0] = BOS is no target
    assert mask == [False] * n_prefix + [True, True, True]
    inputs, targets, batch_mask = BatchIterator(
        packed.windows, 1, 0, mask=packed.mask
    ).next_masked()
    assert torch.equal(batch_mask, packed.mask)
    assert targets[0, n_prefix:].tolist() == [ord("A"), ord("B"), tok.EOS]


def test_prompt_logits_do_not_move_the_loss_or_its_gradient_and_response_logits_do():
    packed, n_prefix = hand_made_batch()
    inputs, targets, mask = BatchIterator(packed.windows, 1, 0, mask=packed.mask).next_masked()
    torch.manual_seed(0)
    base = torch.randn(1, targets.shape[1], tok.vocab_size)

    def loss_and_grad(logits):
        logits = logits.clone().requires_grad_(True)
        loss = masked_loss(logits, targets, mask, mask.sum())
        loss.backward()
        return loss.detach(), logits.grad

    loss0, grad0 = loss_and_grad(base)
    # the loss is the mean cross-entropy over the 3 counted targets, by hand
    by_hand = F.cross_entropy(base[0, n_prefix:], targets[0, n_prefix:])
    assert torch.allclose(loss0, by_hand)
    assert torch.all(grad0[0, :n_prefix] == 0)  # no gradient reaches a prompt target
    assert torch.all(grad0[0, n_prefix:].abs().sum(-1) > 0)

    prompt_changed = base.clone()
    prompt_changed[0, :n_prefix] += 5.0 * torch.randn(n_prefix, tok.vocab_size)
    loss1, grad1 = loss_and_grad(prompt_changed)
    assert loss1 == loss0 and torch.equal(grad1, grad0)

    for t in (n_prefix, n_prefix + 2):  # a response token, the final EOS
        response_changed = base.clone()
        response_changed[0, t] += 5.0 * torch.randn(tok.vocab_size)
        loss2, grad2 = loss_and_grad(response_changed)
        assert loss2 != loss0 and not torch.equal(grad2[0, t], grad0[0, t])


def test_nothing_counted_gives_zero_loss_not_nan():
    logits = torch.randn(2, 5, tok.vocab_size, requires_grad=True)
    targets = torch.zeros(2, 5, dtype=torch.int64)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    loss = masked_loss(logits, targets, mask, mask.sum())
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_rank_slices_weighted_by_the_global_count_give_the_global_gradient():
    """DDP averages the ranks' gradients: with uneven counted targets per rank, weighting by
    the global count (not each rank's own) gives the gradient of the whole batch."""
    torch.manual_seed(1)
    logits = torch.randn(4, 6, 11)
    targets = torch.randint(0, 11, (4, 6))
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, 1:] = True  # rank 0 (rows 0-1): 5 counted targets; rank 1 (rows 2-3): 11
    mask[2:, :] = True
    mask[3, 0] = False
    whole = logits.clone().requires_grad_(True)
    masked_loss(whole, targets, mask, mask.sum()).backward()
    grads, losses = [], []
    for rows in (slice(0, 2), slice(2, 4)):
        part = logits[rows].clone().requires_grad_(True)
        loss = masked_loss(part, targets[rows], mask[rows], mask.sum(), world_size=2)
        loss.backward()
        grads.append(part.grad / 2)  # DDP: the mean of the ranks' gradients
        losses.append(loss.detach())
    torch.testing.assert_close(torch.cat(grads), whole.grad)
    expected = F.cross_entropy(logits[mask], targets[mask])
    torch.testing.assert_close(sum(losses) / 2, expected)  # the logged loss: mean over ranks


# -- packing ---------------------------------------------------------------------------------
def test_text_only_packing_has_no_mask_and_the_old_stream():
    texts = ["abc", "de", "fghij"]
    stream, kinds = token_stream_kinds(texts, tok)
    assert np.array_equal(stream, token_stream(texts, tok)) and np.all(kinds == TEXT)
    packed = pack_examples(texts, seq_len=4, tokenizer=tok)
    assert packed.mask is None and torch.equal(packed.windows, pack(texts, 4, tok))
    _, _, mask = BatchIterator(packed.windows, 2, 0).next_masked()
    assert mask is None


def test_mixed_packing_counts_text_targets_and_pair_responses():
    examples = ["xy", Pair("p", "r"), "z"]
    stream, kinds = token_stream_kinds(examples, tok)
    prefix = list(render_prefix("p").encode())
    expected = [tok.BOS, *b"xy", tok.EOS, tok.BOS, *prefix, ord("r"), tok.EOS]
    expected += [tok.BOS, ord("z"), tok.EOS]
    assert stream.tolist() == expected
    assert kinds.tolist() == [TEXT] * 4 + [0] * (1 + len(prefix)) + [RESPONSE] * 2 + [TEXT] * 3
    packed = pack_examples(examples, seq_len=5, tokenizer=tok)
    # every target appears once (circularly); its mask is its token's kind != 0
    n = len(stream)
    flat = packed.mask.flatten()[: n - 1].tolist()
    assert flat == (kinds[1:] != 0).tolist()


def test_batches_with_a_mask_keep_the_order_and_resume():
    packed = pack_examples([Pair(f"q{i}", f"answer {i}") for i in range(9)], 6, tok)
    a = BatchIterator(packed.windows, 3, seed=2, mask=packed.mask)
    first = [a.next_masked() for _ in range(6)]
    b = BatchIterator(packed.windows, 3, seed=2, position=3 * 3, mask=packed.mask)
    plain = BatchIterator(packed.windows, 3, seed=2)
    for x, y, _ in first:
        px, py = plain.next_batch()
        assert torch.equal(x, px) and torch.equal(y, py)
    for x, _, m in first[3:]:
        bx, by, bm = b.next_masked()
        assert torch.equal(x, bx) and torch.equal(m, bm)
    with pytest.raises(ValueError, match="does not fit"):
        BatchIterator(packed.windows, 3, 0, mask=packed.mask[:, 1:])


def test_fingerprint_covers_prompts_and_keeps_text_only_hashes():
    assert data_fingerprint(["a", "b"]) != data_fingerprint([Pair("a", "b")])
    assert data_fingerprint([Pair("p1", "r")]) != data_fingerprint([Pair("p2", "r")])
    assert data_fingerprint([Pair("", "ab")]) != data_fingerprint([Pair("a", "b")])
    # the text-only hash as it was: length-prefixed UTF-8 of each text
    h = hashlib.sha256()
    for t in ("a", "bc"):
        h.update(len(t).to_bytes(8, "little") + t.encode())
    assert data_fingerprint(["a", "bc"]) == h.hexdigest()


# -- evaluation ------------------------------------------------------------------------------
def test_response_bpb_counts_response_bytes_only():
    torch.manual_seed(0)
    model = build_model(MODEL)
    bits = corpus_bits(model, VAL_TEXT + VAL_PAIRS, seq_len=16, batch_size=4)
    assert bits.text_bytes == len(VAL_TEXT[0].encode())
    assert bits.response_bytes == sum(len(p.response.encode()) for p in VAL_PAIRS)
    assert math.isclose(
        bits.bpb,
        (bits.text_bits + bits.response_bits) / (bits.text_bytes + bits.response_bytes),
    )
    assert abs(bits.response_bpb - math.log2(258)) < 0.2  # untrained: near uniform
    # text-only: the text bpb is corpus_bpb as before; nothing for responses
    only_text = corpus_bits(model, VAL_TEXT, seq_len=16, batch_size=4)
    assert only_text.bpb == corpus_bpb(model, VAL_TEXT, seq_len=16, batch_size=4)
    assert only_text.response_bytes == 0 and math.isnan(only_text.response_bpb)
    # the prompt changes the response's bits (it is context), never the bytes counted
    other = corpus_bits(model, [Pair("Something else entirely", "It is 7.")], 16, 4)
    first = corpus_bits(model, VAL_PAIRS[:1], 16, 4)
    assert (
        other.response_bytes == first.response_bytes and other.response_bits != first.response_bits
    )


# -- the training loop -----------------------------------------------------------------------
def test_text_only_loss_is_the_old_plain_mean(tmp_path):
    """Without pairs the first step's loss is exactly F.cross_entropy's mean, as before."""
    c = cfg(steps=1)
    result = train(TEXTS, VAL_TEXT, MODEL, c, tmp_path)
    torch.manual_seed(c.seed)
    model = build_model(MODEL)
    inputs, targets = BatchIterator(pack(TEXTS, c.seq_len, tok), c.batch_size, c.seed).next_batch()
    old = F.cross_entropy(model(inputs).float().flatten(0, 1), targets.flatten())
    assert result.losses[0] == old.item()
    assert math.isnan(result.val_response_bpb) and result.val_text_bpb == result.val_bpb


def test_pairs_train_on_responses_and_report_response_bpb(tmp_path):
    examples = TEXTS[:6] + PAIRS
    val = VAL_TEXT + VAL_PAIRS
    result = train(examples, val, MODEL, cfg(eval_every=2), tmp_path / "run")
    assert math.isfinite(result.val_response_bpb) and math.isfinite(result.val_text_bpb)
    assert min(result.val_text_bpb, result.val_response_bpb) <= result.val_bpb
    assert result.val_bpb <= max(result.val_text_bpb, result.val_response_bpb)
    evals = [json.loads(line) for line in (tmp_path / "run" / EVALS).open()]
    assert [e["step"] for e in evals] == [2, 4]
    assert evals[-1]["val_response_bpb"] == pytest.approx(result.val_response_bpb)
    assert evals[-1]["val_text_bpb"] == pytest.approx(result.val_text_bpb)
    # read back from the finished run's config
    again = train(examples, val, MODEL, cfg(eval_every=2), tmp_path / "run")
    assert again.val_response_bpb == result.val_response_bpb
    # the first step's loss is the masked mean over the first batch, by hand
    c = cfg()
    torch.manual_seed(c.seed)
    model = build_model(MODEL)
    packed = pack_examples(examples, c.seq_len, tok)
    inputs, targets, mask = BatchIterator(packed.windows, 4, c.seed, mask=packed.mask).next_masked()
    logits = model(inputs).float()
    assert result.losses[0] == pytest.approx(F.cross_entropy(logits[mask], targets[mask]).item())


def test_a_different_prompt_is_a_different_run(tmp_path):
    """The prompt is in the run's identity: a finished run on other prompts is refused."""
    train(PAIRS, VAL_PAIRS, MODEL, cfg(steps=1), tmp_path)
    moved = [Pair(p.prompt + "!", p.response) for p in PAIRS]
    with pytest.raises(Exception, match="data_fingerprint"):
        train(moved, VAL_PAIRS, MODEL, cfg(steps=1), tmp_path)


def test_pair_run_resumes_exactly(tmp_path):
    full = train(PAIRS, VAL_PAIRS, MODEL, cfg(steps=6, checkpoint_every=2), tmp_path / "full")

    class Crash(Exception):
        pass

    def crash_at_3(step, total, stats):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train(PAIRS, VAL_PAIRS, MODEL, cfg(steps=6, checkpoint_every=2), tmp_path / "cut",
              progress=crash_at_3)  # fmt: skip
    resumed = train(PAIRS, VAL_PAIRS, MODEL, cfg(steps=6, checkpoint_every=2), tmp_path / "cut")
    assert resumed.resumed_from_step == 2
    assert resumed.losses == pytest.approx(full.losses, abs=1e-6)
    a, b = (
        load_model(tmp_path / "full")[0].state_dict(),
        load_model(tmp_path / "cut")[0].state_dict(),
    )
    for name in a:
        torch.testing.assert_close(b[name], a[name], msg=name)


def test_two_gloo_processes_on_pairs_match_one_process(tmp_path):
    """DDP on pairs whose counted targets fall unevenly on the ranks = one process."""
    from trainer.distributed import launch

    examples = [Pair("Tell me a long question, please, with many words " * 2, "Short.")]
    examples += [Pair("Q?", "A long answer that runs on and on. " * 2)] + TEXTS[:2]
    c = cfg(steps=3, checkpoint_every=2)
    launch(examples, VAL_PAIRS, MODEL, c, tmp_path / "ddp", nproc=2)
    one = train(examples, VAL_PAIRS, MODEL, c, tmp_path / "one")
    ddp = train(examples, VAL_PAIRS, MODEL, c, tmp_path / "ddp")  # finished: read back
    assert ddp.losses == pytest.approx(one.losses, abs=1e-5)
    assert ddp.val_response_bpb == pytest.approx(one.val_response_bpb, abs=1e-5)
    a, b = (
        load_model(tmp_path / "one")[0].state_dict(),
        load_model(tmp_path / "ddp")[0].state_dict(),
    )
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4, msg=name)
