import torch

from detr.postprocess import PostProcess


def _outputs():
    logits = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 3.0, 0.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1], [0.25, 0.75, 0.5, 0.5]]])
    return {"pred_logits": logits, "pred_boxes": boxes}


def test_scores_labels_and_pixel_boxes():
    result = PostProcess()(_outputs(), torch.tensor([[100, 200]]))[0]
    prob = _outputs()["pred_logits"][0].softmax(-1)[:, :2]
    expected_scores, expected_labels = prob.max(-1)
    order = expected_scores.argsort(descending=True)
    torch.testing.assert_close(result["scores"], expected_scores[order])
    assert result["labels"].tolist() == expected_labels[order].tolist()
    first = result["boxes"][(order == 0).nonzero()[0, 0]]
    # cx=0.5, w=0.2 of width 200; cy=0.5, h=0.4 of height 100
    torch.testing.assert_close(first, torch.tensor([80.0, 30.0, 120.0, 70.0]))


def test_threshold_and_top_k():
    sizes = torch.tensor([[100, 200]])
    scores = PostProcess()(_outputs(), sizes)[0]["scores"]
    kept = PostProcess(threshold=float(scores[1]))(_outputs(), sizes)[0]
    assert len(kept["scores"]) == 2
    assert len(PostProcess(top_k=1)(_outputs(), sizes)[0]["scores"]) == 1
