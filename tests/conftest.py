"""Shared test set-up: offline Hugging Face libraries, an isolated Prefect home."""

from __future__ import annotations

import os

# Nothing may reach a hub during tests: datasets/huggingface_hub read these at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
