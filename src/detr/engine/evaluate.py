"""COCO evaluation: run the model over a dataset and score it with pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert
from tqdm import tqdm

from detr.data.coco import CocoDetection
from detr.distributed import gather_to_main
from detr.engine.box_counts import DEFAULT_THRESHOLD, count_boxes
from detr.model.class_scoring import ClassScoring
from detr.postprocess import PostProcess
from detr.precision import autocast

STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


@torch.no_grad()
def predict_dataset(model, loader, device, progress: bool = True, precision: str = "fp32",
                    scoring: ClassScoring = ClassScoring()) -> list[dict[str, Any]]:
    """Detections for every image of the loader, as COCO result records (model: a DETR, its
    torch.compile wrapper or an ONNX predictor's forward; `scoring`: the DETR's class-scoring rule)."""
    dataset: CocoDetection = loader.dataset
    postprocess = PostProcess(scoring=scoring)
    if isinstance(model, torch.nn.Module):
        model.eval()
    results = []
    for images, mask, targets in tqdm(loader, desc="eval", disable=not progress, leave=False):
        with autocast(torch.device(device), precision):
            outputs = model(images.to(device), mask.to(device))
        sizes = torch.stack([t["orig_size"] for t in targets])
        for target, detections in zip(targets, postprocess(outputs, sizes)):
            xywh = box_convert(detections["boxes"], "xyxy", "xywh").cpu()
            for box, score, label in zip(xywh.tolist(), detections["scores"].tolist(),
                                         detections["labels"].tolist()):
                results.append({"image_id": int(target["image_id"]),
                                "category_id": dataset.categories.ids[label],
                                "bbox": [round(v, 2) for v in box], "score": round(score, 5)})
    return results


def coco_evaluate(ground_truth: dict[str, Any], results: list[dict[str, Any]]) -> tuple[dict, str, dict]:
    """Returns the 12 summary numbers by name, COCOeval's printed summary, and AP per category name."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ground_truth
        coco.createIndex()
    if not results:
        return {name: 0.0 for name in STAT_NAMES}, "no detections", {}
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        detections = coco.loadRes(results)
        evaluator = COCOeval(coco, detections, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats)}
    per_class = {}
    precision = evaluator.eval["precision"]  # [iou, recall, category, area, max_dets]
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[coco.cats[category_id]["name"]] = float(values.mean()) if values.size else float("nan")
    summary = "\n".join(line for line in text.getvalue().splitlines() if line.startswith(" Average"))
    return stats, summary, per_class


def format_per_class(per_class: dict[str, float]) -> str:
    width = max((len(n) for n in per_class), default=8)
    lines = [f"{'category':<{width}}  AP"]
    lines += [f"{name:<{width}}  {ap:.3f}" if not np.isnan(ap) else f"{name:<{width}}  n/a"
              for name, ap in per_class.items()]
    return "\n".join(lines)


def evaluate(model, loader, device, results_path: str | Path | None = None,
             progress: bool = True, precision: str = "fp32", scoring: ClassScoring = ClassScoring(),
             threshold: float = DEFAULT_THRESHOLD) -> tuple[dict, str, dict] | None:
    """Detect, write the COCO results json, score. Under torchrun each process
    detects its share of the images and rank 0 scores them all (others get None).
    Beside COCO's numbers, the stats and the summary hold what a user sees at
    `threshold`: objects found, duplicate boxes and boxes on nothing (box_counts.py)."""
    gathered = gather_to_main(predict_dataset(model, loader, device, progress, precision, scoring))
    if gathered is None:
        return None
    results = [record for part in gathered for record in part]
    if results_path is not None:
        Path(results_path).parent.mkdir(parents=True, exist_ok=True)
        Path(results_path).write_text(json.dumps(results))
    ground_truth = loader.dataset.ground_truth()
    stats, summary, per_class = coco_evaluate(ground_truth, results)
    counts = count_boxes(ground_truth, results, threshold)
    return {**stats, **counts.as_metrics()}, f"{summary}\n{counts.describe()}", per_class
