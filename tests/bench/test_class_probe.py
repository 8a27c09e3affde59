"""benchmarks/class_probe.py picks, for each object, the token whose cell holds its centre."""

import importlib.util
from pathlib import Path

import torch

from detr.config import preset
from detr.model import build_model

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "class_probe.py"


def _probe_module():
    spec = importlib.util.spec_from_file_location("class_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_centre_token_is_the_cell_holding_the_object_centre():
    config = preset("fast")
    config.model.num_classes = 3
    config.model.hidden_dim, config.model.feedforward_dim = 32, 64
    config.model.num_heads = 4
    config.model.num_queries = 8  # the forward pass selects queries among the 24-48 tokens
    model = build_model(config.model).eval()
    stride = model.stride
    # Image 0 fills 96x128 px; image 1 is 64x96 px, padded to the same canvas.
    images = torch.randn(2, 3, 96, 128)
    mask = torch.zeros(2, 96, 128, dtype=torch.bool)
    mask[1, 64:, :] = True
    mask[1, :, 96:] = True
    sizes = [(96, 128), (64, 96)]  # unpadded (height, width)
    centres = [[(20, 40), (100, 70)], [(50, 30)]]  # (x, y) pixels in each image
    targets = [{"boxes": torch.tensor([[x / w, y / h, 0.1, 0.1] for x, y in points]),
                "labels": torch.zeros(len(points), dtype=torch.long)}
               for points, (h, w) in zip(centres, sizes)]
    with torch.no_grad():
        logits, valid, nearest = _probe_module().centre_logits(model, images, mask, targets)
    columns = 128 // stride  # the padded canvas's token grid
    wanted = [int(y // stride) * columns + int(x // stride) for points in centres for x, y in points]
    assert nearest.tolist() == wanted
    assert logits.shape == (2, (96 // stride) * columns, 4)
    assert valid[1].sum() == (64 // stride) * (96 // stride)
