"""Weights from anywhere, in one call: `load_weights(source)`.

A source is a named model (detr_r50, detr_r50_dc5, detr_r101, detr_r101_dc5),
a local path, or a Hugging Face hub id (`facebook/detr-resnet-50`, or
`owner/name@revision`). A path may be in any of three layouts:

- ours: a checkpoint written by `detr train` (`{'model', 'config', ...}`), or
  a folder/file written by `write_ours` (model.safetensors + config.json);
- official: a facebookresearch/detr checkpoint (`{'model', 'args'}`);
- hf: a Hugging Face folder (config.json + model.safetensors or
  pytorch_model.bin).

Bare state dicts (torch or safetensors files) in any of the three tensor
namings are read too; their config comes from the tensors alone.

Files are read with `torch.load(weights_only=True)` (argparse.Namespace
allowed, for the official `args`) or safetensors; nothing in a file runs code.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from detr.config import ExperimentConfig
from detr.data.coco import Categories
from detr.weights.base import Hints, LoadedWeights, WeightsError, infer_model_config
from detr.engine.checkpoint import read_torch_file, write_atomic
from detr.weights.coco_names import numbered_categories
from detr.weights.hf_folder import CONFIG, SAFETENSORS, fetch_hub, read_hf, read_hf_state, read_json, write_hf
from detr.weights.named import NAMED_MODELS, named_for_file, resolve_named
from detr.weights.official import is_official_state, read_official, write_official

Layout = Literal["ours", "official", "hf"]
LAYOUTS: tuple[str, ...] = ("ours", "official", "hf")
OURS_FORMAT = "detr-weights"  # config.json key marking a folder written by write_ours
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")
_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".json", ".ckpt")
_NO_LAYOUT = ("matches no known weights layout: not a checkpoint of this project, an official DETR "
              "checkpoint, or a Hugging Face DETR folder")


def _state_naming(state: dict[str, Any]) -> Layout | None:
    """Which layout's tensor names a bare state dict uses."""
    if not state or not all(isinstance(t, torch.Tensor) for t in state.values()):
        return None
    if is_official_state(state):
        return "official"
    if any(n.startswith(("model.backbone.", "model.input_projection.", "class_labels_classifier.")) for n in state):
        return "hf"
    if any(n.startswith(("backbone.body.", "transformer.encoder_layers.")) for n in state):
        return "ours"
    return None


def _payload_layout(payload: Any) -> Layout | None:
    if not isinstance(payload, dict):
        return None
    state = payload.get("model")
    if isinstance(state, dict):
        return "ours" if isinstance(payload.get("config"), dict) else _state_naming(state)
    return _state_naming(payload)


def _folder_layout(folder: Path) -> Layout:
    if not (folder / CONFIG).is_file():
        raise WeightsError(f"{folder} is a folder without {CONFIG}: neither a Hugging Face DETR folder "
                           "nor one written by `detr convert --to ours`")
    config = read_json(folder / CONFIG)
    if OURS_FORMAT in config:
        return "ours"
    if config.get("model_type") == "detr":
        return "hf"
    raise WeightsError(f"{folder}: {CONFIG} describes model type {config.get('model_type')!r}, not DETR")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
        return load_file(path), metadata
    except Exception as error:  # noqa: BLE001 - a damaged file gets one clear line
        raise WeightsError(f"cannot read {path}: not a safetensors file ({error})") from None


def detect_layout(path: str | Path) -> Layout:
    """The layout of a local file or folder; a clear WeightsError when it matches none."""
    path = Path(path)
    if path.is_dir():
        return _folder_layout(path)
    if not path.is_file():
        raise WeightsError(f"no such file or folder: {path}")
    if path.suffix == ".safetensors":
        state, metadata = _read_safetensors(path)
        layout = "ours" if OURS_FORMAT in metadata else _state_naming(state)
    else:
        layout = _payload_layout(read_torch_file(path, WeightsError))
    if layout is None:
        raise WeightsError(f"{path} {_NO_LAYOUT}")
    return layout


def _from_bare_state(state: dict[str, torch.Tensor], naming: Layout, source: str,
                     dilation: bool | None) -> LoadedWeights:
    if naming == "official":
        return read_official(state, source, dilation)
    if naming == "hf":
        return read_hf_state(state, {}, source)
    model = infer_model_config(state, source, Hints())
    return LoadedWeights(ExperimentConfig(model=model), state, numbered_categories(model.num_classes))


def _ours(described: Any, state: dict[str, torch.Tensor], source: str) -> LoadedWeights:
    """Our weights from `described` = {'config': ..., 'categories': ... (optional)}."""
    if not isinstance(described, dict) or not isinstance(described.get("config"), dict):
        raise WeightsError(f"{source}: written by detr but holds no config")
    try:
        experiment = ExperimentConfig.from_dict(described["config"])
        categories = described.get("categories")
        names = Categories.from_dict(categories) if categories else numbered_categories(experiment.model.num_classes)
    except (ValueError, TypeError, KeyError) as error:
        raise WeightsError(f"{source}: its config does not fit this version of detr ({error})") from None
    return LoadedWeights(experiment, state, names)


def read_weights(path: str | Path, dilation: bool | None = None) -> LoadedWeights:
    """A local file or folder in any layout.

    `dilation` is used only for an official file without `args` (dilation
    does not show in the weights); by default a file carrying a published
    model's name (detr-r50-dc5-f0fb7ef5.pth) takes that model's setting.
    """
    path = Path(path)
    source = str(path)
    if path.is_dir():
        if _folder_layout(path) == "hf":
            weights = read_hf(path)
        else:
            described = read_json(path / CONFIG)[OURS_FORMAT]
            state, _ = _read_safetensors(path / SAFETENSORS)
            weights = _ours(described, state, source)
    elif not path.is_file():
        raise WeightsError(f"no such file or folder: {path}")
    elif path.suffix == ".safetensors":
        state, metadata = _read_safetensors(path)
        if OURS_FORMAT in metadata:
            weights = _ours(json.loads(metadata[OURS_FORMAT]), state, source)
        elif (naming := _state_naming(state)) is not None:
            weights = _from_bare_state(state, naming, source, dilation)
        else:
            raise WeightsError(f"{path} {_NO_LAYOUT}")
    else:
        payload = read_torch_file(path, WeightsError)
        layout = _payload_layout(payload)
        if layout is None:
            raise WeightsError(f"{path} {_NO_LAYOUT}")
        if layout == "ours" and isinstance(payload.get("config"), dict):
            # A run with EMA is evaluated and shipped with the averaged weights.
            state = payload["ema"]["model"] if isinstance(payload.get("ema"), dict) else payload["model"]
            weights = _ours(payload, state, source)
        elif layout == "official":
            if dilation is None and (named := named_for_file(path)) is not None:
                dilation = named.dilation
            weights = read_official(payload, source, dilation)
        else:
            state = payload["model"] if isinstance(payload.get("model"), dict) else payload
            weights = _from_bare_state(state, layout, source, dilation)
    # The file holds the backbone weights: building the model must not fetch ImageNet ones.
    weights.config.model.backbone.pretrained = False
    return weights


def load_weights(source: str | Path, cache_dir: str | Path | None = None) -> LoadedWeights:
    """(ExperimentConfig, state dict in our names, Categories) from a named model, a path or a hub id.

    `cache_dir` is where named models are downloaded (torch.hub's cache by default).
    """
    text = str(source)
    if text in NAMED_MODELS:
        return read_weights(resolve_named(text, cache_dir), dilation=NAMED_MODELS[text].dilation)
    path = Path(text).expanduser()
    if path.exists():
        return read_weights(path)
    if _HUB_ID.fullmatch(text) and not text.endswith(_FILE_SUFFIXES):
        repo_id, _, revision = text.partition("@")
        return read_hf(fetch_hub(repo_id, revision or None), source=text)
    raise WeightsError(f"no such file or folder: {text}; give a path, a named model "
                       f"({', '.join(NAMED_MODELS)}) or a Hugging Face hub id such as facebook/detr-resnet-50")


def write_ours(folder: str | Path, weights: LoadedWeights) -> Path:
    """model.safetensors + config.json (config and categories); the safetensors
    metadata repeats them, so the .safetensors file alone is enough to load."""
    folder = Path(folder)
    described = {"config": weights.config.to_dict(), "categories": weights.categories.to_dict()}
    tensors = {n: t.contiguous() for n, t in weights.state.items()}
    metadata = {"format": "pt", OURS_FORMAT: json.dumps(described)}
    write_atomic(folder / SAFETENSORS, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    text = json.dumps({OURS_FORMAT: described}, indent=2) + "\n"
    write_atomic(folder / CONFIG, lambda tmp: Path(tmp).write_text(text))
    return folder


def write_weights(weights: LoadedWeights, destination: str | Path, to: Layout) -> Path:
    """Write in a layout: 'ours' and 'hf' make a folder, 'official' one .pth file."""
    writers = {"ours": write_ours, "hf": write_hf, "official": write_official}
    if to not in writers:
        raise WeightsError(f"unknown layout {to!r}; choose one of {', '.join(LAYOUTS)}")
    destination = Path(destination)
    if to == "official" and destination.is_dir():
        raise WeightsError(f"{destination} is a folder; the official layout is one file, e.g. {destination}/model.pth")
    if to != "official" and destination.is_file():
        raise WeightsError(f"{destination} is a file; the {to} layout is a folder")
    if to != "ours":
        model = weights.config.model
        if model.queries != "learned":
            raise WeightsError(f"the {to} layout holds the paper's DETR only; this model uses anchor-box queries "
                               f"(model.queries={model.queries!r}): keep it in our layout (--to ours)")
        if not model.backbone.name.startswith("resnet"):
            raise WeightsError(f"the {to} layout holds ResNet backbones only; this model's is "
                               f"{model.backbone.name}: keep it in our layout (--to ours)")
        if model.backbone.width != 64:
            raise WeightsError(f"the {to} layout holds torchvision's ResNets only; this model's "
                               f"{model.backbone.name} is {model.backbone.width} channels wide, not 64: "
                               "keep it in our layout (--to ours)")
        weights = first_query_group(weights)
    return writers[to](destination, weights)


def first_query_group(weights: LoadedWeights) -> LoadedWeights:
    """Drop Group DETR's training-only query groups: inference uses the first alone, and
    the other layouts have no place for the rest."""
    model = weights.config.model
    if model.query_groups == 1:
        return weights
    config = copy.deepcopy(weights.config)
    config.model.query_groups = 1
    state = dict(weights.state)
    for name in ("queries.embed.weight", "queries.content.weight", "queries.anchor.weight"):
        if name in state:
            state[name] = state[name][: model.num_queries].clone()
    return LoadedWeights(config, state, weights.categories)


def convert(source: str | Path, destination: str | Path, to: Layout = "ours",
            cache_dir: str | Path | None = None) -> Path:
    """Read `source` (anything load_weights takes) and write it to `destination` in layout `to`."""
    return write_weights(load_weights(source, cache_dir), destination, to)

