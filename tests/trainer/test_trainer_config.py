import pytest

from trainer.config import ModelConfig, TrainConfig


def test_defaults_are_valid_and_round_trip():
    m, t = ModelConfig(), TrainConfig()
    assert m.nheads == 8 and m.d_inner == 256
    assert ModelConfig.from_dict(m.to_dict()) == m
    assert TrainConfig.from_dict(t.to_dict()) == t
    # JSON gives betas as a list
    assert TrainConfig.from_dict(t.to_dict() | {"betas": [0.9, 0.95]}) == t


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "rnn"}, "arch='rnn' is not supported"),
        ({"arch": "transformer", "n_heads": 3}, "even head size"),
        ({"mlp_ratio": 0}, "mlp_ratio must be > 0"),
        ({"vocab_size": 256}, "smaller than the tokenizer"),
        ({"d_model": 0}, "d_model must be > 0"),
        ({"headdim": 24}, "multiple of headdim"),
        ({"ngroups": 3}, "multiple of ngroups"),
        ({"scan_impl": "cuda"}, "scan_impl"),
    ],
)
def test_model_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seq_len": 0}, "seq_len must be > 0"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
        ({"warmup_steps": 500}, "warmup_steps"),
        ({"grad_clip": -1.0}, "grad_clip must be >= 0"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"device": "tpu"}, "device='tpu'"),
    ],
)
def test_train_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys \\['d_modle'\\]"):
        ModelConfig.from_dict({"d_modle": 64})


def test_configs_are_frozen():
    with pytest.raises(AttributeError):
        ModelConfig().d_model = 3  # type: ignore[misc]
