"""bf16 autocast: it reaches the model, and on the paper's model each query's outputs stay
within what bf16's rounding explains."""

import contextlib

import pytest
import torch

from detr.config import preset
from detr.model import DETR, build_model
from detr.precision import autocast, native_bf16


@contextlib.contextmanager
def model_forwards_seen():
    """What every DETR forward in this process runs under: the autocast dtype on the model's
    device (None: off), the dtype of its logits and the dtypes of its weights."""
    seen = []
    original = DETR.forward

    def watching(self, *args, **kwargs):
        device = next(self.parameters()).device.type
        out = original(self, *args, **kwargs)
        seen.append({"autocast": torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None,
                     "logits": out.logits.dtype, "weights": {p.dtype for p in self.parameters()}})
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DETR, "forward", watching)
        yield seen


def test_the_autocast_helper_runs_the_model_in_bf16_and_keeps_its_weights_fp32():
    model = build_model(preset("small").model).eval()
    images = torch.randn(1, 3, 64, 64)
    with model_forwards_seen() as seen, torch.no_grad():
        for precision in ("fp32", "bf16"):
            with autocast(torch.device("cpu"), precision):
                model(images)
    assert seen == [{"autocast": None, "logits": torch.float32, "weights": {torch.float32}},
                    {"autocast": torch.bfloat16, "logits": torch.bfloat16, "weights": {torch.float32}}]


# bf16 keeps 8 significant bits: each rounding is off by at most u = 2^-8 of the value.
UNIT_ROUNDOFF = torch.finfo(torch.bfloat16).eps / 2
# Between the pixels and a head, the small preset runs about 60 matrix products one after another
# (ResNet-18 to layer3 is 13 convolutions deep, the input projection, 3 encoder layers of 6: q/k/v,
# scores, weights x values, output, 2 FFN; 3 decoder layers of 10; the head), and autocast rounds
# the inputs and the output of each to bf16: n ~ 120 roundings; LayerNorm and softmax run in fp32
# and amplify nothing. Independent roundings add like a random walk, so an output is
# off by about sqrt(n) u ~ 11u times the size of its product terms, R = sqrt(sum_i (w_i x_i)^2 + b^2),
# taken per output from the fp32 run (not the output itself, which cancellation can make small).
# Allowed: 16 u R, the next power of two. Summing the roundings' worst cases instead (n u sum |w_i x_i|)
# would also pass a rounding 16 times coarser than bf16's (fp8's 4 significant bits); this does not.
ROUNDINGS_ALLOWED = 16


def _product_sizes(layer: torch.nn.Linear, sizes: list) -> torch.utils.hooks.RemovableHandle:
    """Appends R = sqrt(sum_i (w_i x_i)^2 + b^2) of each of `layer`'s outputs to `sizes` at its next calls."""
    def hook(module, inputs, output):
        sizes.append((inputs[0].float().square() @ module.weight.square().T + module.bias.square()).sqrt())
    return layer.register_forward_hook(hook)


@pytest.mark.parametrize("tiles", [True, False])
def test_native_bf16_is_a_cpu_with_amx_tiles(tiles, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: tiles)
    assert native_bf16(torch.device("cpu")) is tiles and native_bf16(torch.device("cuda")) is False
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # torch's probe is private: gone means no
    assert native_bf16(torch.device("cpu")) is False


def test_bf16_keeps_each_query_of_the_papers_model_within_its_rounding_of_fp32():
    """The small preset's model (the paper's: learned queries, one box and class per query, no top-k
    or NMS that could turn a rounding into another box) in fp32 and under bf16 autocast, on the same
    padded batch: every decoder layer's logits and boxes, query by query, within the bound above."""
    config = preset("small").model
    assert config.queries == "learned" and not config.class_pairs  # no discrete step
    model = build_model(config).eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 128, 160, generator=generator)
    mask = torch.zeros(2, 128, 160, dtype=torch.bool)
    mask[1, :, 128:] = True  # the second image is narrower: padding on its right

    def every_layer(out, key):
        return torch.stack([getattr(layer, key) for layer in [*out.aux, out]]).float()

    logit_sizes, box_sizes = [], []
    hooks = [_product_sizes(model.class_embed, logit_sizes), _product_sizes(model.bbox_embed.layers[-1], box_sizes)]
    with torch.no_grad():
        exact = model(images, mask)
        for hook in hooks:
            hook.remove()
        with autocast(torch.device("cpu"), "bf16"):
            rounded = model(images, mask)
    assert rounded.logits.dtype == torch.bfloat16  # autocast ran

    logits, logits_bf16 = every_layer(exact, "logits"), every_layer(rounded, "logits")
    assert logits.shape == logit_sizes[0].shape  # [layers, images, queries, classes + 1]
    roundings = (logits_bf16 - logits).abs() / (UNIT_ROUNDOFF * logit_sizes[0])
    assert roundings.max() <= ROUNDINGS_ALLOWED, f"a logit off by {roundings.max():.1f} u R"  # NaN fails too
    # The sigmoid's slope is at most 1/4; the box itself is then rounded to bf16 once more.
    boxes, boxes_bf16 = every_layer(exact, "boxes"), every_layer(rounded, "boxes")
    roundings = ((boxes_bf16 - boxes).abs() - UNIT_ROUNDOFF * boxes) / (UNIT_ROUNDOFF * box_sizes[0] / 4)
    assert roundings.max() <= ROUNDINGS_ALLOWED, f"a box off by {roundings.max():.1f} u R / 4 past its own rounding"
    assert not torch.equal(logits, logits_bf16)
