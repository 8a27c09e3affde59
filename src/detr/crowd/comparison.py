"""`detr crowd --train`: DETR and the NMS detectors (FCOS; YOLO when Ultralytics is installed)
trained on the same crowded data for the same wall-clock budget on the same machine, scored
by the same code, in one table."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from detr.config import CrowdBenchmarkConfig, ExperimentConfig, apply_settings, preset
from detr.crowd.figure import side_by_side
from detr.crowd.nms_ceiling import ground_truth_as_detections
from detr.crowd.peer import PEER_NAME, build_peer, peer_transforms, predict_peer, train_peer
from detr.crowd.recall import apply_nms, best_f1_score_threshold
from detr.crowd.table import Row, format_table, markdown_table, score
from detr.crowd.yolo_peer import INSTALL_HINT, predict_yolo, train_yolo, yolo_installed, yolo_name
from detr.data.coco import CocoDetection
from detr.data.fit import dataset_stats, fit_to_data
from detr.data.sources import Split, eval_loader, training_splits, validated_split
from detr.distributed import leave_process_group
from detr.engine.checkpoint import load_checkpoint
from detr.engine.evaluate import predict_dataset
from detr.engine.local_processes import process_count, run_in_processes
from detr.engine.train import Trainer
from detr.inference import Predictor
from detr.weights import load_weights

log = logging.getLogger(__name__)

NMS_THRESHOLDS = (0.45, 0.5, 0.6, 0.7)
DETECTION_FILES = {"DETR": "detr", PEER_NAME: "peer"}  # and "yolo" for the YOLO peer


@dataclass(frozen=True)
class TrainedDetr:
    """What the comparison needs of a finished DETR run."""
    config: ExperimentConfig
    step: int
    images: int | None  # trained on, all processes together
    val_set: CocoDetection
    device: torch.device


def _fit(job: tuple) -> None:
    """One training process (the only one, or one of the group), as `detr train` runs it."""
    experiment, train, val, out, device, progress = job
    Trainer(experiment, train, val, out, device, progress=progress).fit()
    leave_process_group()


def train_detr(config: CrowdBenchmarkConfig, train: Split, val: Split, out: Path, device: torch.device,
               queries: int | None, progress: bool, settings: list[str] = ()) -> tuple[TrainedDetr, list[dict]]:
    """The preset for `config.minutes`, fitted to the data as `detr train` fits it, its lr
    dropped at the same share of the budget as the peer's; `settings` (SECTION.FIELD=VALUE)
    last. Trained in as many processes as `detr train` would start (train.processes, at most
    one per core). Returns the run and its val detections (of the EMA weights, if any)."""
    experiment = preset(config.detr_preset)
    experiment.train.time_budget_minutes = config.minutes
    experiment.train.lr_drop_fraction = config.lr_drop_fraction
    experiment.train.epochs = None  # the clock ends the run
    experiment.train.eval_every = 1_000_000  # evaluate once, at the end, outside the budget
    experiment.train.seed = config.seed
    train, val = training_splits(train, val)
    log.info("DETR fitted to the data: %s", "; ".join(fit_to_data(experiment, dataset_stats(train.records))))
    if queries is not None:
        experiment.model.num_queries = queries
    apply_settings(experiment, list(settings))
    job = (experiment, train, val, Path(out), device, progress)
    processes = process_count(experiment.train.processes, device)
    if processes > 1:
        run_in_processes(_fit, job, processes)
    else:
        _fit(job)
    state = load_checkpoint(Path(out) / "last.pt")
    predictor = Predictor.from_weights(load_weights(Path(out) / "last.pt"), device)
    val_set = CocoDetection(val.images, val.annotations, predictor.transforms, predictor.categories)
    results = predict_dataset(predictor.forward, eval_loader(val_set, 8, 0), predictor.device, progress,
                              scoring=predictor.scoring)
    return TrainedDetr(experiment, state["step"], state.get("images"), val_set, predictor.device), results


def train_nms_peer(config: CrowdBenchmarkConfig, train: Split, val: Split, image_size: int,
                   device: torch.device, progress: bool) -> tuple[CocoDetection, list[dict], dict]:
    """The peer for the same budget, on the same device; returns its val dataset, its
    detections and its step count."""
    train_set = CocoDetection(train.images, train.annotations, peer_transforms(train=True))
    val_set = CocoDetection(val.images, val.annotations, peer_transforms(train=False), train_set.categories)
    model = build_peer(len(train_set.categories.ids), image_size).to(device)
    run = train_peer(model, train_set, config.minutes, config.peer_batch_size, config.peer_lr,
                     config.lr_drop_fraction, config.seed, progress)
    return val_set, predict_peer(model, val_set, progress=progress), run


def train_yolo_peer(config: CrowdBenchmarkConfig, train: Split, val: Split, image_size: int, out: Path,
                    device: torch.device, progress: bool) -> tuple[list[dict], dict] | None:
    """The YOLO peer's val detections and its run, or None (and the install line) without Ultralytics."""
    if not yolo_installed():
        print(INSTALL_HINT)
        return None
    model, run = train_yolo(config, train, val, image_size, device, out, progress)
    categories = validated_split(train).records.categories
    return predict_yolo(model, config, val, categories, image_size, device), run


def compare(config: CrowdBenchmarkConfig, train: Split, val: Split, out: str | Path,
            device: torch.device, queries: int | None = None, progress: bool = True,
            settings: list[str] = ()) -> list[Row]:
    """Train all, score everything, print and write the table (text, Markdown, json) and the figure."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    detr, detr_results = train_detr(config, train, val, out / "detr", device, queries, progress, settings)
    image_size = detr.config.data.val_scale
    peer_val, peer_results, peer_run = train_nms_peer(config, train, val, image_size, detr.device, progress)
    yolo = train_yolo_peer(config, train, val, image_size, out / "yolo", detr.device, progress)
    steps = {"DETR": detr.step, PEER_NAME: peer_run["steps"]}
    detections = {PEER_NAME: peer_results}
    yolo_label = yolo_name(config.yolo_model)
    if yolo is not None:
        yolo_results, yolo_run = yolo
        steps[yolo_label] = yolo_run["steps"]
        detections[yolo_label] = yolo_results
    detections["DETR"] = detr_results
    log.info("steps in %.1f minutes each: %s", config.minutes, steps)

    ground_truth = detr.val_set.ground_truth()
    perfect = ground_truth_as_detections(ground_truth, config.seed)
    # The ground truth's scores are random: every box it keeps counts, whatever its score.
    rows = [score(f"GT+NMS@{t}", ground_truth, apply_nms(perfect, t), count_threshold=0.0) for t in NMS_THRESHOLDS]
    rows.append(score(f"{PEER_NAME} (NMS@0.6)", ground_truth, peer_results))
    if yolo is not None:
        rows.append(score(f"{yolo_label} (NMS@0.7)", ground_truth, yolo_results))  # Ultralytics' default NMS IoU
    rows.append(score("DETR", ground_truth, detr_results))
    rows.append(score(f"DETR+NMS@{config.detr_nms_iou}", ground_truth,
                      apply_nms(detr_results, config.detr_nms_iou)))

    thresholds = {name: best_f1_score_threshold(ground_truth, results) for name, results in detections.items()}
    figure = side_by_side(peer_val, [(name, results, thresholds[name]) for name, results in detections.items()],
                          out / "side_by_side.png", config.figure_images)
    for name, results in detections.items():
        (out / f"{DETECTION_FILES.get(name, 'yolo')}_val_detections.json").write_text(json.dumps(results))
    table = format_table(rows)
    (out / "crowd_table.md").write_text(markdown_table(rows) + "\n")
    (out / "crowd.json").write_text(json.dumps({
        "config": config.__dict__, "detr_config": detr.config.to_dict(), "device": str(device), "val_images": len(peer_val),
        "steps": steps, "detr_images": detr.images, "yolo_run": yolo[1] if yolo else None,
        "figure_score_thresholds": thresholds, "rows": [r.to_dict() for r in rows]}, indent=1))
    batches = f" ({yolo[1]['batches']} batches of {yolo[1]['batch_size']})" if yolo else ""
    images = f"; DETR trained on {detr.images} images" if detr.images is not None else ""
    print(f"{config.minutes:g} training minutes each on {device}: "
          + ", ".join(f"{name} {n} steps" for name, n in steps.items()) + f"{batches}{images}; "
          f"{len(peer_val)} val images")
    print(table)
    print(f"table: {out / 'crowd_table.md'}; figure: {figure}")
    return rows
