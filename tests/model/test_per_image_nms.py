"""Per-image NMS against a brute-force greedy NMS, in PyTorch and through its ONNX graph."""

import onnxruntime as ort
import pytest
import torch

from detr.model.per_image_nms import per_image_nms


def _greedy_keep(corners: torch.Tensor, scores: torch.Tensor, iou: float) -> list[bool]:
    """One image: best first, a box survives unless a kept better one overlaps it above `iou`."""
    def overlap(a, b):
        width = (min(a[2], b[2]) - max(a[0], b[0])).clamp(min=0)
        height = (min(a[3], b[3]) - max(a[1], b[1])).clamp(min=0)
        inter = width * height
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return float(inter / union)

    keep = [False] * len(scores)
    for index in scores.argsort(descending=True).tolist():
        keep[index] = all(overlap(corners[index], corners[other]) <= iou for other, kept in enumerate(keep) if kept)
    return keep


def _clustered_boxes(batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes jittered around a few centres (many overlaps at every IoU), the same centres in
    every image: NMS must not let one image's boxes suppress another's."""
    centres = torch.rand(4, 2, generator=generator) * 0.6 + 0.2
    which = torch.randint(0, 4, (batch, length), generator=generator)
    middle = centres[which] + 0.03 * torch.randn(batch, length, 2, generator=generator)
    half = 0.05 + 0.05 * torch.rand(batch, length, 2, generator=generator)
    return torch.cat([middle - half, middle + half], -1), torch.rand(batch, length, generator=generator)


@pytest.mark.parametrize("iou", [0.3, 0.5, 0.7])
def test_keeps_what_greedy_nms_keeps_in_each_image_alone(iou):
    corners, scores = _clustered_boxes(3, 40, torch.Generator().manual_seed(1))
    keep = per_image_nms(corners, scores, iou)
    expected = torch.tensor([_greedy_keep(corners[b], scores[b], iou) for b in range(3)])
    assert torch.equal(keep, expected)
    assert 0 < expected.sum() < expected.numel()  # the case suppresses some boxes and keeps others


class _Wrapper(torch.nn.Module):
    def __init__(self, iou):
        super().__init__()
        self.iou = iou

    def forward(self, corners, scores):
        return per_image_nms(corners, scores, self.iou).to(torch.int64)


@pytest.mark.parametrize("iou", [0.4, 0.6])
def test_the_exported_graph_runs_nms_per_image_at_any_batch_and_length(tmp_path, iou):
    path = tmp_path / "nms.onnx"
    example = _clustered_boxes(2, 10, torch.Generator().manual_seed(2))
    torch.onnx.export(_Wrapper(iou), example, str(path), dynamo=False, opset_version=17,
                      input_names=["corners", "scores"], output_names=["keep"],
                      dynamic_axes={"corners": {0: "batch", 1: "boxes"}, "scores": {0: "batch", 1: "boxes"},
                                    "keep": {0: "batch", 1: "boxes"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, length in ((1, 30), (4, 50)):
        corners, scores = _clustered_boxes(batch, length, torch.Generator().manual_seed(batch))
        (keep,) = session.run(None, {"corners": corners.numpy(), "scores": scores.numpy()})
        expected = torch.tensor([_greedy_keep(corners[b], scores[b], iou) for b in range(batch)])
        assert torch.equal(torch.from_numpy(keep).bool(), expected)
