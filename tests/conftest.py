"""Shared test set-up: offline Hugging Face libraries, an isolated Prefect home."""

from __future__ import annotations

import os

# Nothing may reach a hub during tests: datasets/huggingface_hub read these at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


# --- Label Studio: a real server on 127.0.0.1 (see tests/ls_server.py) ---------------------

import pytest  # noqa: E402
from ls_server import LabelStudioNotInstalled, LabelStudioServer, label_studio_bin  # noqa: E402


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A running Label Studio server for the session: ``.url``, ``.token``, ``.stop()``, ``.start()``.

    ``.start()`` after ``.stop()`` comes back on the same port with the same data. A test
    that stops it must start it again before it ends (the server is shared by the session).
    Fails, never skips, when ``.venv-ls`` is missing: ``make test`` installs it.
    """
    try:
        label_studio_bin()
        missing = None
    except LabelStudioNotInstalled as exc:
        missing = str(exc)
    if missing:
        pytest.fail(missing, pytrace=False)
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
