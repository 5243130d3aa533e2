"""`recon3d report` opened in a real headless Chromium: every picture loads and every section is
there; emotion separability in `inspect`; datasets without labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recon3d.report.emotion import evaluate, nearest_centroid
from tests import media
from tests.cli import build, run_cli
from tests.conftest import RAVDESS_VIDEO, REPO, need

ARTIFACTS = REPO / "test-artifacts"
SECTIONS = ("overview", "qc", "emotions", "motion", "separability")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def open_in_chromium(page_path: Path, screenshot: Path) -> dict:
    """Load the page from disk in headless Chromium (no network), screenshot it, and read its DOM."""
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="playwright (extra 'test') not installed").sync_playwright
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        found = page.evaluate("""() => ({
            images: Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]),
            sections: Array.from(document.querySelectorAll('section')).map(s => s.id),
            text: document.body.innerText})""")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    found["requests"] = requests
    return found


def test_report_of_the_readme_dataset_loads_in_chromium(built, tmp_path):
    page = tmp_path / "report.html"
    run_cli("report", str(built), "--out", str(page))
    found = open_in_chromium(page, ARTIFACTS / "report.png")
    assert found["sections"] == list(SECTIONS)
    assert len(found["images"]) >= 10
    broken = [alt for alt, complete, width in found["images"] if not complete or width <= 0]
    assert not broken, broken
    assert all(url.startswith(("file:", "data:")) for url in found["requests"]), found["requests"]  # no network
    text = found["text"]
    for phrase in ("4 clips", "by take", "largest reprojection error", "Mean vertex motion", "neutral, normal",
                   "accuracy", "chance 33.3 %"):
        assert phrase in text, phrase
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_inspect_reports_emotion_separability(built):
    summary = json.loads(run_cli("inspect", str(built), "--json").stdout)
    assert summary["emotion_eval"] == "take" and summary["emotion_clips"] == 4  # the video-only twin is not built
    assert summary["emotion_chance"] == pytest.approx(1 / 3) and 0.0 <= summary["emotion_accuracy"] <= 1.0
    assert "emotion separability" in run_cli("inspect", str(built)).stdout


def test_report_without_labels_says_so(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    media.write_first_frames(need(RAVDESS_VIDEO / "01-01-04-01-01-01-05.mp4"), videos / "interview.mp4", 12)
    out = tmp_path / "out"
    build(videos, out, "--labels", "none", "--workers", "1")
    page = tmp_path / "report.html"
    run_cli("report", str(out), "--out", str(page))
    found = open_in_chromium(page, ARTIFACTS / "report-unlabelled.png")
    assert found["sections"] == list(SECTIONS)
    assert all(complete and width > 0 for _, complete, width in found["images"])
    assert "No labels" in found["text"] and "1 clips" in found["text"]


def test_report_of_a_folder_that_is_not_a_dataset_is_one_line(tmp_path):
    proc = run_cli("report", str(tmp_path), "--out", str(tmp_path / "r.html"), check_exit=2)
    assert "not a finished recon3d build" in proc.stderr and "Traceback" not in proc.stderr


def test_nearest_centroid_separates_separable_classes_and_not_noise():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (4, 30))
    y = np.repeat([1, 3, 5, 7], 12)
    x = centres[(y - 1) // 2] + rng.normal(0, 1, (len(y), 30))
    actors = [f"{a:02d}" for a in np.tile(np.arange(1, 5), 12)]
    takes = [(1, 1)] * len(y)
    result = evaluate(x, list(y), actors, takes)
    assert result.evaluation == "actor" and result.accuracy > 0.9 and result.chance == 0.25
    noise = evaluate(rng.normal(0, 1, x.shape), list(y), actors, takes)
    assert noise.accuracy < 0.5  # chance-level on features without the emotion
    assert list(nearest_centroid(x[:24], y[:24], x[:4])) == list(y[:4])
