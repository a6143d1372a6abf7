"""The HTML report, tested as a user sees it: rendered from smoke runs of every recipe and opened in
headless Chromium. Every recipe has a table row and a section, every image loads, no console errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO
from torch_cookbook import recipes
from torch_cookbook.report import find_runs, render

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_report_lists_missing_runs_honestly(tmp_path):
    out = render([tmp_path], tmp_path / "report.html")
    html = out.read_text()
    for name in recipes.names():
        assert f'id="recipe-{name}"' in html
    assert html.count("no completed run found") == len(recipes.names())


def test_best_run_prefers_full_then_newest(tmp_path):
    import json
    import os

    for i, (profile, stamp) in enumerate([("smoke", 300), ("full", 100), ("quick", 200)]):
        d = tmp_path / "batchnorm" / f"run{i}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"recipe": "batchnorm", "profile": profile}))
        os.utime(d / "summary.json", (stamp, stamp))
    assert find_runs([tmp_path])["batchnorm"].name == "run1"


def test_report_in_headless_chromium(smoke_runs, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make test installs it)")
    playwright = pytest.importorskip("playwright.sync_api")
    names = recipes.names()
    for name in names:
        if not getattr(recipes.get(name).module, "SKIP_REASON", None):
            smoke_runs(name)
    out = render([smoke_runs.root], tmp_path / "report.html")

    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        for width in (1280, 390):  # a laptop and a phone
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(out.as_uri())
            page.wait_for_load_state("load")
            for name in names:
                assert page.locator(f"#summary tr[data-recipe='{name}']").count() == 1, name
                assert page.locator(f"section#recipe-{name}").count() == 1, name
            images = page.locator("img")
            assert images.count() >= len(names)
            broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
            assert broken == 0
            # the page fits the viewport width (tables scroll inside their own boxes)
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
            artefacts = REPO / "test-artifacts"
            artefacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artefacts / f"report-{width}.png"), full_page=False)
            page.close()
        browser.close()
    assert errors == []
