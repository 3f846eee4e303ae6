"""A live Label Studio server through label-studio-sdk 2.x: project, push, pull, answers.

Label Studio Community has no active-learning queue, task overlap or agreement metrics,
so datawall keeps that logic on its side (``annotation.consensus``) and uses the server
for what it is good at: showing a task to an expert and storing the answer.

- :meth:`Studio.ensure_project` finds the workspace's project by title or creates it, and
  keeps its labeling config current (idempotent).
- :meth:`Studio.push` imports tasks (with the model's guess as a prediction) that the
  project does not hold yet. It first lists what the project already has, by
  ``data.candidate_id``, so a push interrupted after the server took a batch never
  imports that batch twice.
- :meth:`Studio.pull` returns the project's annotated tasks in Label Studio's JSON export
  shape, so they go through the same ``annotation.queue.parse_export`` as a file export.
- :meth:`Studio.answer` creates an annotation the way the UI does (used by the simulated
  expert, attributed to a user with ``completed_by``).

Every request is retried with exponential backoff on connection errors, timeouts, 429
and 5xx. The API token never leaves the client object: it is not in ``repr``, logs or
error messages.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from annotation.config import AnnotationConfig
from annotation.labeling import labeling_config
from annotation.pairwise import PairwiseConfig, pairwise_labeling_config

log = logging.getLogger("datawall.annotation")
T = TypeVar("T")


@dataclass(frozen=True)
class StudioConfig:
    """Where the server is and how hard to try. The token is passed separately."""

    url: str
    project_title: str = "datawall"
    batch_size: int = 100
    retries: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 30.0
    pull_overlap_s: float = 1.0  # incremental pulls look this far behind the last watermark

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(
                f"Label Studio URL must start with http:// or https://, got {self.url!r}"
            )
        if self.batch_size < 1 or self.retries < 0 or self.backoff_s < 0 or self.timeout_s <= 0:
            raise ValueError(
                "StudioConfig: batch_size >= 1, retries >= 0, backoff_s >= 0, timeout_s > 0"
            )


class StudioError(RuntimeError):
    """Label Studio could not be reached or refused a request (after retries)."""


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, ApiError) and (exc.status_code or 0) in (429, 500, 502, 503, 504)


class Studio:
    """One Label Studio server, one datawall project on it."""

    def __init__(
        self,
        cfg: StudioConfig,
        token: str,
        annotation: AnnotationConfig | PairwiseConfig | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise ValueError("a Label Studio API token is required (LABEL_STUDIO_API_KEY)")
        self.cfg = cfg
        self.annotation = annotation or AnnotationConfig()
        self._client = LabelStudio(base_url=cfg.url, api_key=token, timeout=cfg.timeout_s)
        self._sleep = sleep

    @property
    def client(self) -> LabelStudio:
        """The underlying SDK client, for calls this class does not wrap."""
        return self._client

    def __repr__(self) -> str:  # never the token
        return f"Studio(url={self.cfg.url!r}, project={self.cfg.project_title!r})"

    def sibling(self, project_title: str, annotation: AnnotationConfig | PairwiseConfig) -> Studio:
        """The same server and client (so the token is not handled again), another project
        with another labeling job: the pairwise project beside the accept/reject one."""
        other = copy.copy(self)
        other.cfg = dataclasses.replace(self.cfg, project_title=project_title)
        other.annotation = annotation
        return other

    def _labeling(self) -> tuple[str, str]:
        """(labeling config XML, project description) of this Studio's job."""
        if isinstance(self.annotation, PairwiseConfig):
            return (
                pairwise_labeling_config(self.annotation),
                "Hard prompt/response pairs from datawall: which response is better (blind), "
                "optionally a rewrite.",
            )
        return (
            labeling_config(self.annotation),
            "Hard cases from datawall: accept or reject, optionally fix the text.",
        )

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        delay = self.cfg.backoff_s
        for attempt in range(self.cfg.retries + 1):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified just below
                if not _retryable(exc) or attempt == self.cfg.retries:
                    raise StudioError(
                        f"Label Studio at {self.cfg.url}: {what} failed: {_describe(exc)}"
                    ) from None
                log.warning(
                    "Label Studio at %s: %s failed (%s); retry %d/%d in %.1f s",
                    self.cfg.url,
                    what,
                    _describe(exc),
                    attempt + 1,
                    self.cfg.retries,
                    delay,
                )
                self._sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    # -- project --------------------------------------------------------------------------
    def ensure_project(self) -> int:
        """The project's id: found by title, else created; its labeling config kept current."""
        config, description = self._labeling()
        title = self.cfg.project_title
        found = self._call(
            "list projects", lambda: [p for p in self._client.projects.list(title=title)]
        )
        found = [p for p in found if p.title == title]
        if not found:
            project = self._call(
                "create project",
                lambda: self._client.projects.create(
                    title=title,
                    label_config=config,
                    description=description,
                    show_skip_button=True,
                    maximum_annotations=1_000,
                ),
            )
            return int(project.id)
        project = min(found, key=lambda p: p.id)
        current = self._call("read project", lambda: self._client.projects.get(id=project.id))
        if (current.label_config or "").strip() != config.strip():
            self._call(
                "update labeling config",
                lambda: self._client.projects.update(id=project.id, label_config=config),
            )
        return int(project.id)

    # -- tasks ----------------------------------------------------------------------------
    def _tasks(
        self, project_id: int, *, with_annotations: bool, since: dt.datetime | None = None
    ) -> list[Any]:
        fields = "all" if with_annotations else None
        query = None
        if since is not None:  # Label Studio's data-manager filter wants this exact format
            stamp = since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            query = json.dumps(
                {
                    "filters": {
                        "conjunction": "and",
                        "items": [
                            {
                                "filter": "filter:tasks:updated_at",
                                "operator": "greater",
                                "type": "Datetime",
                                "value": stamp,
                            }
                        ],
                    }
                }
            )
        return self._call(
            "list tasks",
            lambda: list(
                self._client.tasks.list(
                    project=project_id, fields=fields, page_size=500, query=query
                )
            ),
        )

    def task_ids(self, project_id: int) -> dict[str, int]:
        """candidate_id → task id for every task the project holds."""
        out: dict[str, int] = {}
        for task in self._tasks(project_id, with_annotations=False):
            cid = (task.data or {}).get("candidate_id")
            if cid is not None:
                out.setdefault(str(cid), int(task.id))
        return out

    def push(
        self,
        project_id: int,
        tasks: Sequence[dict[str, Any]],
        *,
        on_batch: Callable[[int], None] | None = None,
    ) -> tuple[dict[str, int], int]:
        """Import the tasks the project does not hold yet, in batches.

        Returns (candidate_id → task id for every given task, number newly imported).
        """
        have = self.task_ids(project_id)
        todo = [t for t in tasks if str(t["data"]["candidate_id"]) not in have]
        imported = 0
        for start in range(0, len(todo), self.cfg.batch_size):
            batch = todo[start : start + self.cfg.batch_size]
            response = self._call(
                f"import {len(batch)} tasks",
                lambda batch=batch: self._client.projects.import_tasks(
                    id=project_id, request=batch, return_task_ids=True
                ),
            )
            ids = list(getattr(response, "task_ids", None) or [])
            if len(ids) != len(batch):  # the server did not say: read the mapping back
                have = self.task_ids(project_id)
            else:
                for task, task_id in zip(batch, ids, strict=True):
                    have[str(task["data"]["candidate_id"])] = int(task_id)
            imported += len(batch)
            if on_batch:
                on_batch(len(batch))
        wanted = {str(t["data"]["candidate_id"]) for t in tasks}
        return {cid: tid for cid, tid in have.items() if cid in wanted}, imported

    def pull(
        self, project_id: int, since: dt.datetime | None = None
    ) -> tuple[list[dict[str, Any]], dt.datetime | None]:
        """Annotated tasks changed after ``since`` (all when None), in Label Studio's JSON
        export shape (``id``, ``data``, ``annotations``), and the latest ``updated_at`` seen
        among the listed tasks: the watermark for the next incremental pull."""
        out, latest = [], None
        for task in self._tasks(project_id, with_annotations=True, since=since):
            stamp = _as_datetime(task.updated_at)
            if stamp is not None and (latest is None or stamp > latest):
                latest = stamp
            annotations = [_plain(a) for a in (task.annotations or [])]
            if annotations:
                out.append(
                    {"id": int(task.id), "data": dict(task.data or {}), "annotations": annotations}
                )
        return out, latest

    # -- answers (the simulated expert goes through here, like a person in the UI) ---------
    def ensure_users(self, n: int, prefix: str = "datawall-sim") -> list[int]:
        """Ids of ``n`` annotator accounts ``{prefix}-{i}@datawall.local``, created if missing."""
        users = self._call("list users", lambda: list(self._client.users.list()))
        by_email = {u.email: int(u.id) for u in users}
        ids = []
        for i in range(1, n + 1):
            email = f"{prefix}-{i}@datawall.local"
            if email not in by_email:
                user = self._call(
                    "create user",
                    lambda email=email, i=i: self._client.users.create(
                        email=email,
                        username=f"{prefix}-{i}",
                        first_name="Simulated",
                        last_name=f"expert {i}",
                    ),
                )
                by_email[email] = int(user.id)
            ids.append(by_email[email])
        return ids

    def answer(
        self,
        task_id: int,
        choice: str,
        completed_by: int,
        *,
        corrected_text: str | None = None,
        rationale: str | None = None,
    ) -> int:
        """Create one annotation on ``task_id`` as user ``completed_by``; returns its id."""
        cfg = self.annotation
        result: list[dict[str, Any]] = [
            {
                "from_name": cfg.from_name,
                "to_name": cfg.to_name,
                "type": "choices",
                "value": {"choices": [choice]},
            }
        ]
        for name, text in (
            (cfg.corrected_text_name, corrected_text),
            (cfg.rationale_name, rationale),
        ):
            if text:
                result.append(
                    {
                        "from_name": name,
                        "to_name": cfg.to_name,
                        "type": "textarea",
                        "value": {"text": [text]},
                    }
                )
        created = self._call(
            "create annotation",
            lambda: self._client.annotations.create(
                id=task_id, result=result, completed_by=completed_by
            ),
        )
        return int(created.id)


def _plain(obj: Any) -> dict[str, Any]:
    """An SDK model (or dict) as a plain dict with JSON-able values."""
    if isinstance(obj, dict):
        data = dict(obj)
    elif hasattr(obj, "model_dump"):
        data = obj.model_dump(mode="json")
    else:  # pragma: no cover - defensive
        data = dict(vars(obj))
    for key in ("created_at", "updated_at"):
        if data.get(key) is not None and not isinstance(data[key], str):
            data[key] = str(data[key])
    return data


def _as_datetime(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        body = exc.body if isinstance(exc.body, str | dict) else ""
        return f"HTTP {exc.status_code} {str(body)[:200]}"
    return f"{type(exc).__name__}: {exc}"[:300]
