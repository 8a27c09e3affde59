import torch
from torchvision.ops import box_convert

from detr.model import build_model
from detr.model.denoising import noised_queries
from detr.model.encoded import EncodedImage
from detr.model.queries import DecoderQueries
from detr.model.transformer import AttentionMaps
from tests.conftest import tiny_model_config


def _targets():
    return [
        {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4]])},
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.2]])},
    ]


def test_without_noise_the_queries_are_the_targets_padded_per_image_and_group():
    queries = noised_queries(_targets(), groups=3, num_classes=3, box_noise=0.0, label_noise=0.0)
    assert queries.anchors.shape == (6, 2, 4) and queries.groups == 3
    assert queries.padding.tolist() == [[False, False]] * 3 + [[False, True]] * 3
    torch.testing.assert_close(queries.anchors[:3].sigmoid(), _targets()[0]["boxes"].expand(3, -1, -1),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(queries.anchors[3:, 0].sigmoid(), _targets()[1]["boxes"].expand(3, -1),
                               atol=1e-5, rtol=0)
    assert queries.labels[:3].tolist() == [[0, 2]] * 3


def test_box_noise_moves_each_corner_at_most_its_share_of_the_half_size():
    torch.manual_seed(0)
    target = [{"labels": torch.zeros(500, dtype=torch.int64), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.4]] * 500)}]
    queries = noised_queries(target, groups=1, num_classes=5, box_noise=0.4, label_noise=0.5)
    corners = box_convert(queries.anchors[0].sigmoid(), "cxcywh", "xyxy")
    original = torch.tensor([0.4, 0.3, 0.6, 0.7])
    shift = (corners - original).abs()
    bound = 0.4 * torch.tensor([0.1, 0.2, 0.1, 0.2])
    assert (shift <= bound + 1e-4).all() and (shift > bound / 2).any()
    flipped = (queries.labels[0] != 0).float().mean()  # a quarter are redrawn, 4/5 of those differ
    assert 0.12 < flipped < 0.28


def test_no_targets_no_denoising():
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    assert noised_queries(empty, groups=2, num_classes=3, box_noise=0.4, label_noise=0.2) is None


def test_matching_queries_never_see_the_denoising_queries():
    """DN-DETR's mask: the matching part's outputs are the same with or without denoising."""
    model = build_model(tiny_model_config(queries="anchors", denoising_groups=2)).train()
    images = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    with_dn = model(images, targets=_targets())
    torch.manual_seed(1)
    without = model(images)
    assert with_dn.denoising is not None and without.denoising is None
    most = max(len(t["labels"]) for t in _targets())  # each image's targets, padded to the most
    assert with_dn.denoising.logits.shape[1] == most
    torch.testing.assert_close(with_dn.logits, without.logits)
    torch.testing.assert_close(with_dn.boxes, without.boxes)


def test_a_denoising_query_sees_neither_padding_nor_other_groups_nor_other_images():
    """In the joint pass (matching queries, then both groups), a denoising query decodes as it does
    alone: decoded as a set of one on its own image, it gives the same box."""
    model = build_model(tiny_model_config(queries="anchors", denoising_groups=2)).train()
    images = torch.randn(2, 3, 64, 64)
    torch.manual_seed(3)
    joint = model(images, targets=_targets()).denoising
    torch.manual_seed(3)
    queries = noised_queries(_targets(), 2, 3, 0.4, 0.2)
    assert queries.padding[3].tolist() == [False, True]  # entry 3: image 1's second group, one pad
    encoded = model.encode(images, None, AttentionMaps([], [], []), False)
    alone = EncodedImage(encoded.memory[1:2], encoded.pos[1:2], None, [encoded.feature_masks[0][1:2]], encoded.shape)
    _, boxes = model.decoder(model.transformer, model.bbox_embed,
                             DecoderQueries(model.denoising.label_embed(queries.labels[3:4, :1]),
                                            queries.anchors[3:4, :1]), alone)
    torch.testing.assert_close(boxes[-1, 0, 0], joint.boxes[3, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(boxes[0, 0, 0], joint.aux[0].boxes[3, 0], atol=1e-5, rtol=0)
