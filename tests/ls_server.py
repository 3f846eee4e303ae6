"""Start a real Label Studio server for the tests, on 127.0.0.1 and a free port.

Label Studio lives in its own virtual environment, ``.venv-ls`` at the repository root
(``make test`` creates it; ``LABEL_STUDIO_BIN`` may point at another ``label-studio``
executable). Its first start migrates an empty SQLite database, which takes tens of
seconds, so that is done once per Label Studio version into a template under the
repository's ignored ``.cache/label-studio-template/`` folder; every server then starts
on a copy of the template in a few seconds.

Usage::

    with label_studio_server(tmp_path) as (url, token):
        ...

or, to stop and restart it on the same port and data (an outage)::

    server = LabelStudioServer(tmp_path)
    server.start()
    server.stop()
    server.start()
    server.stop()
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO_ROOT / ".venv-ls" / "bin" / "label-studio"
TEMPLATE_ROOT = REPO_ROOT / ".cache" / "label-studio-template"

USERNAME = "admin@datawall.test"
PASSWORD = "datawall-admin-pass"
TOKEN = "datawall0test0legacy0token0000000000000000"

START_TIMEOUT_S = 120.0  # a first start migrates the database: tens of seconds on 2 CPUs
STOP_TIMEOUT_S = 15.0

# Variables Label Studio reads with or without a LABEL_STUDIO_/HEARTEX_ prefix; a stray
# USERNAME or PORT in the caller's environment must not leak into the server.
_UNPREFIXED = ("USERNAME", "PASSWORD", "USER_TOKEN", "PORT", "HOST", "DATABASE_NAME", "DEBUG")


class LabelStudioNotInstalled(RuntimeError):
    pass


class LabelStudioStartError(RuntimeError):
    pass


def label_studio_bin() -> Path:
    """The ``label-studio`` executable: ``$LABEL_STUDIO_BIN`` or ``.venv-ls/bin/label-studio``."""
    path = Path(os.environ.get("LABEL_STUDIO_BIN") or DEFAULT_BIN)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise LabelStudioNotInstalled(
            f"Label Studio is not installed at {path}. Run `make test` (it creates .venv-ls "
            "with the pinned label-studio), or set LABEL_STUDIO_BIN to a label-studio executable."
        )
    return path


def label_studio_version(bin_path: Path) -> str:
    """The installed version, read from the package metadata (``label-studio --version`` would start a server)."""
    python = bin_path.parent / "python"
    if python.exists():
        out = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    out = subprocess.run([str(bin_path), "version"], capture_output=True, text=True, timeout=120)
    match = re.search(r'"label-studio-os-package"\s*:\s*\{\s*"version"\s*:\s*"([^"]+)"', out.stdout)
    if not match:
        raise LabelStudioStartError(
            f"cannot read the Label Studio version from {bin_path}:\n{out.stdout[-2000:]}"
        )
    return match.group(1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _server_env(
    data_dir: Path, home: Path, username: str, password: str, token: str
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LABEL_STUDIO_", "HEARTEX_")) and k not in _UNPREFIXED
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_USERNAME": username,
            "LABEL_STUDIO_PASSWORD": password,
            "LABEL_STUDIO_USER_TOKEN": token,
            # The preset token is a legacy token; the organization created at the first
            # start (the template) must accept legacy tokens.
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            # appdirs folders (config, cache) stay inside the test folder, not in ~.
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class LabelStudioServer:
    """One Label Studio process over one data folder; ``start()`` again reuses port and data."""

    def __init__(
        self,
        base_dir: Path | str,
        *,
        username: str = USERNAME,
        password: str = PASSWORD,
        token: str = TOKEN,
        bin_path: Path | str | None = None,
        use_template: bool = True,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.home_dir = self.base_dir / "home"
        self.log_path = self.base_dir / "label-studio.log"
        self.username = username
        self.password = password
        self.token = token
        self.bin_path = Path(bin_path) if bin_path else label_studio_bin()
        self.use_template = use_template
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.start_seconds: float | None = None  # how long the last start() took

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the Label Studio server was never started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- life cycle ---------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> LabelStudioServer:
        if self.running:
            return self
        began = time.monotonic()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.data_dir.exists() and self.use_template:
            template = ensure_template(self.bin_path, self.username, self.password, self.token)
            shutil.copytree(template, self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        elif _port_in_use(self.port):
            raise LabelStudioStartError(
                f"port {self.port} is taken; cannot restart Label Studio on it"
            )
        self._spawn(timeout)
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT_S)
        # The next start() must find the port free again.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.port is not None and _port_in_use(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers ------------------------------------------------------------------------

    def api_ready(self) -> bool:
        """True when GET /api/projects answers 200 to the preset token."""
        request = urllib.request.Request(
            f"{self.url}/api/projects/", headers={"Authorization": f"Token {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def _spawn(self, timeout: float) -> None:
        assert self.port is not None
        env = _server_env(self.data_dir, self.home_dir, self.username, self.password, self.token)
        cmd = [
            str(self.bin_path),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd,
                cwd=self.base_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() can end it whole
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise LabelStudioStartError(
                    f"label-studio exited with code {code} before answering; log {self.log_path}:\n"
                    + self.log_tail()
                )
            log_now = self._log_since(log_offset)
            moved = re.search(r"Port \d+ is in use", log_now)
            if moved:
                # Label Studio silently moves to the next free port: refuse that.
                self.stop()
                raise LabelStudioStartError(
                    f"port {self.port} was taken, Label Studio would have moved to another one:\n"
                    + log_now[-2000:]
                )
            if (
                f"Starting development server at http://127.0.0.1:{self.port}/" in log_now
                and self.api_ready()
            ):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise LabelStudioStartError(
                    f"Label Studio did not answer on {self.url} within {timeout:.0f} s; log {self.log_path}:\n"
                    + self.log_tail()
                )
            time.sleep(0.2)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""


def ensure_template(bin_path: Path, username: str, password: str, token: str) -> Path:
    """A migrated data folder with the preset user and token, made once per version.

    Kept under ``.cache/label-studio-template/<version>-<credentials hash>/``; built in a
    scratch folder beside it and renamed into place, so a half-built one is never used.
    """
    version = label_studio_version(bin_path)
    key = hashlib.sha256(f"{username}\0{password}\0{token}".encode()).hexdigest()[:12]
    target = TEMPLATE_ROOT / f"{version}-{key}"
    if (target / "label_studio.sqlite3").exists():
        return target
    TEMPLATE_ROOT.mkdir(parents=True, exist_ok=True)
    scratch = TEMPLATE_ROOT / f".build-{version}-{key}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    server = LabelStudioServer(
        scratch,
        username=username,
        password=password,
        token=token,
        bin_path=bin_path,
        use_template=False,
    )
    try:
        server.start()
    finally:
        server.stop()
    try:
        os.rename(scratch / "data", target)
    except OSError:
        if not (target / "label_studio.sqlite3").exists():  # not a concurrent build that won
            raise
    shutil.rmtree(scratch, ignore_errors=True)
    return target


@contextlib.contextmanager
def label_studio_server(base_dir: Path | str, **kwargs: object) -> Iterator[tuple[str, str]]:
    """Run a Label Studio server for the block; yields ``(url, token)``."""
    with LabelStudioServer(base_dir, **kwargs) as server:  # type: ignore[arg-type]
        yield server.url, server.token
