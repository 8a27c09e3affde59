"""Ablation: each faster-converging variant on and off, on several datasets, at one budget.

    python benchmarks/ablation.py --data /data/general /data/dense --minutes 10 \
        --variants small fast fast-dense-proposals --peer
    python benchmarks/ablation.py --out runs/ablation --table-only

Each cell trains one configuration for --minutes of wall clock (fitted to the data
as `detr train --data D --minutes M` fits it), then scores the val split with the
same COCO code; `--peer` adds the FCOS peer of `detr crowd --train` at the same
budget (its val detections kept in OUT/<dataset>_peer_detections.json). Beside AP
each cell counts, at score 0.5, the objects found and the duplicate boxes (what
`detr eval` reports; COCO AP forgives duplicates). Cells run one after another (each wants the whole CPU) and are appended to
OUT/ablation.jsonl as they finish, so a cut-off run keeps what it measured and a
later call adds to the same table. Not a test: each cell takes its budget plus
about a minute.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

from detr.config import CrowdBenchmarkConfig, TrainConfig, preset
from detr.crowd.comparison import train_detr, train_nms_peer
from detr.crowd.peer import PEER_NAME
from detr.data.fit import dataset_stats, fit_to_data
from detr.data.sources import find_split, training_splits
from detr.engine.box_counts import count_boxes
from detr.engine.evaluate import coco_evaluate

# name -> (preset, --set settings): each variant of the fast preset with one method off,
# and the additions measured against it.
VARIANTS = {
    "small": ("small", []),
    "fast": ("fast", []),
    "fast-anchor-refinement": ("fast", ["model.queries=learned", "model.selected_content=False",
                                        "model.distinct_queries=0", "loss.dense_proposals=False",
                                        "model.denoising_groups=0"]),
    "fast-selection": ("fast", ["model.queries=anchors", "model.selected_content=False",
                                "model.distinct_queries=0", "loss.dense_proposals=False"]),
    "fast-dense-proposals": ("fast", ["loss.dense_proposals=False"]),
    "fast-selected-content": ("fast", ["model.selected_content=False"]),
    "fast-denoising": ("fast", ["model.denoising_groups=0"]),
    "fast-iou-aware": ("fast", ["loss.iou_aware_classes=False"]),
    "fast-groups": ("fast", ["model.query_groups=1"]),
    "fast-ema": ("fast", ["train.ema_decay=None"]),
    "fast-crop": ("fast", ["data.crop_probability=0.0"]),
}


def run_detr(name: str, root: Path, minutes: float, out: Path) -> dict:
    """As `detr crowd --train` trains its DETR (fitted to the data, the clock ends the run,
    one evaluation at the end), with the variant's preset and settings and the preset's seed."""
    preset_name, settings = VARIANTS[name]
    config = CrowdBenchmarkConfig(minutes=minutes, detr_preset=preset_name, seed=TrainConfig().seed)
    trainer, results = train_detr(config, find_split(root, "train"), find_split(root, "val"), out,
                                  torch.device("cpu"), None, False, settings)
    return {"steps": trainer.step, **scores(trainer.val_set.ground_truth(), results),
            "scale": trainer.config.data.val_scale}


def run_peer(root: Path, minutes: float, out: Path) -> dict:
    """The FCOS peer on one dataset; its val detections go to OUT/<dataset>_peer_detections.json
    (COCO results)."""
    train, val = training_splits(find_split(root, "train"), find_split(root, "val"))
    config = preset("small")
    fit_to_data(config, dataset_stats(train.records))
    val_set, results, run = train_nms_peer(CrowdBenchmarkConfig(minutes=minutes), train, val,
                                           config.data.val_scale, torch.device("cpu"), False)
    (out / f"{root.name}_peer_detections.json").write_text(json.dumps(results))
    return {"steps": run["steps"], **scores(val_set.ground_truth(), results), "scale": config.data.val_scale}


def scores(ground_truth: dict, results: list[dict]) -> dict:
    stats, _, _ = coco_evaluate(ground_truth, results)
    counts = count_boxes(ground_truth, results)
    return {"AP": stats["AP"], "AP50": stats["AP50"], "found": counts.found, "objects": counts.objects,
            "duplicate_rate": counts.duplicate_rate}


def print_table(path: Path) -> None:
    cells = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    print(f"\n{'variant':<28} {'dataset':<10} {'min':>4} {'steps':>6} {'steps/min':>9} {'AP':>7} {'AP50':>7} "
          f"{'found@0.5':>10} {'dup@0.5':>8}")
    for c in cells:
        found = f"{c['found']}/{c['objects']}" if "found" in c else "-"  # a cell without counts
        duplicates = f"{c['duplicate_rate']:.0%}" if "duplicate_rate" in c else "-"
        print(f"{c['variant']:<28} {c['dataset']:<10} {c['minutes']:>4g} {c['steps']:>6d} "
              f"{c['steps'] / c['minutes']:>9.1f} {c['AP']:>7.4f} {c['AP50']:>7.4f} {found:>10} {duplicates:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="*", default=[], help="dataset folders (train/ and val/ splits)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--variants", nargs="*", default=["small", "fast"], choices=sorted(VARIANTS))
    parser.add_argument("--peer", action="store_true", help=f"also train the {PEER_NAME} peer on each dataset")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--table-only", action="store_true", help="print what OUT holds, train nothing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "ablation.jsonl"
    if not args.table_only:
        print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
              f"torch {torch.__version__}")
        for root in map(Path, args.data):
            jobs = [(name, lambda n=name: run_detr(n, root, args.minutes, out / root.name / n))
                    for name in args.variants]
            if args.peer:
                jobs.append((PEER_NAME, lambda: run_peer(root, args.minutes, out)))
            for name, job in jobs:
                started = time.monotonic()
                cell = {"variant": name, "dataset": root.name, "minutes": args.minutes, **job(),
                        "wall_minutes": (time.monotonic() - started) / 60}
                with table.open("a") as f:
                    f.write(json.dumps(cell) + "\n")
                print(json.dumps(cell), flush=True)
    print_table(table)


if __name__ == "__main__":
    main()
