"""Checks shared by the synthetic generators' tests."""

from pathlib import Path

import numpy as np
from PIL import Image


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_boxes_match_pixels(image: Image.Image, empty: Image.Image, annotations: list[dict]) -> None:
    """Outside every box the image is the empty scene's; each box's own pixels differ from it."""
    drawn = np.abs(np.asarray(image, dtype=np.int16) - np.asarray(empty, dtype=np.int16)).reshape(
        image.height, image.width, -1).max(axis=2) > 0
    inside = np.zeros_like(drawn)
    for ann in annotations:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= image.width + 0.01 and y + h <= image.height + 0.01, ann
        x0, y0, x1, y1 = int(x), int(y), int(np.ceil(x + w)), int(np.ceil(y + h))
        inside[y0:y1, x0:x1] = True
        assert drawn[y0:y1, x0:x1].mean() > 0.2, ann
    assert not drawn[~inside].any()
