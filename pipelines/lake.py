"""Where the Parquet lake lives: a local folder (the default) or any fsspec URL.

The workspace ``HOME`` is always a local folder (writer lock, ``datawall.yaml``, models,
annotation queue, ``catalog.duckdb``); only the lake may move. It is chosen, first match
wins, by:

1. the ``lake`` argument of :class:`pipelines.catalog.Catalog` (tests, embedding code);
2. ``$DATAWALL_LAKE`` (a URL, or a path relative to the current directory);
3. ``storage: {lake: URL}`` in ``HOME/datawall.yaml`` (a path there is relative to HOME);
4. ``HOME/lake``.

Storage options for the fsspec backend (``endpoint_url``, ``client_kwargs``, ...) come from
``storage: {options: {...}}`` in ``datawall.yaml``, overridden key by key by the JSON object
in ``$DATAWALL_LAKE_OPTIONS``. Credentials never go in either: an option that looks like
one (``key``, ``secret``, ``token``, ``password``, ...) is refused, so a secret can reach
neither the settings file nor ``rounds.settings`` in the catalog. The backend finds them
itself, the standard way (for s3fs the AWS chain: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance role; for gcsfs
``GOOGLE_APPLICATION_CREDENTIALS``).

``file://`` URLs and plain paths are the local disk: writes stay tmp + fsync + rename and
DuckDB reads the files directly. Anything else (``s3://``, ``gs://``, ``memory://``) is an
fsspec filesystem: each file is written with one PUT of the whole object, which object
stores make visible atomically (there is no rename to lean on), and DuckDB reads through
``register_filesystem``, so no DuckDB extension (httpfs) is needed at run time.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
import yaml
from fsspec.implementations.local import LocalFileSystem

logger = logging.getLogger("pipelines")

LAKE_ENV = "DATAWALL_LAKE"
OPTIONS_ENV = "DATAWALL_LAKE_OPTIONS"
CONFIG_FILE = "datawall.yaml"  # the same file pipelines.settings reads

# Option names that carry credentials in the common fsspec backends (s3fs, gcsfs, adlfs,
# sshfs). Matched case-insensitively, at any depth (``client_kwargs`` nests botocore's).
_SECRET_NAMES = frozenset({"key", "secret", "token", "credential", "credentials", "sas_token"})
_SECRET_PARTS = ("secret", "password", "passwd", "access_key", "session_token", "account_key")

# Backends whose protocol names need an extra package, for a helpful error message.
_BACKEND_PACKAGES = {"s3": "s3fs (pip install 'datawall[s3]')", "gs": "gcsfs", "gcs": "gcsfs"}


class LakeError(OSError):
    """The lake cannot be reached or used; the message names the lake and the problem."""


def _secret_options(options: Mapping[str, Any], where: str = "") -> list[str]:
    """Dotted names of the options in ``options`` that look like credentials."""
    found = []
    for name, value in options.items():
        lowered = str(name).lower()
        dotted = f"{where}{name}"
        if lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS):
            found.append(dotted)
        elif isinstance(value, Mapping):
            found.extend(_secret_options(value, dotted + "."))
    return found


@dataclass(frozen=True)
class StorageConfig:
    """The ``storage:`` section of ``HOME/datawall.yaml``.

    ``lake``: an fsspec URL (``s3://bucket/prefix``) or a path; empty means ``HOME/lake``.
    ``options``: keyword arguments for the fsspec filesystem, never credentials.
    """

    lake: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.lake, str):
            raise ValueError(f"storage.lake must be a URL or a path, got {self.lake!r}")
        if not isinstance(self.options, dict):
            raise ValueError(
                f"storage.options must be a mapping, got {type(self.options).__name__}"
            )
        secrets = _secret_options(self.options)
        if secrets:
            raise ValueError(
                f"storage.options: {', '.join(secrets)} look(s) like credentials; keep them out "
                "of settings and give them the backend's standard way (for S3: "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role)"
            )


def load_storage(home: Path) -> StorageConfig:
    """The ``storage`` section of ``HOME/datawall.yaml``, or the defaults."""
    path = Path(home) / CONFIG_FILE
    if not path.exists():
        return StorageConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    section = raw.get("storage") if isinstance(raw, dict) else None
    if section is None:
        return StorageConfig()
    if not isinstance(section, dict):
        raise ValueError(f"{path}: storage: expected a mapping, got {type(section).__name__}")
    unknown = sorted(set(section) - {"lake", "options"})
    if unknown:
        raise ValueError(f"{path}: storage: unknown key(s) {unknown}; known: lake, options")
    try:
        return StorageConfig(
            lake=section.get("lake") or "", options=dict(section.get("options") or {})
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _env_options() -> dict[str, Any]:
    raw = os.environ.get(OPTIONS_ENV, "").strip()
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"${OPTIONS_ENV}: not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(options, dict):
        raise ValueError(f"${OPTIONS_ENV}: expected a JSON object, got {type(options).__name__}")
    try:
        StorageConfig(options=options)  # the same credential check as the settings file
    except ValueError as exc:
        raise ValueError(f"${OPTIONS_ENV}: {exc}") from None
    return options


@dataclass(frozen=True)
class Lake:
    """A resolved lake: the filesystem and the root folder of the tables on it.

    ``root`` and every path built by :meth:`path` are in the filesystem's own form (no
    protocol for object stores: ``bucket/prefix/table/key.parquet``); :meth:`uri` turns one
    into the URL DuckDB and users see.
    """

    url: str  # what the user sees: an absolute path (local) or the URL
    fs: fsspec.AbstractFileSystem
    root: str
    local: bool

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts) if not self.local else str(Path(self.root, *parts))

    def uri(self, path: str) -> str:
        return path if self.local else self.fs.unstrip_protocol(path)


def _local(path: Path) -> Lake:
    root = os.path.abspath(path.expanduser())  # keeps a symlinked lake folder as named
    return Lake(url=root, fs=LocalFileSystem(), root=root, local=True)


def resolve_lake(
    home: Path, lake: str | None = None, options: Mapping[str, Any] | None = None
) -> Lake:
    """Choose the lake of workspace ``home`` (the order is in the module docstring)."""
    home = Path(home)
    config = load_storage(home)
    base = Path.cwd()
    url = lake or os.environ.get(LAKE_ENV, "").strip()
    if not url:
        url, base = config.lake, home
    if not url:
        return _local(home / "lake")
    protocol = fsspec.utils.get_protocol(url)
    if "://" not in url or protocol in ("file", "local"):
        path = Path(LocalFileSystem._strip_protocol(url))
        return _local(path if path.is_absolute() else base / path)
    if urlsplit(url).password:
        raise ValueError(
            "the lake URL carries a password; give credentials the backend's standard way"
        )
    merged = {**config.options, **_env_options(), **dict(options or {})}
    if options:
        StorageConfig(options=dict(options))  # refuse credentials from code too
    try:
        fs_class = fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        package = _BACKEND_PACKAGES.get(protocol, f"the fsspec backend for {protocol}://")
        raise LakeError(
            f"lake {url}: cannot open {protocol}:// ({exc}); install {package}"
        ) from None
    # A fresh instance per catalog: fsspec caches instances (and their directory listings)
    # per process, and a listing cached before another process wrote would hide its files.
    try:
        fs = fs_class(skip_instance_cache=True, **merged)
    except (TypeError, ValueError) as exc:
        raise LakeError(f"lake {url}: bad storage options {sorted(merged)}: {exc}") from None
    root = fs._strip_protocol(url).rstrip("/")
    if not root:
        raise LakeError(f"lake {url}: name a bucket (and a prefix), e.g. {protocol}://bucket/lake")
    logger.debug("lake at %s (options: %s)", url, ", ".join(sorted(merged)) or "none")
    return Lake(url=fs.unstrip_protocol(root), fs=fs, root=root, local=False)


def record_lake(home: Path, url: str) -> Lake:
    """Make ``url`` the workspace's lake by writing ``storage.lake`` in ``HOME/datawall.yaml``.

    Every later command, flow task and worker then finds the lake from HOME alone. A
    workspace whose lake already holds tables elsewhere is refused: moving a lake is a copy
    (``aws s3 sync``, ``gsutil rsync``, ``cp -r``) and then an edit of ``storage.lake``, so
    that one workspace never ends up split over two lakes.
    """
    home = Path(home).expanduser().resolve()
    if "://" not in url or fsspec.utils.get_protocol(url) in ("file", "local"):
        url = os.path.abspath(Path(LocalFileSystem._strip_protocol(url)).expanduser())
    wanted = resolve_lake(home, url)
    current = resolve_lake(home)
    if current.url == wanted.url:
        return current
    env = os.environ.get(LAKE_ENV, "").strip()
    if env:
        raise ValueError(f"--lake {url} contradicts ${LAKE_ENV}={env}; give one of them")
    if current.fs.exists(current.path("candidates", "_schema.parquet")):
        raise ValueError(
            f"workspace {home} already keeps its lake at {current.url}; to move it, copy the "
            f"lake to {wanted.url} and set storage.lake in {home / CONFIG_FILE}"
        )
    path = home / CONFIG_FILE
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    raw = raw if isinstance(raw, dict) else {}
    storage = raw.get("storage") if isinstance(raw.get("storage"), dict) else {}
    raw["storage"] = {**storage, "lake": wanted.url}
    home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    logger.info("workspace %s: lake at %s (recorded in %s)", home, wanted.url, path)
    return wanted
