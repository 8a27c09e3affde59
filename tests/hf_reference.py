"""Shared by the Hugging Face comparisons: randomising transformers' DETR and comparing outputs."""

import torch


def randomise_hf_(model):
    """Random values everywhere but the backbone convolutions (timm's init keeps
    activations finite): HF leaves some tensors at constants (zero biases, unit
    norms, constant object queries), and then a mis-mapped tensor would not show."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if name.startswith("model.backbone") and tensor.dim() > 1:
                continue
            noise = torch.rand(tensor.shape, generator=generator)
            if "query_position_embeddings" in name:
                tensor.normal_(generator=generator)  # nn.Embedding's own init
            elif "running_var" in name:
                tensor.copy_(0.5 + noise)
            elif tensor.dim() == 1 and ("norm" in name or name.startswith("model.backbone")):
                tensor.copy_(0.5 + noise) if name.endswith("weight") else tensor.copy_(noise - 0.5)
            elif tensor.dim() > 1:
                bound = (6 / sum(tensor.shape[:2])) ** 0.5
                tensor.copy_((2 * noise - 1) * bound)
            else:
                tensor.copy_((noise - 0.5) * 0.2)
    return model.eval()


def assert_same_outputs(ours, hf, single=(64, 96), padded=((96, 128), (64, 80)), tolerance=1e-4):
    """Max |difference| of logits and boxes within `tolerance`, for one image and for a
    padded batch of two sizes; also checks that the queries disagree (no degenerate pass)."""
    (height, width), (small_h, small_w) = padded
    batch = torch.zeros(2, 3, height, width)
    mask = torch.ones(2, height, width, dtype=torch.bool)
    batch[0], mask[0] = torch.randn(3, height, width), False
    batch[1, :, :small_h, :small_w], mask[1, :small_h, :small_w] = torch.randn(3, small_h, small_w), False
    for images, pad in ((torch.randn(1, 3, *single), None), (batch, mask)):
        with torch.no_grad():
            a = ours(images, pad)
            b = hf(pixel_values=images, pixel_mask=None if pad is None else (~pad).long())
        assert a.logits[0].std(0).max() > 10 * tolerance  # queries differ: a mis-mapped tensor would show
        logits = (a.logits - b.logits).abs().max().item()
        boxes = (a.boxes - b.pred_boxes).abs().max().item()
        assert logits <= tolerance and boxes <= tolerance, (logits, boxes)
