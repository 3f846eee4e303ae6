import json

import pytest
import torch

from trainer.checkpoint import CONFIG, load_model
from trainer.config import ModelConfig, TrainConfig
from trainer.distributed import JOB_DIR, launch
from trainer.train import METRICS, train

MODEL = ModelConfig(d_model=32, n_layers=2, d_state=8, headdim=16, chunk_size=16)
TEXTS = [f"Sphinx of black quartz {i}, judge my vow. " * 3 for i in range(16)]
VAL = ["Judge my vow, sphinx of black quartz."]
TRAIN = TrainConfig(seq_len=32, batch_size=4, steps=3, warmup_steps=1, checkpoint_every=2)


def test_two_gloo_processes_match_one_process(tmp_path):
    """DDP over 2 CPU processes = one process on the same global batch."""
    launch(TEXTS, VAL, MODEL, TRAIN, tmp_path / "ddp", nproc=2)
    config = json.loads((tmp_path / "ddp" / CONFIG).read_text())
    assert config["complete"] and config["world_size"] == 2
    assert not (tmp_path / "ddp" / JOB_DIR).exists()

    one = train(TEXTS, VAL, MODEL, TRAIN, tmp_path / "one")
    ddp = train(TEXTS, VAL, MODEL, TRAIN, tmp_path / "ddp")  # finished: read back, no training
    assert ddp.losses == pytest.approx(one.losses, abs=1e-5)
    assert ddp.val_bpb == pytest.approx(one.val_bpb, abs=1e-5)
    a, b = (
        load_model(tmp_path / "one")[0].state_dict(),
        load_model(tmp_path / "ddp")[0].state_dict(),
    )
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4, msg=name)
    steps = [json.loads(line)["step"] for line in (tmp_path / "ddp" / METRICS).open()]
    assert steps == [1, 2, 3]


def test_launch_refuses_a_batch_that_does_not_split(tmp_path):
    with pytest.raises(ValueError, match="multiple of nproc=3"):
        launch(TEXTS, VAL, MODEL, TRAIN, tmp_path, nproc=3)
