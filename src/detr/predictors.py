"""Which predictor runs which file: `detr.load(source)`.

Its own room so that the PyTorch predictor (inference.py) and the onnxruntime one
(export/runtime.py, which builds on it) import in one direction only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from detr.inference import Predictor


def load(source: str | Path, device: str | torch.device | None = None, **options) -> Predictor:
    """A Predictor from a `detr train` checkpoint, a named model ("detr_r50", ...),
    an official or Hugging Face checkpoint, or a hub id ("facebook/detr-resnet-50").
    `options`: precision ("fp32" or "bf16"), compile (bool).
    A `.onnx` file from `detr export` runs in onnxruntime on the CPU (`options`: threads)."""
    if Path(source).suffix == ".onnx":
        from detr.export.runtime import OnnxPredictor  # onnxruntime is an optional extra

        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"ONNX models run on the CPU here, not {device}")
        return OnnxPredictor(source, **options)
    return Predictor.from_checkpoint(source, device, **options)
