"""Push and pull throughput against a Label Studio server, beside the naive client loop.

Baseline: what a user would write with the SDK by hand, one ``tasks.create`` plus one
``predictions.create`` per hard case. Ours: ``annotation.studio.Studio.push`` (batched
imports with predictions inline, after listing what the project holds). Pull: one paged
listing of the project with annotations (``Studio.pull``) against one ``annotations.list``
request per task.

    LABEL_STUDIO_URL=http://127.0.0.1:8080 LABEL_STUDIO_API_KEY=... \\
        python benchmarks/label_studio_push_pull.py --tasks 300

Creates two projects named ``datawall-bench-*`` on the server.
"""

from __future__ import annotations

import argparse
import os
import time

from annotation.studio import Studio, StudioConfig


def make_tasks(n: int, tag: str) -> list[dict]:
    tasks = []
    for i in range(n):
        text = f"Candidate {i} ({tag}): a paragraph of documentation about sorting lists in place."
        tasks.append(
            {
                "data": {
                    "candidate_id": f"{tag}-{i:06d}",
                    "text": text,
                    "quality": 0.5,
                    "bar": 0.5,
                    "learnability": 0.0,
                    "loss_model": 2.0,
                    "loss_ref": 2.0,
                    "round": 1,
                    "reason": "near_bar",
                },
                "predictions": [
                    {
                        "model_version": "bench",
                        "score": 0.6,
                        "result": [
                            {
                                "from_name": "decision",
                                "to_name": "text",
                                "type": "choices",
                                "value": {"choices": ["accept"]},
                            }
                        ],
                    }
                ],
            }
        )
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--annotated", type=int, default=100)
    args = parser.parse_args()
    url, token = os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"]
    stamp = time.strftime("%Y%m%d-%H%M%S")

    ours = Studio(StudioConfig(url=url, project_title=f"datawall-bench-ours-{stamp}"), token)
    naive = Studio(StudioConfig(url=url, project_title=f"datawall-bench-naive-{stamp}"), token)
    ours_project, naive_project = ours.ensure_project(), naive.ensure_project()
    client = naive.client  # the plain SDK client, as a user would hold it

    t0 = time.perf_counter()
    for task in make_tasks(args.tasks, "naive"):
        created = client.tasks.create(project=naive_project, data=task["data"])
        p = task["predictions"][0]
        client.predictions.create(
            task=created.id, result=p["result"], model_version=p["model_version"], score=p["score"]
        )
    naive_push = time.perf_counter() - t0

    t0 = time.perf_counter()
    mapping, imported = ours.push(ours_project, make_tasks(args.tasks, "ours"))
    ours_push = time.perf_counter() - t0
    assert imported == args.tasks == len(mapping)

    user = ours.ensure_users(1, prefix="datawall-bench")[0]
    for cid in sorted(mapping)[: args.annotated]:
        ours.answer(mapping[cid], "accept", user)
    naive_ids = naive.task_ids(naive_project)
    for cid in sorted(naive_ids)[: args.annotated]:
        naive.answer(naive_ids[cid], "accept", user)

    t0 = time.perf_counter()
    pulled, _ = ours.pull(ours_project)
    ours_pull = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_pulled = [a for tid in naive_ids.values() for a in client.annotations.list(id=tid)]
    naive_pull = time.perf_counter() - t0
    assert len(pulled) == args.annotated == len(naive_pulled)

    print(
        f"push {args.tasks} tasks: ours {args.tasks / ours_push:8.1f} tasks/s, "
        f"naive per-task SDK loop {args.tasks / naive_push:8.1f} tasks/s, "
        f"ratio {naive_push / ours_push:5.1f}x"
    )
    print(
        f"pull {args.tasks} tasks ({args.annotated} annotated): ours "
        f"{args.tasks / ours_pull:8.1f} tasks/s, naive per-task annotations.list "
        f"{args.tasks / naive_pull:8.1f} tasks/s, ratio {naive_pull / ours_pull:5.1f}x"
    )


if __name__ == "__main__":
    main()
