"""The training loop: the paper's recipe, checkpoints, exact resume, logs, evaluation."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from detr.config import ExperimentConfig
from detr.data.collate import collate
from detr.data.fit import QUERY_MARGIN
from detr.data.sources import EpochSampler, SeededAugmentation, Split, build_datasets, eval_loader
from detr.engine.checkpoint import load_checkpoint, remove_stale_temp_files, save_atomic, write_atomic
from detr.distributed import init_from_environment, is_main, rank, world_size
from detr.engine.box_counts import DEFAULT_THRESHOLD
from detr.engine.ema import ModelEMA
from detr.engine.evaluate import evaluate
from detr.engine.gradient_sync import gradient_sync
from detr.engine.optim import STEPS_BEFORE_ESTIMATE, Schedule, build_optimizer
from detr.loss import SetCriterion
from detr.model import DETR, build_model
from detr.precision import autocast

log = logging.getLogger(__name__)


_LOGGED = ("loss", "loss_ce", "loss_bbox", "loss_giou", "class_error", "cardinality_error")


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must act on (the message says which)."""


def _to_device(targets: list[dict], device: torch.device) -> list[dict]:
    return [{"labels": t["labels"].to(device), "boxes": t["boxes"].to(device)} for t in targets]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Owns one run: its model, optimiser, data, output folder and progress."""

    def __init__(self, config: ExperimentConfig, train_split: Split, val_split: Split, out_dir: str | Path,
                 device: str | torch.device = "cpu", progress: bool = True,
                 init: dict[str, torch.Tensor] | None = None, threshold: float = DEFAULT_THRESHOLD) -> None:
        """`init`: weights (our tensor names) to start from, for fine-tuning. `threshold`: the score
        at which each evaluation counts found objects and duplicate boxes. The trainer keeps
        its own copy of `config`, completed from the data (the class count); the caller's stays."""
        self.config = config = copy.deepcopy(config)
        self.threshold = threshold
        self.out_dir = Path(out_dir)
        self.device = init_from_environment(torch.device(device))
        self.progress = progress and is_main()
        _seed_everything(config.train.seed)
        self.train_set, self.val_set = build_datasets(config.data, train_split, val_split)
        self._check_against_data()
        self.model = self._build_model(init)
        self.criterion = SetCriterion(config.model.num_classes, config.loss, queries_per_group=config.model.num_queries,
                                      scoring=self.model.scoring).to(self.device)
        # The processes' gradients are averaged (gradient_sync.py); the criterion's normalisers make
        # that equal to one process on the global batch (world x batch_size).
        # Denoising queries are built from the targets: a batch without objects leaves their
        # embeddings without a gradient, which DDP must be told to expect.
        targets_built = config.model.denoising_groups > 0
        if config.train.processes > 1 and world_size() == 1:
            log.info("one process: train.processes=%d is how many `detr train` starts (engine/local_processes.py)",
                     config.train.processes)
        self.sync = gradient_sync(self.model, self.device, find_unused_parameters=targets_built)
        self.forward = torch.compile(self.sync.net, dynamic=True) if config.train.compile else self.sync.net
        self.optimizer = build_optimizer(self.model, config.train, self.device)
        self.ema = (ModelEMA(self.model, config.train.ema_decay, config.train.ema_warmup_steps)
                    if config.train.ema_decay is not None else None)
        self._build_loaders()
        self.scheduler = Schedule(self.optimizer, config.train, self.steps_per_epoch)
        self._unchecked: dict[str, Any] | None = None  # the last step's loss, not yet checked for finiteness
        self._clock_start: float | None = None  # the run's start on this process's clock, with a time budget
        self._step_minutes = torch.tensor(0.0)  # the last step's end on rank 0's clock
        self.epoch, self.batches_done, self.step = 0, 0, 0
        self.best_ap, self.elapsed = -1.0, 0.0
        self.eval_seconds = 0.0  # of `elapsed`, spent evaluating (and keeping the best weights)
        self.images: int | None = 0  # trained on, all processes together; None: resumed from a run that did not count
        self.last_metrics: dict[str, float] = {}

    # -- set-up ------------------------------------------------------------
    def _check_against_data(self) -> None:
        """The class count comes from the data; the settings must be able to train on it."""
        config = self.config
        try:
            config.check()
        except ValueError as error:
            raise TrainingError(str(error)) from None
        num_classes = len(self.train_set.categories.ids)
        if config.model.num_classes != num_classes:
            log.info("model.num_classes set to %d, the dataset's category count", num_classes)
            config.model.num_classes = num_classes
        most = self.train_set.most_objects()
        if most > config.model.num_queries:
            enough = math.ceil(most * QUERY_MARGIN)
            raise TrainingError(f"training images hold up to {most} objects but the model predicts "
                                f"{config.model.num_queries}; add --set model.num_queries={enough}")
        if config.train.accumulate_steps < 1:
            raise TrainingError(f"train.accumulate_steps must be at least 1, not {config.train.accumulate_steps}")
        if config.train.epochs is None and config.train.time_budget_minutes is None:
            raise TrainingError("train.epochs=None trains until the time budget runs out: give --minutes too")

    def _build_model(self, init: dict[str, torch.Tensor] | None) -> DETR:
        config = self.config
        model = build_model(config.model)
        if init is not None and init_from(model, init):
            log.info("class head re-initialised for %d classes; the rest, object queries included, "
                     "comes from the given weights", config.model.num_classes)
        if config.train.freeze_backbone:
            model.backbone.requires_grad_(False)
        model.backbone.use_channels_last()
        if world_size() > 1 and self.device.type == "cuda" and not config.model.backbone.frozen_batchnorm:
            # Live BatchNorm over the global batch, as one process would see it (no CPU kernel exists).
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model.to(self.device)

    def _build_loaders(self) -> None:
        """The seeded, resumable train order (this process's shard) and the val loader."""
        train = self.config.train
        batch, workers = train.batch_size, train.num_workers
        self.sampler = EpochSampler(len(self.train_set), train.seed, rank=rank(), world=world_size())
        shard = len(self.sampler)
        self.drop_last = shard >= 2 * batch
        self.batches_per_epoch = max(1, shard // batch if self.drop_last else math.ceil(shard / batch))
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / train.accumulate_steps)  # optimiser steps
        self.train_loader = DataLoader(
            SeededAugmentation(self.train_set, train.seed), batch_size=batch, sampler=self.sampler,
            num_workers=workers, collate_fn=collate, drop_last=self.drop_last,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(train.seed))  # not the global RNG: see eval_loader
        self.val_loader = eval_loader(self.val_set, batch, workers, rank(), world_size())

    # -- state -------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "step": self.step,
            "best_ap": self.best_ap,
            "elapsed": self.elapsed,
            "eval_seconds": self.eval_seconds,
            "images": self.images,
            "metrics": self.last_metrics,
            "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                    "python_pos": random.getstate()[2]},
            "config": self.config.to_dict(),
            "categories": self.train_set.categories.to_dict(),
        }

    def resume(self, path: str | Path) -> None:
        payload = load_checkpoint(path)
        if "optimizer" not in payload or "step" not in payload:
            raise TrainingError(f"{path} holds weights only (no optimiser state or step) and cannot resume "
                                "a run; start a new run from it with --init instead")
        ours, theirs = self.train_set.categories.to_dict(), payload.get("categories")
        if theirs != ours:
            were = f"{len(theirs['ids'])} classes, ids {theirs['ids']}" if theirs else "unknown classes"
            raise TrainingError(f"{path} was trained on other data ({were}; this dataset: {len(ours['ids'])} "
                                f"classes, ids {ours['ids']}); resume with the same data, or start a new run "
                                "with --init to fine-tune from it")
        own = self.model.state_dict()
        differ = [n for n, t in payload["model"].items() if n not in own or own[n].shape != t.shape]
        differ += [n for n in own if n not in payload["model"]]
        if differ == ["fine_level.level_embed"] and self.model.fine_level is not None:
            # FineLevel's load hook drops it for --init, eval and predict; the optimiser state still counts it.
            raise TrainingError(f"{path} was written when the fine level kept a level embedding that the "
                                "deformable decoder never read; its optimiser state cannot resume this model: "
                                "start a new run from it with --init (its weights load)")
        if differ:
            raise TrainingError(f"{path} holds another model than this config builds ({differ[0]} differs); "
                                "resume with the preset and --set options of the run that wrote it")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if self.ema is not None:
            if "ema" not in payload:
                raise TrainingError(f"{path} was trained without EMA weights; resume it with train.ema_decay=None")
            self.ema.load_state_dict(payload["ema"])
        self.epoch, self.batches_done, self.step = payload["epoch"], payload["batches_done"], payload["step"]
        self.best_ap, self.elapsed = payload["best_ap"], payload["elapsed"]
        self.eval_seconds = payload.get("eval_seconds", 0.0)  # runs that did not keep it: counted as training
        self.images = payload.get("images")
        self.last_metrics = payload["metrics"]
        torch.set_rng_state(payload["rng"]["torch"])
        random.setstate((3, tuple(payload["rng"]["python"]), payload["rng"]["python_pos"]))
        log.info("resumed from %s at epoch %d, batch %d", path, self.epoch, self.batches_done)
        self._forget_lost_records()

    def _forget_lost_records(self) -> None:
        """Drop the log records of steps after the checkpoint: a run killed after logging them
        lost their weights, and this one trains and logs those steps again."""
        records = self.out_dir / "metrics.jsonl"
        if not is_main() or not records.is_file():
            return
        lines = records.read_text().splitlines()
        kept = [line for line in lines if (step := _step_of(line)) is not None and step <= self.step]
        if len(kept) < len(lines):
            write_atomic(records, lambda tmp: Path(tmp).write_text("".join(f"{line}\n" for line in kept)))
            log.info("dropped %d record(s) of steps after step %d from %s", len(lines) - len(kept), self.step,
                     records)

    def save(self, name: str) -> Path:
        """Rank 0 writes; the other processes hold the same weights."""
        self._raise_if_not_finite()
        path = self.out_dir / name
        if is_main():
            save_atomic(self.state(), path)
        return path

    # -- loop --------------------------------------------------------------
    def _log(self, record: dict[str, Any], writer: SummaryWriter | None) -> None:
        if writer is None:  # not rank 0
            return
        with open(self.out_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                writer.add_scalar(key, value, record["step"])

    def _train_step(self, micro_batches: list[tuple]) -> dict[str, torch.Tensor]:
        """One optimiser step over `micro_batches` (gradient accumulation when more than one).

        Returns the step's losses as device tensors: reading them is left to
        the caller's logging, and the finiteness check to the next step, once
        the matcher has synchronised anyway, so that a step costs one host sync.
        """
        self.model.train()
        if self.config.train.freeze_backbone:
            self.model.backbone.eval()  # frozen means BatchNorm statistics too
        all_targets = [_to_device(targets, self.device) for _, _, targets in micro_batches]
        pending = self.criterion.start_normalisers([t for targets in all_targets for t in targets],
                                                   self.config.model.num_queries, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        summed: dict[str, torch.Tensor] = {}
        for index, ((images, mask, _), targets) in enumerate(zip(micro_batches, all_targets)):
            last = index == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last else self.sync.accumulating()
            with sync:
                with autocast(self.device, self.config.train.precision):
                    outputs = self.forward(images.to(self.device, non_blocking=True),
                                           mask.to(self.device, non_blocking=True), **self._model_targets(targets))
                    if index == 0:
                        normalisers = pending.wait()  # the processes' sum, its round trip hidden by the forward
                    losses = self.criterion(outputs, targets, normalisers)
                if index == 0:
                    self._raise_if_not_finite()  # the previous step's loss, now on the host for free
                losses["loss"].backward()
            for key in _LOGGED:
                share = losses[key].detach() / (1 if key.startswith("loss") else len(micro_batches))
                summed[key] = summed[key] + share if key in summed else share
        # The gradients averaged over the processes; whether every one's loss was finite, and rank
        # 0's clock, in the same collective.
        clock = self._minutes_since(self._clock_start) if self._clock_start is not None else 0.0
        finite, self._step_minutes = self.sync.finish(torch.isfinite(summed["loss"]).float(), clock)
        self._unchecked = {"finite": finite, "loss": summed["loss"], "epoch": self.epoch, "step": self.step}
        if self.config.train.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.clip_max_norm)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return summed

    def _model_targets(self, targets: list[dict]) -> dict:
        """Denoising queries are made from the targets, so the model sees them in training."""
        return {"targets": targets} if self.config.model.denoising_groups else {}

    @property
    def eval_model(self) -> DETR:
        """The weights that are evaluated and exported: the moving average when there is one."""
        return self.ema.model if self.ema is not None else self.model

    def _raise_if_not_finite(self) -> None:
        """Stop on a non-finite loss of the last step, before its weights are saved or used again."""
        pending, self._unchecked = self._unchecked, None
        if pending is None or bool(pending["finite"]):
            return
        last = self.out_dir / "last.pt"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        value = float(pending["loss"])  # finite here when another process's loss was not
        became = value if not math.isfinite(value) else "non-finite in another process"
        raise TrainingError(f"loss became {became} at epoch {pending['epoch']} step "
                            f"{pending['step']}; {kept}. Lower the learning rate or check the data.")

    def evaluate(self, results_path: Path | None = None) -> tuple[dict, str, dict] | None:
        self._raise_if_not_finite()
        return evaluate(self.eval_model, self.val_loader, self.device, results_path, self.progress,
                        self.config.train.precision, self.model.scoring, threshold=self.threshold)

    def fit(self) -> dict[str, float]:
        """Train until the epoch count or the time budget is reached; returns the last eval metrics."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if is_main():
            remove_stale_temp_files(self.out_dir)  # left by a run killed while saving
        # A resumed run hides the events a killed one logged after its checkpoint (as in metrics.jsonl).
        writer = (SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.step + 1 if self.step else None)
                  if is_main() else None)
        budget = self.config.train.time_budget_minutes
        epochs = self.config.train.epochs
        started = time.monotonic() - self.elapsed
        log.info(self.scheduler.describe(self.steps_per_epoch))
        try:
            while epochs is None or self.epoch < epochs:
                out_of_time = self._run_epoch(writer, started, budget)
                self.elapsed = time.monotonic() - started
                epoch_done = self.batches_done == 0
                last_epoch = epochs is not None and self.epoch >= epochs
                if out_of_time or last_epoch or (epoch_done and self.epoch % self.config.train.eval_every == 0):
                    self._evaluate_and_keep_best(writer, started)
                    evaluated = time.monotonic() - started
                    self.eval_seconds += evaluated - self.elapsed
                    self.elapsed = evaluated
                self.save("last.pt")
                if out_of_time:
                    log.info("time budget of %.1f minutes reached", budget)
                    break
            log.info(self.throughput())
        finally:
            if writer is not None:
                writer.close()
        return self.last_metrics

    def throughput(self) -> str:
        """Images trained on per second of training: the run's clock without its evaluations (which
        spend the budget too), the figure that `detr benchmark budget` compares with a YOLO's
        (`training_seconds`)."""
        seconds = training_seconds(self.elapsed, self.eval_seconds)
        spent = f"{seconds / 60:.1f} minutes of training ({self.eval_seconds / 60:.1f} more evaluating)"
        if self.images is None:
            return f"trained {self.step} steps in {spent} (resumed from a run that did not count images)"
        rate = self.images / seconds if seconds > 0 else 0.0
        return f"trained on {self.images} images in {spent}: {rate:.1f} images a second"

    def _run_epoch(self, writer: SummaryWriter | None, started: float, budget: float | None) -> bool:
        """Train to the end of the epoch, or until the time budget runs out (returns True then)."""
        accumulate = self.config.train.accumulate_steps
        self.sampler.set_epoch(self.epoch, self.batches_done * self.config.train.batch_size)
        remaining = len(self.train_loader)
        bar = tqdm(total=self.steps_per_epoch, initial=math.ceil(self.batches_done / accumulate),
                   desc=f"epoch {self.epoch + 1}/{self.config.train.epochs or '-'}", disable=not self.progress, leave=False)
        self._clock_start = started if budget is not None else None
        group: list[tuple] = []
        for index, micro_batch in enumerate(self.train_loader):
            group.append(micro_batch)
            if len(group) < accumulate and index + 1 < remaining:
                continue
            losses = self._train_step(group)
            self.step += 1
            minutes = float(self._step_minutes) if budget is not None else 0.0
            message = self.scheduler.after_step(self.step, minutes)
            if message:
                log.info(message)
            if self.ema is not None and self.step == STEPS_BEFORE_ESTIMATE and self.scheduler.expected_steps:
                log.info(self.ema.fit_to_budget(self.scheduler.expected_steps))
            self.batches_done += len(group)
            if self.images is not None:
                self.images += sum(len(targets) for _, _, targets in group) * world_size()
            group = []
            bar.update()
            if self.step % 20 == 0:  # reading the losses waits for the device: only when logging
                values = {k: float(v) for k, v in losses.items()}
                bar.set_postfix(loss=f"{values['loss']:.3f}")
                record = {"step": self.step, "epoch": self.epoch, "lr": self.optimizer.param_groups[0]["lr"],
                          "minutes": (time.monotonic() - started) / 60, "images": self.images, **values}
                self._log(record, writer)
            if budget is not None and minutes > budget:
                bar.close()
                if self.batches_done >= self.batches_per_epoch:
                    self.epoch, self.batches_done = self.epoch + 1, 0
                return True
        bar.close()
        self.epoch, self.batches_done = self.epoch + 1, 0
        return False

    def _minutes_since(self, started: float) -> float:
        """This process's clock, read at the end of each step's backward; all processes then take
        rank 0's (GradientSync.finish), so that all drop the lr and stop at the same step."""
        return (time.monotonic() - started) / 60

    def _evaluate_and_keep_best(self, writer: SummaryWriter | None, started: float) -> None:
        report = self.evaluate()
        if report is None:  # not rank 0: the scores live there
            return
        stats, _, _ = report
        self.last_metrics = stats
        minutes = (time.monotonic() - started) / 60
        self._log({"step": self.step, "epoch": self.epoch, "minutes": minutes,
                   **{f"val_{k}": v for k, v in stats.items()}}, writer)
        log.info("epoch %d (%.1f min): AP %.3f AP50 %.3f; at score >= %g: %d of %d objects found, %d duplicate "
                 "boxes (%.0f%%), %d on nothing", self.epoch, minutes, stats["AP"], stats["AP50"], self.threshold,
                 stats["boxes_found"], stats["boxes_objects"], stats["boxes_duplicates"],
                 100 * stats["boxes_duplicate_rate"], stats["boxes_on_nothing"])
        if stats["AP"] > self.best_ap:
            self.best_ap = stats["AP"]
            self.save("best.pt")


def training_seconds(elapsed: float, eval_seconds: float) -> float:
    """A run's seconds of training: its clock (`elapsed`) without its evaluations. As a YOLO's
    clock is counted (Ultralytics with val=False), and the figure a user compares between runs
    that evaluate at different intervals."""
    return elapsed - eval_seconds


def _step_of(record: str) -> int | None:
    try:
        return json.loads(record)["step"]
    except (ValueError, KeyError, TypeError):  # a line cut short by the kill
        return None


def init_from(model: DETR, state: dict[str, torch.Tensor]) -> list[str]:
    """Load weights for fine-tuning, re-initialising the class head if its size differs.

    Returns the names of the tensors that were left at their fresh values.
    BatchNorm step counters that the source lacks (frozen-BN layouts) keep
    the model's own values.
    """
    own = model.state_dict()
    state = {**{n: t for n, t in own.items() if n.endswith("num_batches_tracked")}, **state}
    fresh = [n for n in ("class_embed.weight", "class_embed.bias")
             if n in state and state[n].shape != own[n].shape]
    kept = {n: t for n, t in state.items() if n not in fresh}
    mismatched = [f"{n} {tuple(t.shape)} vs {tuple(own[n].shape)}" for n, t in kept.items()
                  if n in own and t.shape != own[n].shape]
    if mismatched:
        raise TrainingError(f"weights do not fit this model: {', '.join(mismatched[:5])}")
    kept.update({n: own[n] for n in fresh})
    model.load_state_dict(kept)
    return fresh

