"""Running a Predictor over images and videos: drawn pictures plus detections in a chosen format."""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from detr.data.coco import DatasetError
from detr.inference import Predictor
from detr.predict.formats import FORMATS, WRITERS, Prediction
from detr.predict.frames import frames, is_video
from detr.viz.boxes import draw_detections

log = logging.getLogger(__name__)


def _outside(paths: list[Path], out_dir: Path) -> list[Path]:
    """The inputs less the files directly in `out_dir`: there lie the pictures an earlier run
    drew (an --out inside the folder read), which this run would read and then overwrite."""
    kept = [p for p in paths if p.resolve().parent != out_dir.resolve()]
    if not kept:
        raise DatasetError(f"every input is in the output folder {out_dir}, where the drawn pictures go; "
                           "choose another --out")
    if len(kept) < len(paths):
        log.info("skipped %d files in the output folder %s (pictures drawn by an earlier run)",
                 len(paths) - len(kept), out_dir)
    return kept


def write_predictions(predictor: Predictor, paths: list[Path], out_dir: Path, threshold: float,
                      format: str = "coco", progress: bool = True) -> Path:
    """A drawn copy of each image and video frame under `out_dir` (NAME.png), and the
    detections written in `format` (one of FORMATS); returns where the detections went."""
    if format not in WRITERS:
        raise ValueError(f"unknown prediction format {format!r}: choose one of {', '.join(FORMATS)}")
    paths = _outside(paths, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = []
    many = len(paths) > 1 or any(is_video(p) for p in paths)
    for frame in tqdm(frames(paths), desc="predict", disable=not progress or not many):
        detections = predictor.predict(frame.pixels, threshold)
        depth, height, width = frame.pixels.shape
        predictions.append(Prediction(frame.name, frame.source, width, height, depth, detections, frame.index))
        captions = [f"{n} {s:.2f}" for n, s in zip(detections.names, detections.scores.tolist())]
        drawn = draw_detections(frame.pixels, detections.boxes, detections.labels.tolist(), captions)
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(out_dir / f"{frame.name}.png")
    return WRITERS[format](predictions, out_dir, list(predictor.categories.names))
