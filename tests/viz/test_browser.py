"""The gallery `detr visualize` writes, opened in a real (headless) Chromium.

Set DETR_GALLERY_SCREENSHOT=docs/gallery_screenshot.png to also save the
README's screenshot.
"""

import os

import numpy as np
import pytest
from PIL import Image

from detr.viz.gallery import GalleryEntry, write_index
from tests.viz.chromium import INSTALL, Chromium, find_chromium

# Each image has loaded and shows, and has alt text, a title and a caption.
# decode() waits for images still decoding after the load event; it rejects
# for broken ones, which the naturalWidth check then reports.
GALLERY_PROBLEMS = """(async () => {
  const images = [...document.images];
  await Promise.all(images.map(i => i.decode().catch(() => null)));
  const problems = [];
  for (const img of images) {
    const name = img.getAttribute('src');
    if (!img.complete || img.naturalWidth === 0) problems.push(`${name}: did not load`);
    else if (img.getBoundingClientRect().width === 0) problems.push(`${name}: not displayed`);
    if (!img.alt.trim()) problems.push(`${name}: no alt text`);
    const caption = img.closest('figure')?.querySelector('figcaption');
    if (!caption || !caption.textContent.trim()) problems.push(`${name}: no caption`);
    const title = img.closest('section')?.querySelector('h2');
    if (!title || !title.textContent.trim()) problems.push(`${name}: no title`);
  }
  return {images: images.map(i => i.getAttribute('src')), problems};
})()"""


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        missing = f"no chromium on PATH: install Debian's chromium package ({INSTALL}, with sudo if not root)"
        if os.environ.get("DETR_REQUIRE_CHROMIUM") == "1":  # CI: the gallery must really be checked
            pytest.fail(missing)
        pytest.skip(missing)
    with Chromium(executable) as chromium:
        yield chromium


def test_gallery_loads_every_figure_with_its_caption(dataset_gallery, browser, tmp_path):
    out = dataset_gallery[0]
    page = browser.open((out / "index.html").as_uri())
    report = page.evaluate(GALLERY_PROBLEMS)
    assert sorted(report["images"]) == sorted(p.name for p in out.glob("*.png")) and len(report["images"]) == 7
    assert report["problems"] == []
    assert page.errors() == []
    shot = page.screenshot(tmp_path / "screenshot.png")
    with Image.open(shot) as im:
        # The whole page: 1280 wide and taller than the window, with something drawn on it.
        assert im.width == 1280 and im.height > 900 and np.asarray(im.convert("L")).std() > 10
    page.close()
    if os.environ.get("DETR_GALLERY_SCREENSHOT"):
        # The README's: the top of the page in a narrower window, shrunk to stay small.
        top = browser.open((out / "index.html").as_uri(), width=900, height=1400)
        top.screenshot(os.environ["DETR_GALLERY_SCREENSHOT"], full_page=False, scale=0.6)
        top.close()


def test_checks_catch_a_broken_image_and_a_missing_caption(browser, tmp_path):
    Image.new("RGB", (20, 10), "red").save(tmp_path / "present.png")
    index = write_index(tmp_path, [GalleryEntry("present.png", "Present", "A red box."),
                                   GalleryEntry("missing.png", "Missing", "")])
    page = browser.open(index.as_uri())
    assert page.evaluate(GALLERY_PROBLEMS) == {"images": ["present.png", "missing.png"],
                                               "problems": ["missing.png: did not load", "missing.png: no caption"]}
    assert page.errors() == [f"request failed: net::ERR_FILE_NOT_FOUND ({(tmp_path / 'missing.png').as_uri()})"]
    page.close()


def test_console_errors_and_exceptions_are_reported(browser, tmp_path):
    page_file = tmp_path / "bad.html"
    page_file.write_text("<!doctype html><script>console.log('fine'); console.error('bad', 2);"
                         "throw new Error('worse')</script>")
    page = browser.open(page_file.as_uri())
    errors = page.errors()
    assert errors[0] == "console.error: bad 2"
    assert errors[1].startswith("uncaught: Error: worse") and len(errors) == 2
    page.close()
