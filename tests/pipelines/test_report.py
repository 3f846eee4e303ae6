"""``datawall report``: the HTML page and its PNGs, checked as files and in headless Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from pipelines.catalog import SCHEMAS, Catalog
from pipelines.cli import app
from pipelines.report import FIGURES, ReportError, write_report
from pipelines.score import BAR_EXTRA

runner = CliRunner()
ALL_FIGURES = {f"{spec.slug}.png" for spec in FIGURES}
EXPERIMENT_PNG = "6-experiment.png"


def img_sources(index: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', index.read_text(encoding="utf-8"))


def assert_pngs_sane(folder: Path, names: set[str]) -> None:
    """Every PNG decodes, is figure-sized, and is not a blank canvas."""
    for name in names:
        pixels = imread(folder / name)
        height, width = pixels.shape[:2]
        assert 150 <= height <= 2000 and 600 <= width <= 2000, (name, pixels.shape)
        assert float(np.std(pixels[..., :3])) > 0.02, f"{name} is blank"


# -- a synthetic workspace: rows written straight into the catalog (no Prefect, fast) ------
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _write(catalog: Catalog, table: str, rows: list[dict], key: str, extra=()) -> None:
    schema = SCHEMAS[table]
    for name, kind in extra:
        schema = schema.append(pa.field(name, kind))
    full = [{name: row.get(name) for name in schema.names} for row in rows]
    catalog.write(table, pa.Table.from_pylist(full, schema), key)


def synthetic_home(home: Path, rounds: int = 2, experiment: bool = False) -> Path:
    """``rounds`` finished rounds with scores, samples, bars, decisions, models; experts
    answered round 1's hard cases; optionally a four-arm experiment with two seeds."""
    catalog = Catalog(home).init()
    rng = np.random.default_rng(0)
    models = [{"model_id": "ref-0", "role": "reference", "round": 0, "val_bpb": 2.4}]
    for r in range(1, rounds + 1):
        ids = [f"c{r}-{i:03d}" for i in range(60)]
        _write(catalog, "candidates", [
            {"candidate_id": c, "role": "pool", "text": f"text {c}", "round": r} for c in ids
        ], f"r{r}")  # fmt: skip
        quality = rng.beta(4, 2, len(ids))
        bar = 0.6 + 0.1 * r
        _write(catalog, "scores", [
            {"candidate_id": c, "round": r, "quality": float(q)} for c, q in zip(ids, quality, strict=True)
        ], f"r{r}")  # fmt: skip
        _write(catalog, "samples", [
            {"sample_id": f"s{r}-{i}", "round": r, "quality": float(q)}
            for i, q in enumerate(rng.beta(3, 3, 40))
        ], f"r{r}")  # fmt: skip
        _write(catalog, "bars", [{
            "round": r, "model_id": models[-1]["model_id"], "bar": bar, "quantile": 0.9,
            "margin": 1.0, "n_samples": 40, "bar_anchor": bar - 0.05,
            "bar_prev_samples": None if r == 1 else bar - 0.1,
        }], f"r{r}", BAR_EXTRA)  # fmt: skip
        decisions = []
        for c, q in zip(ids, quality, strict=True):
            d = "accept" if q > bar + 0.1 else "reject" if q < bar - 0.2 else "hard"
            reason = {"accept": "above_bar", "reject": "below_bar", "hard": "near_bar"}[d]
            decisions.append({
                "candidate_id": c, "round": r, "decision": d, "reason": reason,
                "decided_by": "model", "queued": d == "hard", "decided_at": T0,
            })  # fmt: skip
        _write(catalog, "decisions", decisions, f"r{r}")
        model = {
            "model_id": f"round-{r}", "role": "round", "round": r,
            "parent_id": models[-1]["model_id"], "val_bpb": 2.4 - 0.2 * r,
        }  # fmt: skip
        models.append(model)
        _write(catalog, "rounds", [{
            "round": r, "model_id": models[-2]["model_id"], "bar": bar, "n_scored": 60,
            "new_model_id": model["model_id"], "val_bpb": model["val_bpb"],
            "settings": '{"route": {"scale": "logit"}}',
            "started_at": T0 + timedelta(hours=r), "finished_at": T0 + timedelta(hours=r, minutes=5),
        }], f"round-{r:04d}")  # fmt: skip
    for i, m in enumerate(models):
        m["created_at"] = T0 + timedelta(hours=i)
    _write(catalog, "models", models, "all")
    hard = [d["candidate_id"] for d in _read_decisions(catalog, 1) if d["decision"] == "hard"]
    annotations, expert = [], []
    for c in hard:
        votes = ["accept", "accept", "reject" if c.endswith("1") else "accept"]
        for who, vote in zip(("ann-a", "ann-b", "ann-c"), votes, strict=True):
            annotations.append(
                {"annotation_id": f"{c}:{who}", "candidate_id": c, "round": 2,
                 "annotator": who, "choice": vote, "imported_at": T0}
            )  # fmt: skip
        agreement = max(votes.count("accept"), votes.count("reject")) / 3
        expert.append({
            "candidate_id": c, "round": 2, "decision": "accept", "reason": "expert_accept",
            "decided_by": "expert", "agreement": agreement, "decided_at": T0 + timedelta(days=1),
        })  # fmt: skip
    if rounds >= 2:
        _write(catalog, "annotations", annotations, "r2")
        _write(catalog, "decisions", expert, "r2-expert")
    if experiment:
        write_experiment(catalog)
    return home


def _read_decisions(catalog: Catalog, round_: int) -> list[dict]:
    return catalog.query("SELECT * FROM decisions WHERE round = ?", [round_]).to_pylist()


FINAL = {"curated": 1.70, "random": 1.95, "full": 1.80, "heuristic": 1.88}


def write_experiment(catalog: Catalog) -> None:
    runs, curves = [], []
    for arm, final in FINAL.items():
        for seed in (0, 1):
            end = final + 0.02 * seed
            for step in range(1, 11):
                curves.append({
                    "experiment_id": "exp-1", "arm": arm, "seed": seed, "step": step * 10,
                    "tokens_seen": step * 1000, "val_bpb": end + 1.5 / step - 0.15,
                })  # fmt: skip
            runs.append({
                "experiment_id": "exp-1", "arm": arm, "seed": seed, "n_docs": 100,
                "arm_tokens": 5000, "budget_tokens": 10000, "tokens_seen": 10000,
                "epochs": 2.0, "capped": False, "final_val_bpb": end, "created_at": T0,
            })  # fmt: skip
    _write(catalog, "experiment_runs", runs, "exp-1")
    _write(catalog, "experiment_curves", curves, "exp-1")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return synthetic_home(tmp_path_factory.mktemp("synthetic") / "home")


# -- files ----------------------------------------------------------------------------------
def test_synthetic_report_has_every_figure_but_the_experiment(synthetic, tmp_path):
    report = write_report(Catalog(synthetic), out=tmp_path / "r")
    assert report.round == 2
    written = {p.name for p in report.folder.glob("*.png")}
    assert written == ALL_FIGURES - {EXPERIMENT_PNG}
    assert sorted(img_sources(report.index)) == sorted(written) == sorted(report.pngs)
    assert_pngs_sane(report.folder, written)
    page = report.index.read_text(encoding="utf-8")
    assert "No experiment yet" in page
    # every query is on the page with its result, so `datawall sql` can reproduce it
    for spec in FIGURES:
        for name in spec.queries:
            assert f"pipelines/sql/{name}.sql" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside


def test_experiment_rows_add_the_arms_figure_and_table(tmp_path):
    home = synthetic_home(tmp_path / "home", rounds=1, experiment=True)
    report = write_report(Catalog(home))
    assert report.folder == home / "reports" / "round-0001"
    assert EXPERIMENT_PNG in report.pngs
    assert_pngs_sane(report.folder, {EXPERIMENT_PNG})
    arms = next(f for f in report.figures if f.png == EXPERIMENT_PNG).results[1].table
    rows = {r["arm"]: r for r in arms.to_pylist()}
    assert list(rows) == ["curated", "random", "full", "heuristic"]
    assert rows["curated"]["final_bpb_mean"] == pytest.approx(FINAL["curated"] + 0.01)
    assert rows["curated"]["final_bpb_std"] == pytest.approx(np.std([1.70, 1.72], ddof=1))
    assert rows["curated"]["full_final_bpb"] == pytest.approx(FINAL["full"] + 0.01)
    # the curated mean curve crosses 1.81 exactly at its 6000-token evaluation
    assert rows["curated"]["tokens_to_target"] == pytest.approx(6000)
    assert rows["curated"]["ratio_to_budget"] == pytest.approx(0.6)
    assert rows["random"]["tokens_to_target"] is None  # defined for the curated arm only
    # one round, no annotations: a note, not a broken image
    agreement = next(f for f in report.figures if f.spec.slug == "4-annotation-agreement")
    assert agreement.png is None and "No expert annotations yet" in agreement.note


def test_round_option_and_unknown_round(synthetic, tmp_path):
    report = write_report(Catalog(synthetic), round_=1, out=tmp_path / "r1")
    assert report.round == 1
    assert "<title>datawall report — round 1</title>" in report.index.read_text(encoding="utf-8")
    with pytest.raises(ReportError, match=r"round 7 has not finished .*finished rounds: 1, 2"):
        write_report(Catalog(synthetic), round_=7, out=tmp_path / "r7")
    assert not (tmp_path / "r7").exists()


def test_no_finished_round_is_a_clear_error(tmp_path):
    catalog = Catalog(tmp_path / "empty").init()
    with pytest.raises(ReportError, match="no finished round yet"):
        write_report(catalog)
    result = runner.invoke(app, ["report", "--home", str(catalog.home)])
    assert result.exit_code == 0, result.output
    assert "no finished round yet" in result.output


def test_rewrite_replaces_the_report_and_refuses_foreign_folders(synthetic, tmp_path):
    out = tmp_path / "r"
    with Catalog(synthetic).writer("a round"):  # a report never waits for the writer lock
        first = write_report(Catalog(synthetic), out=out)
    (out / "stale.png").write_bytes(b"old")
    second = write_report(Catalog(synthetic), out=out)
    assert {p.name for p in out.iterdir()} == {"index.html", *second.pngs}
    assert first.pngs == second.pngs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ReportError, match="holds no earlier datawall report"):
        write_report(Catalog(synthetic), out=foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_cli_writes_the_page_and_prints_its_path(synthetic):
    result = runner.invoke(app, ["report", "--home", str(synthetic), "--round", "1"])
    assert result.exit_code == 0, result.output
    index = synthetic / "reports" / "round-0001" / "index.html"
    assert index.is_file()
    assert "latest decisions" in result.output  # the terminal tables stay
    assert str(index) in result.output.replace("\n", "")
    bad = runner.invoke(app, ["report", "--home", str(synthetic), "--round", "9"])
    assert bad.exit_code == 1
    assert "round 9 has not finished" in bad.output


def test_every_query_on_the_page_runs_in_datawall_sql(synthetic, tmp_path):
    report = write_report(Catalog(synthetic), out=tmp_path / "r")
    page = report.index.read_text(encoding="utf-8")
    for fig in report.figures:
        for result in fig.results:
            assert html.escape(result.sql) in page
            done = runner.invoke(
                app, ["sql", result.sql, "--format", "json", "--home", str(synthetic)]
            )
            assert done.exit_code == 0, (result.name, done.output)
            assert len(json.loads(done.stdout)) == result.table.num_rows, result.name


# -- a real workspace (two Prefect rounds, expert answers) ----------------------------------
@pytest.mark.slow
def test_report_of_real_rounds(curated_home, tmp_path):
    report = write_report(Catalog(curated_home), out=tmp_path / "r")
    assert report.round == 2
    notes = {f.spec.slug: f.note for f in report.figures if f.note}
    assert set(notes) == {"6-experiment"}, notes
    written = {p.name for p in report.folder.glob("*.png")}
    assert written == ALL_FIGURES - {EXPERIMENT_PNG}
    assert sorted(img_sources(report.index)) == sorted(written)
    assert_pngs_sane(report.folder, written)


# -- headless Chromium --------------------------------------------------------------------
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("DATAWALL_REQUIRE_BROWSER"):
            pytest.fail("DATAWALL_REQUIRE_BROWSER is set but `chromium` is not on PATH")
        pytest.skip("`chromium` not on PATH (Debian package `chromium`; `make browser`)")
    return found


def browser_image_check(index: Path, profile: Path) -> tuple[int, int]:
    """Open the page in headless Chromium; return (images, images loaded) as the page's
    own script wrote them into the DOM after the load event."""
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        index.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'id="image-check"[^>]*data-images="(\d+)" data-loaded="(\d+)"', done.stdout)
    assert found, f"the page's image check did not run; DOM tail: {done.stdout[-500:]}"
    return int(found.group(1)), int(found.group(2))


@pytest.mark.slow
def test_every_image_loads_in_headless_chromium(tmp_path):
    home = synthetic_home(tmp_path / "home", experiment=True)
    report = write_report(Catalog(home))
    assert len(report.pngs) == len(FIGURES)
    assert browser_image_check(report.index, tmp_path / "profile") == (len(FIGURES), len(FIGURES))
    # the check can fail: take one figure away and the browser must notice
    broken = tmp_path / "broken"
    shutil.copytree(report.folder, broken)
    (broken / report.pngs[2]).unlink()
    images, loaded = browser_image_check(broken / "index.html", tmp_path / "profile")
    assert (images, loaded) == (len(FIGURES), len(FIGURES) - 1)
