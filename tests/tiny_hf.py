"""A tiny, randomly initialised Hugging Face causal LM with its own tokenizer, built offline.

The tokenizer is a byte-level BPE trained on a few sentences (``tokenizers``), wrapped in
``PreTrainedTokenizerFast`` with BOS/EOS/PAD; the model is a 1-layer GPT-2 (or Mamba-2) from
a config. ``save_tiny_hf`` writes both with ``save_pretrained``: a folder ``hf:PATH`` loads.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The scheduler starts a new round every night and writes a summary to the catalog.",
    "Each candidate is scored by the current model and by a smaller reference model.",
    "Experts may correct a text; the corrected version is used for training. Ünïcödé ✓",
    "def f(x):\n    return x * 2  # code, symbols {} [] <> = and digits 0123456789",
]


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<bos>", "<eos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def save_tiny_hf(path: Path, arch: str = "gpt2", seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Mamba2Config, Mamba2ForCausalLM

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=1, n_head=2, **ids
        )
        model = GPT2LMHeadModel(cfg)
    elif arch == "mamba2":
        cfg = Mamba2Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            state_size=8,
            head_dim=16,
            num_heads=4,
            n_groups=1,
            expand=2,
            chunk_size=16,
            **ids,
        )
        model = Mamba2ForCausalLM(cfg)
    else:
        raise ValueError(f"arch must be 'gpt2' or 'mamba2', got {arch!r}")
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
