"""`detr synth`: write one of the synthetic datasets."""

from __future__ import annotations

import argparse

from detr.config import DenseSynthConfig, GeneralSynthConfig, SynthConfig
from detr.data import synthetic_dense, synthetic_general
from detr.data.synthetic import write_dataset

KINDS = {
    "builtin": (SynthConfig, write_dataset),
    "general": (GeneralSynthConfig, synthetic_general.write_dataset),
    "dense": (DenseSynthConfig, synthetic_dense.write_dataset),
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    kinds = "\n".join(f"  {kind:8} {purpose}" for kind, purpose in (
        ("builtin", "square images of shapes whose colour follows the class, a quarter crowded;\n"
                    "           the dataset the presets were tuned on"),
        ("general", "5 shapes in any colour, varied non-square sizes, small objects, grey and JPEG\n"
                    "           files: does a recipe carry over to data it was not tuned on?"),
        ("dense", "2 classes, 15-40 small objects an image in rows and clusters overlapping at\n"
                  "           IoU 0.1-0.85: convergence where one-to-one matching is hardest")))
    parser = subparsers.add_parser("synth", help="write a synthetic dataset (default: the built-in one)",
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   description=f"kinds (recipes are chosen on builtin and reported on all three):"
                                               f"\n{kinds}")
    parser.add_argument("--kind", choices=list(KINDS), default="builtin", help="which dataset (see above)")
    parser.add_argument("--out", required=True)
    for flag, field in (("--train-images", "train_images"), ("--val-images", "val_images")):
        defaults = ", ".join(f"{kind} {getattr(config, field)}" for kind, (config, _) in KINDS.items())
        parser.add_argument(flag, type=int, help=f"default: the kind's ({defaults})")
    parser.add_argument("--seed", type=int, help=f"default {SynthConfig.seed}")
    parser.add_argument("--crowd", action="store_true", help="builtin only: every image crowded: rows of "
                                                              "same-class objects overlapping at IoU 0.1-0.85")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    if args.crowd and args.kind != "builtin":
        raise ValueError(f"--crowd is for --kind builtin; drop it (the {args.kind} kind has its own layout)")
    config_class, write = KINDS[args.kind]
    overrides = {name: value for name, value in (("train_images", args.train_images),
                                                 ("val_images", args.val_images), ("seed", args.seed))
                 if value is not None}
    if args.crowd:
        overrides["crowded_fraction"] = 1.0
    out = write(args.out, config_class(**overrides))
    print(f"{args.kind} dataset: {out}/train, {out}/val")
