"""`detr visualize`: the gallery of figures for one image, as a subcommand of `detr`."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from detr.data.coco import DatasetError
from detr.data.sources import find_split
from detr.inference import Predictor
from detr.loss import HungarianMatcher
from detr.viz.gallery import write_gallery
from detr.viz.matching import load_ground_truth
from detr.weights import load_weights


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a point is x,y in image pixels, e.g. 120,80; got {text!r}") from None
    return x, y


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "visualize", help="figures of what the model sees (attention, queries, matching) as an HTML gallery")
    parser.add_argument("image", nargs="?", help="the image to explain (default: the first image of --dataset)")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", default="visualize", help="gallery folder")
    parser.add_argument("--layer", type=int, default=-1, help="encoder and decoder layer (-1: the last)")
    parser.add_argument("--per-head", action="store_true", help="one attention map per head, not the mean")
    parser.add_argument("--points", nargs="+", type=_point, metavar="X,Y",
                        help="pixels whose encoder attention to show (default: four chosen automatically)")
    parser.add_argument("--dataset", help="folder of images, or a dataset root with val/images, for the "
                                          "query-specialisation figure")
    parser.add_argument("--max-images", type=int, default=200, help="dataset images to run at most")
    parser.add_argument("--annotations", help="COCO json holding the image, for the matching figure "
                                              "(default: the dataset's val annotations, if it has them)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.set_defaults(run=run)
    return parser


def dataset_images(path: str | Path) -> tuple[list[Path], Path | None]:
    """The images of a folder, or of a dataset root's val split (with its annotation file)."""
    path = Path(path)
    try:
        split = find_split(path, "val")
        folder, annotations = split.images, split.annotations
    except DatasetError:
        folder, annotations = path, None
    if not folder.is_dir():
        raise DatasetError(f"dataset folder not found: {folder}")
    suffixes = set(Image.registered_extensions())
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
    if not images:
        raise DatasetError(f"no images found in {folder}")
    return images, annotations


def run(args: argparse.Namespace) -> None:
    images, annotations = dataset_images(args.dataset) if args.dataset else ([], None)
    if args.image is None and not images:
        raise ValueError("give an IMAGE to explain, or --dataset to take its first image")
    image = Path(args.image) if args.image else images[0]
    if not image.is_file():
        raise DatasetError(f"image not found: {image}")
    weights = load_weights(args.checkpoint)
    predictor = Predictor.from_weights(weights, args.device)

    ground_truth, matcher = None, None
    annotation_file = args.annotations or annotations
    if annotation_file is not None:
        try:
            ground_truth = load_ground_truth(annotation_file, image, predictor.categories)
        except DatasetError:
            if args.annotations:
                raise  # asked for explicitly: say why it cannot be used
        matcher = HungarianMatcher.from_config(weights.config.loss)

    index = write_gallery(predictor, image, args.out, layer=args.layer, per_head=args.per_head,
                          points=args.points, threshold=args.threshold,
                          dataset_images=images[: args.max_images] if images else None,
                          ground_truth=ground_truth, matcher=matcher, progress=len(images) > 1)
    print(f"gallery: {index}")
