import torch
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from detr.model.outputs import DenoisingOutput, DETROutput, Predictions, TokenProposals


def _layer(value: float) -> Predictions:
    return Predictions(torch.full((1, 2, 3), value), torch.full((1, 2, 4), value))


def test_outputs_flatten_to_their_tensors_and_back_with_their_shapes_and_group_count():
    """What DDP, torch.compile and export do with the outputs: every tensor is a leaf, and the
    plain values (grids, the denoising group count) come back as they were."""
    out = DETROutput(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), [_layer(1.0)],
                     proposals=TokenProposals(torch.ones(1, 5, 3), torch.ones(1, 5, 4),
                                              torch.ones(1, 5, dtype=torch.bool), torch.ones(1, 5, 4)),
                     denoising=DenoisingOutput(torch.ones(2, 1, 3), torch.ones(2, 1, 4), [_layer(2.0)],
                                               torch.zeros(2, 1, dtype=torch.bool), groups=2),
                     feature_shape=(3, 4), fine_shape=(6, 8))
    leaves, spec = tree_flatten(out)
    tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
    assert len(tensors) == 2 + 2 + 4 + 2 + 2 + 1 and leaves.count(None) == 1  # no attention maps asked for
    back = tree_unflatten(leaves, spec)
    assert back.feature_shape == (3, 4) and back.fine_shape == (6, 8) and back.denoising.groups == 2
    doubled = tree_map(lambda leaf: None if leaf is None else leaf * 2, out)
    assert isinstance(doubled.aux[0], Predictions) and float(doubled.aux[0].logits.max()) == 2.0
    assert isinstance(doubled.proposals, TokenProposals) and doubled.attention is None
