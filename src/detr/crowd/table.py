"""The crowd table: per overlap bin, recall at match IoU 0.5 and 0.75, and AP, one row per
detector; then what a user sees at a score threshold (box_counts.py): the share of objects
found, and the shares of the boxes that are duplicates or on nothing."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from detr.crowd.overlap import BIN_NAMES
from detr.crowd.recall import recall_by_bin
from detr.engine.box_counts import DEFAULT_THRESHOLD, BoxCounts, count_boxes
from detr.engine.evaluate import coco_evaluate

MATCH_IOUS = (0.5, 0.75)
COUNT_HEADERS = ("found", "dup", "nothing")


@dataclass(frozen=True)
class Row:
    name: str
    recall: tuple[tuple[float, ...], ...]  # per match IoU, per overlap bin
    ap: float
    counts: BoxCounts

    def shares(self) -> tuple[float, float, float]:
        """Objects found / objects, duplicates / boxes, boxes on nothing / boxes (NaN when there are none)."""
        c = self.counts
        return (c.found / c.objects if c.objects else math.nan, c.duplicates / c.boxes if c.boxes else math.nan,
                c.on_nothing / c.boxes if c.boxes else math.nan)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "AP": self.ap,
                **{f"recall@{iou}": dict(zip(BIN_NAMES, shares)) for iou, shares in zip(MATCH_IOUS, self.recall)},
                "box_counts": {**asdict(self.counts), "duplicate_rate": self.counts.duplicate_rate}}


def score(name: str, ground_truth: dict[str, Any], results: list[dict[str, Any]],
          count_threshold: float = DEFAULT_THRESHOLD) -> Row:
    """One detector's row: COCO's matching and AP, 100 detections an image; the box counts
    of the detections scoring at least `count_threshold`."""
    stats, _, _ = coco_evaluate(ground_truth, results)
    return Row(name, tuple(tuple(recall_by_bin(ground_truth, results, iou)) for iou in MATCH_IOUS), stats["AP"],
               count_boxes(ground_truth, results, count_threshold))


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _thresholds_note(rows: list[Row]) -> str:
    """What the count columns mean, and the score threshold of the boxes counted (rows counted
    at another threshold than `detr predict`'s default, or than most rows, are named)."""
    thresholds = [r.counts.threshold for r in rows]
    usual = DEFAULT_THRESHOLD if DEFAULT_THRESHOLD in thresholds else max(set(thresholds), key=thresholds.count)
    others = "".join(f"; {', '.join(r.name for r in rows if r.counts.threshold == t)} at score >= {t:g}"
                     for t in sorted(set(thresholds) - {usual}))
    return (f"found: share of objects found (IoU >= 0.5); dup, nothing: shares of the boxes that are duplicates "
            f"of a found object or on no object; boxes scoring >= {usual:g}{others}")


def format_table(rows: list[Row]) -> str:
    """Fixed-width text for the terminal."""
    name_width = max([len(r.name) for r in rows] + [8])
    groups = "  ".join(f"{'recall at match IoU ' + str(iou):<{10 * len(BIN_NAMES)}}" for iou in MATCH_IOUS)
    lines = [" " * name_width + "  " + groups,
             f"{'detector':<{name_width}}  " + "  ".join("".join(f"{b:>10}" for b in BIN_NAMES) for _ in MATCH_IOUS)
             + f"{'AP':>8}" + "".join(f"{h:>8}" for h in COUNT_HEADERS)]
    for row in rows:
        cells = "  ".join("".join(f"{_cell(v):>10}" for v in shares) for shares in row.recall)
        counts = "".join(f"{_cell(v):>8}" for v in row.shares())
        lines.append(f"{row.name:<{name_width}}  {cells}{row.ap:>8.3f}{counts}")
    return "\n".join(lines + [_thresholds_note(rows)])


def markdown_table(rows: list[Row]) -> str:
    """The same table in Markdown, for a README."""
    header = ["detector"] + [f"R@{iou} {b}" for iou in MATCH_IOUS for b in BIN_NAMES] + ["AP"] + list(COUNT_HEADERS)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [_cell(v) for shares in row.recall for v in shares]
        lines.append("| " + " | ".join([row.name] + cells + [f"{row.ap:.3f}"] + [_cell(v) for v in row.shares()])
                     + " |")
    return "\n".join(lines + ["", _thresholds_note(rows)])
