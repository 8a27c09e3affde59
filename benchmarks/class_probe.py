"""Diagnostic: how fast the model's features learn the classes, with detection taken away.

    python benchmarks/class_probe.py data/general --steps 300 --crop 0.5 0.0

Trains the `fast` preset's feature path (backbone, input projection, encoder and the
token heads' class branch, read from the model's own forward pass), fitted to the data as `detr train` fits it, with the
detector's optimiser, on one loss: each training object's class at the token whose
cell is nearest its centre, every other token no-object (softmax with the preset's
no-object weight, as the token heads learn). Every --every steps it prints the share of
val objects whose centre token names the right class among the real ones (chance:
1 / classes). One run per --crop value (the share of training images that take the
resize + crop branch; the rest of the training pipeline is `detr train`'s, or with
--fixed-scale, no random resize).

A probe, not a product path: it says whether slow classification in a detector run is
the features' pace or the detection losses', and what the data pipeline costs.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from detr.config import ExperimentConfig, preset
from detr.data.collate import collate
from detr.data.fit import dataset_stats, fit_to_data
from detr.data.sources import build_datasets, eval_loader, find_split, validated_split
from detr.engine.optim import build_optimizer
from detr.model import build_model


def centre_logits(model, images: torch.Tensor, mask: torch.Tensor, targets: list[dict]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All tokens' class logits [B, L, K+1] (query selection's proposals, as the model
    computes them in training), their validity [B, L], and the index of the token nearest
    each object's centre, per object in the batch's order [T]. In eval mode the top level
    is switched to training for the call, so that the proposals come out while BatchNorm
    stays in eval (as benchmarks/token_head_ap.py reads them)."""
    evaluating = not model.training
    model.training = True
    try:
        tokens = model(images, mask)["enc_outputs"]
    finally:
        model.training = not evaluating
    logits, valid, cells = tokens["pred_logits"], tokens["valid"], tokens["cells"]
    nearest = []
    for i, target in enumerate(targets):
        distance = torch.cdist(target["boxes"][:, :2], cells[i, :, :2])
        nearest.append(distance.masked_fill(~valid[i], float("inf")).argmin(1))
    return logits, valid, torch.cat(nearest) if nearest else torch.zeros(0, dtype=torch.long)


def probe(config: ExperimentConfig, data: str, steps: int, every: int, seed: int) -> list[tuple[int, float]]:
    torch.manual_seed(seed)
    train_split, val_split = find_split(data, "train"), find_split(data, "val")
    train_set, val_set = build_datasets(config.data, train_split, val_split)
    config.model.num_classes = len(train_set.categories.ids)
    model = build_model(config.model)
    optimizer = build_optimizer(model, config.train, torch.device("cpu"))
    loader = DataLoader(train_set, batch_size=config.train.batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed))
    weight = torch.ones(config.model.num_classes + 1)
    weight[-1] = config.loss.eos_coef
    curve, step = [], 0
    while step < steps:
        for images, mask, targets in loader:
            model.train()
            logits, valid, nearest = centre_logits(model, images, mask, targets)
            wanted = torch.full(valid.shape, config.model.num_classes, dtype=torch.long)
            owner = torch.cat([torch.full((len(t["labels"]),), i) for i, t in enumerate(targets)])
            wanted[owner, nearest] = torch.cat([t["labels"] for t in targets])
            per_token = F.cross_entropy(logits.transpose(1, 2), wanted, weight, reduction="none") * valid
            loss = per_token.sum() / (weight[wanted] * valid).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % every == 0:
                curve.append((step, accuracy(model, val_set)))
                print(f"  step {step}: val accuracy {curve[-1][1]:.3f}", flush=True)
            if step == steps:
                break
    return curve


@torch.no_grad()
def accuracy(model, val_set) -> float:
    model.eval()
    right = total = 0
    for images, mask, targets in eval_loader(val_set, 8, 0):
        logits, _, nearest = centre_logits(model, images, mask, targets)
        owner = torch.cat([torch.full((len(t["labels"]),), i) for i, t in enumerate(targets)])
        named = logits[owner, nearest][:, :-1].argmax(-1)
        right += int((named == torch.cat([t["labels"] for t in targets])).sum())
        total += len(owner)
    return right / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="dataset folder with train/ and val/ splits")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--crop", type=float, nargs="+", default=[0.5, 0.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fixed-scale", action="store_true",
                        help="train at the val scale alone (no random resize between the train scales)")
    args = parser.parse_args()
    rows = {}
    for crop in args.crop:
        config = preset("fast")
        fit_to_data(config, dataset_stats(validated_split(find_split(args.data, "train")).records))
        config.data.crop_probability = crop
        if args.fixed_scale:
            config.data.train_scales = (config.data.val_scale,)
        print(f"crop branch p={crop}, train scales {config.data.train_scales}", flush=True)
        started = time.perf_counter()
        rows[crop] = (probe(config, args.data, args.steps, args.every, args.seed), time.perf_counter() - started)
    steps = [step for step, _ in next(iter(rows.values()))[0]]
    print("\n| crop branch | " + " | ".join(f"step {s}" for s in steps) + " | seconds |")
    print("|---|" + "---:|" * (len(steps) + 1))
    for crop, (curve, seconds) in rows.items():
        print(f"| p={crop} | " + " | ".join(f"{value:.3f}" for _, value in curve) + f" | {seconds:.0f} |")


if __name__ == "__main__":
    main()
