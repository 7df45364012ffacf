"""The report page in a real browser (Debian's chromium, driven by Playwright): every image loads,
every link resolves, the gallery shows exactly the unstable images, and a full-page screenshot
is kept as an artifact (``$INSTAB_ARTIFACTS`` when set, else the test's tmp folder).

Skipped only where chromium or Playwright is absent, and never under CI (there they must be).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instab.cli.main import main
from instab.io.store import ResultRow, ResultStore
from tests._support.browser import CHROMIUM, IN_CI, artifacts_dir, sync_playwright_or_skip

# Per image: label, and per environment E1..E4 the top-1 class ("-": not scored, an error).
# c: right in 2, wrong in 2 (most disagreement); g: right in 1, three different wrong answers;
# b: right in 1, wrong the same way in 3; f: wrong in 1; a right everywhere, d wrong everywhere,
# e right where scored: stable.
TOP1 = {
    "a": (1, [1, 1, 1, 1]), "b": (2, [2, 5, 5, 5]), "c": (3, [3, 3, 6, 6]), "d": (4, [7, 7, 7, 7]),
    "e": (1, [1, 1, 1, "-"]), "f": (2, [2, 2, 2, 8]), "g": (3, [3, 5, 6, 7]),
}
GALLERY = ["c", "g", "b", "f"]
NAMES = {1: "tabby", 2: "goldfish", 3: "tench", 4: "espresso", 5: "mug", 6: "teapot", 7: "cup", 8: "bagel"}


def _scored_run(folder: Path) -> tuple[Path, Path]:
    """A store of TOP1 with a real small PNG behind every result, and a labels CSV with class names."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (x, (label, tops)) in enumerate(TOP1.items()):
        base = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
        for j, top in enumerate(tops):
            path = folder / "images" / f"E{j + 1}" / f"{x}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(base.astype(int) + 40 * j, 0, 255).astype(np.uint8)).save(path)
            env = f"E{j + 1}"
            if top == "-":
                rows.append(ResultRow("m", x, env, 0, str(path), (label,), None, None, None, "cannot decode"))
            else:
                rows.append(ResultRow("m", x, env, 0, str(path), (label,), None, [top, 9, 10],
                                      [0.9 - 0.1 * j - 0.01 * i, 0.05, 0.01], None))
    with ResultStore(folder / "r.db") as store:
        store.write(rows)
    labels = folder / "labels.csv"
    labels.write_text("file,class_index,name\n" + "".join(f"x{c}.png,{c},{n}\n" for c, n in NAMES.items()))
    return folder / "r.db", labels


def _check_page(report: Path, screenshot: Path) -> dict:
    """Open ``report`` in chromium; returns what the page shows (and saves a full-page screenshot)."""
    sync_playwright = sync_playwright_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(report.resolve().as_uri())
            page.wait_for_load_state("load")
            # scroll through the page so that every image is laid out and decoded before it is measured
            page.evaluate("""async () => { for (let y = 0; y < document.body.scrollHeight; y += 600) {
                window.scrollTo(0, y); await new Promise(r => setTimeout(r, 20)); } window.scrollTo(0, 0); }""")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30000)
            shown = {
                "images": page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.naturalWidth])"),
                "links": page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))"),
                "ids": page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"),
                "gallery": page.eval_on_selector_all(".card", "els => els.map(e => e.dataset.imageId)"),
                "tiles": page.eval_on_selector_all(".card .tile", "els => els.length"),
                "scored_tiles": page.eval_on_selector_all(".card .tile:not(.missing)", "els => els.length"),
                "text": page.inner_text("body"),
            }
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return shown


def _assert_loads_and_links(shown: dict, folder: Path) -> None:
    broken = [alt for alt, width in shown["images"] if not width > 0]
    assert shown["images"] and not broken, f"images that did not load: {broken}"
    for href in shown["links"]:
        if href.startswith("#"):
            assert href[1:] in shown["ids"], f"link {href} has no target"
        else:
            assert (folder / href).is_file(), f"link {href} does not resolve in {folder}"


def test_report_of_a_scored_run(tmp_path, capsys):
    sync_playwright_or_skip()  # skip before any work when there is no browser
    db, labels = _scored_run(tmp_path)
    out = tmp_path / "rep"
    assert main(["report", str(db), "--out", str(out), "--labels", str(labels)]) == 0
    capsys.readouterr()
    screenshot = artifacts_dir(tmp_path) / "report_scored_run.png"
    shown = _check_page(out / "report.html", screenshot)
    _assert_loads_and_links(shown, out)
    assert shown["gallery"] == GALLERY
    assert shown["tiles"] == 4 * len(GALLERY)
    thumbs = [alt for alt, _ in shown["images"] if " in E" in alt]
    assert len(thumbs) == 4 * len(GALLERY)  # every environment of every unstable image has its picture
    figures = {alt for alt, _ in shown["images"]} - set(thumbs)
    assert figures == {"accuracy", "topk", "pairwise", "confidence", "per_class"}  # no group column: no group chart
    text = shown["text"]
    assert "unstable when the model's top-1 answer is right in at least one environment" in text
    assert "teapot" in text and "tench" in text  # class names from the labels CSV
    assert "4 of 7 images change between right and wrong" in text  # e, scored in 3 environments, is counted
    assert {"per_image.csv", "accuracy.csv", "pairwise.csv", "errors.csv", "summary.json"} <= set(shown["links"])
    assert screenshot.stat().st_size > 10_000


def test_gallery_cap_in_the_browser(tmp_path, capsys):
    sync_playwright_or_skip()
    db, _ = _scored_run(tmp_path)
    out = tmp_path / "rep"
    assert main(["report", str(db), "--out", str(out), "--gallery-limit", "2"]) == 0
    capsys.readouterr()
    shown = _check_page(out / "report.html", artifacts_dir(tmp_path) / "report_gallery_cap.png")
    _assert_loads_and_links(shown, out)
    assert shown["gallery"] == GALLERY[:2]
    assert "Showing 2 of 4 unstable images; 2 more" in shown["text"]


def test_demo_report(tmp_path):
    """The demo's report: from ``$INSTAB_DEMO_OUT`` (a folder ``instab demo --out`` wrote, as CI does before the
    tests), else, under CI only, from a demo run here (about a minute)."""
    sync_playwright_or_skip()
    demo = os.environ.get("INSTAB_DEMO_OUT")
    if not demo:
        if not IN_CI:
            pytest.skip("set INSTAB_DEMO_OUT to a folder written by 'instab demo --out FOLDER' to check its report")
        from instab.studies.demo import run_demo

        demo = str(tmp_path / "demo")
        assert run_demo(demo, echo=None) == 0
    out = Path(demo) / "report"
    shown = _check_page(out / "report.html", artifacts_dir(tmp_path) / "report_demo.png")
    _assert_loads_and_links(shown, out)
    assert shown["gallery"] and shown["tiles"] >= len(shown["gallery"])
    thumbs = [alt for alt, _ in shown["images"] if " in " in alt]
    assert len(thumbs) == shown["scored_tiles"]  # the demo keeps every simulated image: each has its picture
