"""The crowd table: per overlap bin, recall at match IoU 0.5 and 0.75, and AP, one row per detector."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from detr.crowd.overlap import BIN_NAMES
from detr.crowd.recall import recall_by_bin
from detr.engine.evaluate import coco_evaluate

MATCH_IOUS = (0.5, 0.75)


@dataclass(frozen=True)
class Row:
    name: str
    recall: tuple[tuple[float, ...], ...]  # per match IoU, per overlap bin
    ap: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "AP": self.ap,
                **{f"recall@{iou}": dict(zip(BIN_NAMES, shares)) for iou, shares in zip(MATCH_IOUS, self.recall)}}


def score(name: str, ground_truth: dict[str, Any], results: list[dict[str, Any]]) -> Row:
    """One detector's row: COCO's matching and AP, 100 detections an image."""
    stats, _, _ = coco_evaluate(ground_truth, results)
    return Row(name, tuple(tuple(recall_by_bin(ground_truth, results, iou)) for iou in MATCH_IOUS), stats["AP"])


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def format_table(rows: list[Row]) -> str:
    """Fixed-width text for the terminal."""
    name_width = max([len(r.name) for r in rows] + [8])
    groups = "  ".join(f"{'recall at match IoU ' + str(iou):<{10 * len(BIN_NAMES)}}" for iou in MATCH_IOUS)
    lines = [" " * name_width + "  " + groups,
             f"{'detector':<{name_width}}  " + "  ".join("".join(f"{b:>10}" for b in BIN_NAMES) for _ in MATCH_IOUS)
             + f"{'AP':>8}"]
    for row in rows:
        cells = "  ".join("".join(f"{_cell(v):>10}" for v in shares) for shares in row.recall)
        lines.append(f"{row.name:<{name_width}}  {cells}{row.ap:>8.3f}")
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """The same table in Markdown, for a README."""
    header = ["detector"] + [f"R@{iou} {b}" for iou in MATCH_IOUS for b in BIN_NAMES] + ["AP"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [_cell(v) for shares in row.recall for v in shares]
        lines.append("| " + " | ".join([row.name] + cells + [f"{row.ap:.3f}"]) + " |")
    return "\n".join(lines)
