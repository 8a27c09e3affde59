"""A Predictor that runs an exported ONNX file in onnxruntime: `detr.load("model.onnx")`.

Everything but the network is Predictor's own: the same image reading, resize,
normalisation, padding and post-processing.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from detr.config import ExperimentConfig
from detr.data.coco import Categories
from detr.data.transforms import val_transforms
from detr.export.onnx_file import METADATA_KEY
from detr.export.optional import optional_module
from detr.inference import Predictor
from detr.model.class_scoring import ClassScoring
from detr.model.outputs import Predictions
from detr.postprocess import PostProcess
from detr.weights import WeightsError


def session_options(ort, threads: int | None = None):
    """onnxruntime's options for a DETR graph: `threads` (default PyTorch's count), denormals
    read and written as zero, and threads that sleep between calls.

    The padding mask sends the scores of padded tokens to -inf, and the softmax's exponentials
    of scores far below the maximum are denormal numbers, on which the CPU is many times slower:
    at one padded token in three the encoder's Softmax took 3.4x as long. Zero in their place
    changes no output above 1e-38. Spinning threads held the cores that PyTorch's resize,
    padding and post-processing of the next call needed: a call of one image took 1.3x as long."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxPredictor(Predictor):
    """Predictor over an onnxruntime session on the CPU. `forward(images, mask)` gives the
    model's outputs dict (pred_logits, pred_boxes) for a graph exported without --postprocess.
    `threads` defaults to PyTorch's count, so that OMP_NUM_THREADS and torch.set_num_threads
    bound both runtimes (onnxruntime alone would take a thread per core whatever they say)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = optional_module("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"no such ONNX file: {path}")
        try:
            self.session = ort.InferenceSession(str(path), session_options(ort, threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise WeightsError(f"cannot read {path} as an ONNX model: {str(error).splitlines()[0]}") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in metadata:
            raise WeightsError(f"{path} is an ONNX file without DETR's metadata; write it with `detr export`")
        info = json.loads(metadata[METADATA_KEY])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.model = None  # no PyTorch module: the graph is the model
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.config = ExperimentConfig.from_dict(info["config"])
        self.categories = Categories.from_dict(info["categories"])
        # The graph scores the classes itself (exported with the model's rule); this says which rule.
        self.scoring = ClassScoring(self.config.model.class_pairs)
        self.data = self.config.data
        self.transforms = val_transforms(self.config.data)

    def _run(self, images: torch.Tensor, mask: torch.Tensor | None, sizes: torch.Tensor | None = None
             ) -> list[torch.Tensor]:
        if mask is None:  # no padding, as the PyTorch model reads None
            mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool)
        feeds = {"images": images.float().numpy(), "mask": mask.numpy(), "image_sizes": None}
        if "mask" not in self.inputs and mask.any():
            raise ValueError("this ONNX graph was exported with --mask none, so it cannot take padded batches "
                             "of differently sized images; predict one image at a time or export with the mask")
        if "image_sizes" in self.inputs:
            feeds["image_sizes"] = sizes.numpy()
        outputs = self.session.run(None, {name: feeds[name] for name in self.inputs})
        return [torch.from_numpy(o) for o in outputs]

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None) -> Predictions:
        if "image_sizes" in self.inputs:
            raise ValueError("this ONNX graph was exported with --postprocess: it gives detections, "
                             "not the model's outputs")
        logits, boxes = self._run(images, mask)
        return Predictions(logits, boxes)

    def _detect(self, batch: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor,
                threshold: float) -> list[dict[str, torch.Tensor]]:
        if "image_sizes" not in self.inputs:
            return super()._detect(batch, mask, sizes, threshold)
        return PostProcess(threshold=threshold).select(*self._run(batch, mask, sizes))
