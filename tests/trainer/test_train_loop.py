import json
import math

import pytest
import torch

from trainer.checkpoint import CONFIG, load_model
from trainer.config import ModelConfig, TrainConfig
from trainer.train import EVALS, METRICS, RESUME_DIR, lr_at, train

MODEL = ModelConfig(d_model=32, n_layers=2, d_state=8, headdim=16, chunk_size=16)
TEXTS = [f"The quick brown fox {i} jumps over the lazy dog. " * 3 for i in range(20)]
VAL = ["The lazy dog sleeps while the quick brown fox jumps."]


def cfg(**kw):
    base = dict(seq_len=32, batch_size=4, steps=6, warmup_steps=2, checkpoint_every=2, lr=3e-3)
    return TrainConfig(**(base | kw))


def weights(path):
    return load_model(path)[0].state_dict()


def test_pinned_losses(tmp_path):
    """Pinned numerics: a refactor that changes the maths fails here."""
    result = train(TEXTS, VAL, MODEL, cfg(steps=5, checkpoint_every=0), tmp_path)
    pinned = [5.582014, 5.425081, 5.291164, 5.162502, 5.072709]
    assert result.losses == pytest.approx(pinned, abs=1e-4)
    assert result.steps == 5 and result.tokens_seen == 5 * 4 * 32
    assert result.final_loss == result.losses[-1]
    assert math.isfinite(result.val_bpb)


def test_exact_resume_after_crash(tmp_path):
    full = train(TEXTS, VAL, MODEL, cfg(), tmp_path / "full")

    class Crash(Exception):
        pass

    def crash_at_5(step, total, stats):
        assert set(stats) == {"loss", "lr", "tok_per_s"} and total == 6
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        train(TEXTS, VAL, MODEL, cfg(), tmp_path / "run", progress=crash_at_5)
    assert (tmp_path / "run" / RESUME_DIR / "step_00000004").is_dir()
    assert not (tmp_path / "run" / CONFIG).exists()

    resumed = train(TEXTS, VAL, MODEL, cfg(), tmp_path / "run")
    assert resumed.resumed_from_step == 4 and full.resumed_from_step == 0
    assert resumed.losses == full.losses
    assert resumed.val_bpb == full.val_bpb
    a, b = weights(tmp_path / "full"), weights(tmp_path / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "run" / RESUME_DIR).exists()
    # metrics: one line per step, the crashed step 5 replaced by the resumed run's
    metrics = [json.loads(line) for line in (tmp_path / "run" / METRICS).open()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert [m["loss"] for m in metrics] == full.losses
    assert metrics[-1]["tokens_seen"] == full.tokens_seen and metrics[-1]["tok_per_s"] > 0
    assert full.tokens_per_s > 0


def test_finished_run_is_idempotent(tmp_path):
    first = train(TEXTS, VAL, MODEL, cfg(steps=2, checkpoint_every=0), tmp_path)
    mtime = (tmp_path / "model.safetensors").stat().st_mtime_ns

    def fail(*_):
        raise AssertionError("should not train again")

    again = train(TEXTS, VAL, MODEL, cfg(steps=2, checkpoint_every=0), tmp_path, progress=fail)
    assert again == first
    assert (tmp_path / "model.safetensors").stat().st_mtime_ns == mtime
    assert json.loads((tmp_path / CONFIG).read_text())["complete"] is True
    with pytest.raises(Exception, match="different run"):
        train(TEXTS, VAL, MODEL, cfg(steps=3, checkpoint_every=0), tmp_path)


def test_init_from_continues_from_weights(tmp_path):
    first = train(TEXTS, VAL, MODEL, cfg(steps=4, checkpoint_every=0), tmp_path / "a")
    second = train(
        TEXTS,
        VAL,
        MODEL,
        cfg(steps=2, checkpoint_every=0),
        tmp_path / "b",
        init_from=tmp_path / "a",
    )
    assert second.losses[0] < first.losses[0] - 0.1


def test_empty_train_texts_raise(tmp_path):
    with pytest.raises(ValueError, match="train_texts is empty"):
        train([], VAL, MODEL, cfg(), tmp_path)


def test_lr_schedule():
    c = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1)
    assert lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(10, c) == pytest.approx(1.0)
    assert lr_at(99, c) == pytest.approx(0.1, abs=1e-3)
    assert all(lr_at(s, c) >= lr_at(s + 1, c) for s in range(10, 99))


def test_validation_curve_is_logged_once_per_evaluation_across_a_resume(tmp_path):
    """evals.jsonl: one line per evaluation; a resumed run drops those past its resume point."""
    full = train(TEXTS, VAL, MODEL, cfg(eval_every=1, checkpoint_every=3), tmp_path / "full")

    def crash_at_5(step, total, stats):
        if step == 5:
            raise RuntimeError("killed")

    run = tmp_path / "run"
    with pytest.raises(RuntimeError):
        train(TEXTS, VAL, MODEL, cfg(eval_every=1, checkpoint_every=3), run, progress=crash_at_5)
    assert [json.loads(line)["step"] for line in (run / EVALS).open()] == [1, 2, 3, 4]
    train(TEXTS, VAL, MODEL, cfg(eval_every=1, checkpoint_every=3), run)
    evals = [json.loads(line) for line in (run / EVALS).open()]
    expected = [json.loads(line) for line in (tmp_path / "full" / EVALS).open()]
    assert [e["step"] for e in evals] == [1, 2, 3, 4, 5, 6]
    assert [e["tokens_seen"] for e in evals] == [s * 4 * 32 for s in range(1, 7)]
    assert [e["val_bpb"] for e in evals] == pytest.approx([e["val_bpb"] for e in expected])
    assert evals[-1]["val_bpb"] == pytest.approx(full.val_bpb)
