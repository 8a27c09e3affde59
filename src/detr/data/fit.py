"""Defaults that fit the data: query count, input scale, and the hard-negative and box-loss
weights from a training split's annotations.

A preset is sized for a typical dataset; a user's data may hold more objects
an image, or larger images of small objects, than the preset expects. These
rules only ever raise a preset's numbers (more queries, larger inputs, a
heavier hard-negative and box-loss weights in crowds), so a dataset that fits the preset
trains exactly as the preset says; the one exception keeps query selection's
queries within the tokens it chooses from.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from detr.config import ExperimentConfig, apply_settings, setting_name
from detr.data.coco_records import CocoRecords, object_annotations
from detr.model.backbone import backbone_stride

QUERY_MARGIN = 1.5  # queries per object in the fullest training image, at least
SCALE_STEP = 16  # input sizes are multiples of this (the small backbones' stride)
LONG_SIDE_FACTOR = 1.7  # room for aspect ratios up to about 1.7:1 before the long-side cap bites
# The small objects (10th percentile of the shorter side) should span 1.5 cells of a stride-8
# level at the input size; below that their boxes come out loose (BENCHMARKS.md, crowds).
SMALL_OBJECT_INPUT_SIDE = 12
MAX_SMALL_OBJECT_UPSCALE = 1.5  # the input's area, and so a step's time, grows with its square
# Crowded data: a median image of this many objects or more. Unmatched queries that cover one of
# many neighbours learn no-object at this weight, so second boxes in a crowd do not score.
CROWDED_OBJECTS = 10
CROWD_DUPLICATE_WEIGHT = 3.0
# In crowds of small objects loose boxes, not classes, lose the AP (AP75, and boxes at IoU
# 0.3-0.5 on real objects): the L1 and GIoU loss weights are multiplied by this there.
CROWD_BOX_WEIGHT_FACTOR = 2.0


@dataclass(frozen=True)
class DatasetStats:
    images: int
    most_objects: int  # non-crowd boxes in the fullest image
    median_objects: float  # non-crowd boxes in the median image
    median_short_side: float
    median_long_side: float
    small_object_side: float  # 10th percentile of the shorter box side, in pixels


def dataset_stats(records: CocoRecords) -> DatasetStats:
    """From the validated json alone: image sizes and the targets' boxes (as training sees them:
    clamped to their image, crowd regions and boxes with no area left out), no pixels."""
    images = list(records.images.values())
    targets = {image_id: object_annotations(anns) for image_id, anns in records.annotations.items()}
    sides = [min(ann["bbox"][2], ann["bbox"][3]) for anns in targets.values() for ann in anns]
    short = [min(i["height"], i["width"]) for i in images] or [0]
    long = [max(i["height"], i["width"]) for i in images] or [0]
    counts = [len(targets.get(image_id, [])) for image_id in records.images] or [0]
    sides.sort()
    return DatasetStats(
        images=len(images),
        most_objects=max(counts),
        median_objects=statistics.median(counts),
        median_short_side=statistics.median(short),
        median_long_side=statistics.median(long),
        small_object_side=sides[len(sides) // 10] if sides else 0.0,
    )


def _round(size: float) -> int:
    return max(SCALE_STEP, int(round(size / SCALE_STEP)) * SCALE_STEP)


def fit_to_data(config: ExperimentConfig, stats: DatasetStats, queries: bool = True) -> list[str]:
    """Raise the query count, the input scale and the hard-negative weight where the data needs
    them; returns one phrase per decision (for a one-line report). `queries=False` keeps the
    count (fine-tuning)."""
    notes = [_fit_scale(config, stats)]
    if (crowd := _fit_crowd_loss(config, stats)) is not None:
        notes.append(crowd)
    if queries:
        notes.insert(0, fit_queries(config, stats))
    return notes


def fit_with_settings(config: ExperimentConfig, records: CocoRecords, settings: list[str],
                      queries: bool = True) -> list[str]:
    """What `detr train` does to a preset before training: fit it to the training split's
    `records`, then apply the user's `settings` (which win over the fit), then fit the query
    count to the inputs those settings leave, unless a setting names it or `queries` is False
    (weights whose model is given). Returns one phrase per decision."""
    stats = dataset_stats(records)
    fitted = fit_to_data(config, stats, queries=False)
    apply_settings(config, settings)
    if queries and "model.num_queries" not in {setting_name(item) for item in settings}:
        fitted.insert(0, fit_queries(config, stats))  # after the settings: query selection's queries fit its inputs
    return fitted


def fit_queries(config: ExperimentConfig, stats: DatasetStats) -> str:
    """At least 1.5 queries an object of the fullest image, never fewer than the model has,
    and with query selection never more than the smallest training input's tokens (unless the
    objects need them). Returns the phrase for the start line."""
    model = config.model
    needed = math.ceil(stats.most_objects * QUERY_MARGIN)
    count = max(model.num_queries, needed)
    if model.queries == "selected":
        # Each query is one of the encoder's tokens: the one exception to "only raise" is a
        # preset asking for more than the smallest training input has (fast's 64 on 112-px
        # inputs of 7 x 7 tokens).
        tokens = (min(config.data.train_scales) // backbone_stride(model.backbone)) ** 2
        count = min(count, max(tokens, needed))
    model.num_queries = count
    return f"{count} queries (up to {stats.most_objects} objects an image)"


def _fit_scale(config: ExperimentConfig, stats: DatasetStats) -> str:
    data = config.data
    # Never shrink images below their typical size (small objects vanish), up to the preset's long-side cap.
    typical = min(_round(stats.median_short_side), data.max_size)
    scale = max(typical, data.val_scale)
    # Then enlarge them until the small objects span SMALL_OBJECT_INPUT_SIDE pixels, within a bound.
    small = _small_object_at(stats, scale)
    if 0 < small < SMALL_OBJECT_INPUT_SIDE:
        needed = SCALE_STEP * math.ceil(scale * SMALL_OBJECT_INPUT_SIDE / small / SCALE_STEP)
        bound = SCALE_STEP * math.floor(scale * MAX_SMALL_OBJECT_UPSCALE / SCALE_STEP)
        scale = min(needed, bound)
    if scale > data.val_scale:
        _scale_inputs(config, scale)
        return (f"input {scale} px short side (images' median {stats.median_short_side:g} px; "
                f"small objects {stats.small_object_side:g} px, {_small_object_at(stats, scale):.0f} at the input)")
    return f"input {data.val_scale} px short side (images' median {stats.median_short_side:g} px)"


def _small_object_at(stats: DatasetStats, scale: int) -> float:
    """The small objects' shorter side, in pixels, once the images' median short side is `scale`."""
    return stats.small_object_side * scale / stats.median_short_side if stats.median_short_side else 0.0


def _scale_inputs(config: ExperimentConfig, scale: int) -> None:
    """Every input size of the preset multiplied alike, so that val_scale becomes `scale`."""
    data = config.data
    ratio = scale / data.val_scale
    data.val_scale = scale
    data.train_scales = tuple(sorted({_round(s * ratio) for s in data.train_scales}))
    data.crop_resize_scales = tuple(sorted({_round(s * ratio) for s in data.crop_resize_scales}))
    data.crop_min, data.crop_max = _round(data.crop_min * ratio), _round(data.crop_max * ratio)
    data.max_size = max(data.max_size, _round(scale * LONG_SIDE_FACTOR))


def _fit_crowd_loss(config: ExperimentConfig, stats: DatasetStats) -> str | None:
    """Crowded data gets the heavier hard-negative weight and box-loss weights, where the preset
    trains hard negatives (the paper's presets keep the paper's loss)."""
    loss = config.loss
    if loss.duplicate_weight is None or stats.median_objects < CROWDED_OBJECTS:
        return None
    if loss.duplicate_weight < CROWD_DUPLICATE_WEIGHT:
        loss.duplicate_weight = CROWD_DUPLICATE_WEIGHT
    loss.weight_bbox *= CROWD_BOX_WEIGHT_FACTOR
    loss.weight_giou *= CROWD_BOX_WEIGHT_FACTOR
    return (f"hard-negative weight {loss.duplicate_weight:g}, box losses x{CROWD_BOX_WEIGHT_FACTOR:g} "
            f"(L1 {loss.weight_bbox:g}, GIoU {loss.weight_giou:g}; {stats.median_objects:g} objects in the median image)")
