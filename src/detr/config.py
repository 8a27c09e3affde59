"""Typed configuration: the one place where every default lives.

The rule: every config dataclass is declared here, whoever reads it: a
training run's `ExperimentConfig` (model + loss + data + training), a
command's experiment (`CrowdBenchmarkConfig`) and the dataset generators'
configs (`SynthConfig` and its kinds); the modules that use them only take
them as arguments. Presets are functions of nothing that return a full
config; the CLI only overrides fields of a preset, it never restates a default.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class BackboneConfig:
    name: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet50"
    dilation: bool = False  # DC5: dilate the last stage, stride 16 instead of 32
    # Frozen BatchNorm is right for ImageNet-initialised backbones (the paper);
    # a backbone trained from scratch needs live BatchNorm statistics.
    frozen_batchnorm: bool = True
    pretrained: bool = False  # torchvision ImageNet weights (downloaded once)
    # Small presets stop at layer2 (stride 8) or layer3 (stride 16) so that
    # small images keep enough tokens; the paper uses layer4.
    last_layer: Literal["layer2", "layer3", "layer4"] = "layer4"
    train_stem_and_layer1: bool = False


@dataclass
class ModelConfig:
    num_classes: int = 91  # real classes; the head has num_classes + 1 outputs
    num_queries: int = 100
    hidden_dim: int = 256
    num_heads: int = 8
    encoder_layers: int = 6
    decoder_layers: int = 6
    feedforward_dim: int = 2048
    dropout: float = 0.1
    pre_norm: bool = False
    position_encoding: Literal["sine", "learned"] = "sine"
    aux_loss: bool = True
    # Group DETR (Chen et al. 2022): in training only, this many independent
    # groups of num_queries queries, each matched one-to-one to the targets,
    # that do not attend to each other. More matched queries per image speed
    # up convergence; inference uses the first group alone (1 = the paper).
    query_groups: int = 1
    # Faster-converging variants; each off gives the paper's model exactly.
    # DAB-DETR / Deformable DETR: each query is a learned anchor box that every
    # decoder layer refines (a delta in inverse-sigmoid space); its positional
    # query is an MLP of the box's sine encoding, its content a learned vector.
    anchor_queries: bool = False
    # Two-stage query selection (Deformable DETR, DINO): every encoder token
    # proposes a box and a class; the top-scoring tokens give the initial
    # anchors (needs anchor_queries). The proposals get a set loss of their own.
    query_selection: bool = False
    # RT-DETR / Deformable DETR's two-stage: the selected tokens' features (detached) join the
    # queries' content (added to each query's learned vector), so the decoder starts from what
    # the encoder already knows of each object; False: the learned vector alone (DINO's mixed
    # query selection).
    selected_content: bool = False
    # DDQ-DETR's distinct queries: before the top tokens become queries, class-agnostic NMS at
    # this IoU over all tokens' proposals, so that neighbouring tokens of one object do not
    # fill several queries with the same box (the one-to-one decoder then has fewer near-twins
    # to tell apart). Suppressed tokens only fill places that the survivors leave. The output
    # stays one box per query with no NMS after the decoder. 0: plain top-k (DINO, RT-DETR).
    distinct_queries: float = 0.0
    # DN-DETR: in training, this many groups of noised ground-truth boxes and
    # labels decode as extra queries that learn to reconstruct the originals.
    # Each group rides as an extra batch entry, so neither the matching queries
    # nor the other groups can see it. Needs anchor_queries.
    denoising_groups: int = 0
    denoising_box_noise: float = 0.4  # corner shifts up to this share of the box's half size
    denoising_label_noise: float = 0.2  # half of these labels are flipped to a random class
    # Deformable DETR's decoder: "deformable" makes each query's cross-attention sample
    # deformable_points points per head on every level around its anchor box (needs
    # anchor_queries) instead of attending all the tokens; "full" = the paper.
    decoder_attention: Literal["full", "deformable"] = "full"
    deformable_points: int = 4
    # RT-DETR's cross-scale fusion, top-down: after the encoder (on the last stage alone, as
    # the paper), its output upsampled onto the stage before (stride 8 for layer3) and mixed
    # by convolutions; the decoder and query selection read both levels. A finer level for
    # small objects without attention over its tokens.
    fine_level: bool = False
    # How inference reads the outputs: 0 = each query's best class (the paper); N = each
    # image's N best (query, class) pairs (Deformable DETR, DINO; COCO scores 100 an image),
    # so that a query unsure of its class offers its box under the runner-up too. No NMS
    # either way; predictions at a threshold >= 0.5 are the same.
    class_pairs: int = 0
    backbone: BackboneConfig = field(default_factory=BackboneConfig)


@dataclass
class LossConfig:
    cost_class: float = 1.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    weight_ce: float = 1.0
    weight_bbox: float = 5.0
    weight_giou: float = 2.0
    eos_coef: float = 0.1  # weight of the no-object class in the cross-entropy
    # IoU-aware classification (in the spirit of varifocal loss, RT-DETR): a matched
    # query's target is its box's IoU on its class and the rest on no-object, so
    # scores rank boxes by localisation quality. False: the paper's one-hot target.
    iou_aware_classes: bool = False
    # Query selection's proposals (needs model.query_selection) learn as an NMS detector's
    # tokens do: every token inside an object learns it (FCOS's assignment, Co-DETR's auxiliary
    # head), so the tokens that choose the decoder's anchors learn from the first steps. The
    # decoder's queries stay one-to-one: inference needs no NMS either way. False: the proposals
    # are matched one-to-one, as Deformable DETR's two-stage.
    dense_proposals: bool = False
    # Dense proposals: a token learns an object when its cell's centre is inside the box and
    # within this many cells of the box's centre (FCOS: 1.5).
    dense_radius: float = 1.5


@dataclass
class DataConfig:
    # Short-side sizes for the random resize, the long-side cap, and the
    # resize + random-crop branch of the paper's train pipeline.
    train_scales: tuple[int, ...] = tuple(range(480, 801, 32))
    max_size: int = 1333
    crop_resize_scales: tuple[int, ...] = (400, 500, 600)
    crop_min: int = 384
    crop_max: int = 600
    # Share of training images that take the resize + crop branch (the paper: one in two).
    # A run that sees each image once or twice gains nothing from it but a harder task.
    crop_probability: float = 0.5
    val_scale: int = 800
    horizontal_flip: bool = True


@dataclass
class TrainConfig:
    lr: float = 1e-4
    lr_backbone: float = 1e-5
    weight_decay: float = 1e-4
    clip_max_norm: float = 0.1
    epochs: int | None = 300  # None: until the time budget runs out
    lr_drop_epoch: int = 200  # step decay x0.1 at this epoch
    warmup_steps: int = 0
    batch_size: int = 2
    num_workers: int = 2
    seed: int = 42
    eval_every: int = 1  # epochs
    time_budget_minutes: float | None = None
    # With a time budget: drop the lr x0.1 once this share of the budget has
    # passed (or at lr_drop_epoch, if that comes first), so a short run still gets its decay.
    lr_drop_fraction: float = 0.85
    freeze_backbone: bool = False  # fine-tuning on little data: train the transformer and heads only
    # Micro-batches per optimiser step: the step equals one batch of
    # batch_size x accumulate_steps (x processes), live BatchNorm statistics aside.
    accumulate_steps: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast on CUDA; losses and matching stay fp32
    compile: bool = False  # torch.compile the model (CUDA; recompiles for new image sizes)
    # Evaluate and export an exponential moving average of the weights (decay
    # ramped up over the first steps, as in YOLOv5 and RT-DETR); None: off.
    ema_decay: float | None = None
    ema_warmup_steps: int = 1000


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """Refuse settings across sections that would silently do nothing (the model refuses its own)."""
        if self.loss.dense_proposals and not self.model.query_selection:
            raise ValueError("loss.dense_proposals trains query selection's proposals, which this model does not "
                             "have: set model.query_selection=True (and model.anchor_queries=True) or "
                             "loss.dense_proposals=False")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        return _build(cls, values)


# `detr train`'s preset when none is named: the one that converged fastest at a CPU budget
# on data it was not chosen on (BENCHMARKS.md); the paper's models stay presets beside it.
DEFAULT_PRESET = "fast_fine"


@dataclass(frozen=True)
class CrowdBenchmarkConfig:
    """`detr crowd --train`: DETR against an NMS detector on crowded images, same budget."""

    minutes: float = 12.0  # wall-clock training time of each detector
    train_images: int = 4000  # of the built-in crowd data (ignored with --data)
    val_images: int = 1000  # hundreds of objects in every overlap bin
    detr_preset: str = DEFAULT_PRESET
    lr_drop_fraction: float = 0.85  # both detectors drop their lr x0.1 here
    peer_lr: float = 0.01
    peer_batch_size: int = 4
    detr_nms_iou: float = 0.45  # YOLOv5's default, the setting that motivates the benchmark
    figure_images: int = 3
    seed: int = 0


@dataclass(frozen=True)
class SynthConfig:
    """The built-in dataset (`detr synth --kind builtin`, data/synthetic.py)."""

    image_size: int = 128
    train_images: int = 4000
    val_images: int = 300
    min_objects: int = 1
    max_objects: int = 6
    min_size: int = 14
    max_size: int = 48
    crowded_fraction: float = 0.25
    seed: int = 0


@dataclass(frozen=True)
class GeneralSynthConfig:
    """`detr synth --kind general` (data/synthetic_general.py)."""

    train_images: int = 2000
    val_images: int = 200
    min_side: int = 160  # width and height are drawn independently from min_side..max_side
    max_side: int = 256
    min_objects: int = 1
    max_objects: int = 8
    min_size: int = 12
    max_size: int = 64
    max_iou: float = 0.5  # objects may overlap, at most this much
    grey_fraction: float = 0.2
    jpeg_fraction: float = 0.3
    min_jpeg_quality: int = 60
    max_jpeg_quality: int = 90
    seed: int = 0


@dataclass(frozen=True)
class DenseSynthConfig:
    """`detr synth --kind dense` (data/synthetic_dense.py)."""

    train_images: int = 1000
    val_images: int = 200
    min_side: int = 192  # width and height are drawn independently from min_side..max_side
    max_side: int = 256
    min_objects: int = 15
    max_objects: int = 40
    min_size: int = 8
    max_size: int = 24
    min_iou: float = 0.1  # IoU of neighbours in a row or cluster
    max_iou: float = 0.85
    seed: int = 0


def crowd_quick() -> CrowdBenchmarkConfig:
    """A smoke test in seconds: tiny data, a few steps of each detector."""
    return CrowdBenchmarkConfig(minutes=0.05, train_images=16, val_images=8, figure_images=1)


def apply_settings(config: ExperimentConfig, settings: list[str]) -> ExperimentConfig:
    """Override fields by dotted name, e.g. ["model.query_groups=1", "data.train_scales=(96, 128)"].

    Values are read as Python literals (numbers, booleans, None, tuples) or,
    failing that, as strings; an unknown field is an error naming it.
    """
    for item in settings:
        key, separator, text = item.partition("=")
        if not separator:
            raise ValueError(f"a setting looks like section.field=value, not {item!r}")
        *path, name = key.strip().split(".")
        target = config
        for part in path:
            if not dataclasses.is_dataclass(target) or not hasattr(target, part):
                raise ValueError(f"unknown setting {key!r}")
            target = getattr(target, part)
        if not dataclasses.is_dataclass(target) or name not in {f.name for f in dataclasses.fields(target)}:
            raise ValueError(f"unknown setting {key!r}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            raise ValueError(f"{key!r} is a section; set its fields, e.g. {key}.name=...")
        if isinstance(current, bool) and not isinstance(value, bool):
            if str(value).lower() not in ("true", "false"):
                raise ValueError(f"{key} is True or False, not {text.strip()!r}")
            value = str(value).lower() == "true"
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        setattr(target, name, value)
    return config


# Fields that variants which lost their benchmarks used to have, with the value that meant "off".
# Checkpoints keep their whole config, so older ones still name them: at that value they are
# dropped on reading; at any other the checkpoint needs the removed variant, which is refused.
REMOVED_FIELDS: dict[str, dict[str, Any]] = {
    "ModelConfig": {"look_forward_twice": False, "denoising_negatives": False, "positive_queries": 0,
                    "dense_head": False, "encoder_attention": "full", "feature_levels": 1,
                    "sigmoid_classes": False},
    "LossConfig": {"proposal_matches": 1},
    "TrainConfig": {"lr_decay": "step"},
}


def _build(kind: type, values: dict[str, Any]) -> Any:
    """Rebuild a (nested) dataclass from plain values, refusing unknown keys."""
    values = dict(values)
    for name, off in REMOVED_FIELDS.get(kind.__name__, {}).items():
        if name in values and (value := values.pop(name)) != off:
            raise ValueError(f"{kind.__name__}.{name}={value!r} is a removed setting (only its off value, {off!r}, "
                             "is read now): this config or checkpoint needs an older version of detr")
    known = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(kind(), name)
        if dataclasses.is_dataclass(default):
            value = _build(type(default), value)
        elif isinstance(default, tuple):
            value = tuple(value)
        kwargs[name] = value
    return kind(**kwargs)


def _paper(backbone: str, dilation: bool) -> ExperimentConfig:
    config = ExperimentConfig()
    config.model.backbone = BackboneConfig(name=backbone, dilation=dilation, pretrained=True)
    return config


def small_cpu() -> ExperimentConfig:
    """A DETR that learns the built-in dataset on a laptop CPU in minutes.

    Same architecture as the paper, scaled down: ResNet-18 cut at layer3 and
    trained from scratch (live BatchNorm), a 3+3-layer transformer of width
    128, 12 queries (the built-in images hold at most 6 objects), 128-pixel
    images, small batches (more updates per CPU-minute) and learning rates
    for a random-init backbone; in training, 4 groups of queries (Group DETR),
    which inference does not see. Measured choices: see
    benchmarks/convergence.py and BENCHMARKS.md.
    """
    return ExperimentConfig(
        model=ModelConfig(
            num_classes=4,
            num_queries=12,
            hidden_dim=128,
            num_heads=8,
            encoder_layers=3,
            decoder_layers=3,
            feedforward_dim=512,
            dropout=0.0,
            query_groups=4,  # Group DETR in training: AP 0.283 -> 0.309 in 8.8 CPU-minutes
            backbone=BackboneConfig(
                name="resnet18",
                frozen_batchnorm=False,
                last_layer="layer3",
                train_stem_and_layer1=True,
            ),
        ),
        data=DataConfig(
            train_scales=(112, 128, 144),
            max_size=256,
            crop_resize_scales=(112, 128, 144),
            crop_min=96,
            crop_max=128,
            val_scale=128,
        ),
        train=TrainConfig(
            lr=2e-4,
            lr_backbone=1e-3,
            weight_decay=1e-4,
            clip_max_norm=1.0,
            epochs=5,  # about 9 minutes on 2 CPU cores
            lr_drop_epoch=4,
            warmup_steps=300,
            batch_size=4,
            num_workers=0,  # 128-px images load in ~1 ms: a worker process only competes for the cores
            eval_every=2,
        ),
    )


def fast_cpu() -> ExperimentConfig:
    """The small preset with the faster-converging variants: anchor-box queries refined
    layer by layer, two-stage query selection whose proposals learn densely (every token
    inside an object), that hands the decoder distinct tokens (NMS over the proposals, as
    DDQ-DETR) and their features, denoising queries, IoU-aware class targets and EMA weights;
    inference ranks (query, class) pairs, as Deformable DETR and DINO do. No NMS on the
    output. Chosen on `detr synth --kind general` data, reported on the others (BENCHMARKS.md)."""
    config = small_cpu()
    config.model.anchor_queries = True
    config.model.query_selection = True
    config.model.selected_content = True
    config.loss.dense_proposals = True
    config.model.denoising_groups = 2
    config.loss.iou_aware_classes = True
    config.train.ema_decay = 0.999
    config.model.class_pairs = 100
    # DDQ-DETR's distinct queries: NMS at IoU 0.5 among the encoder's proposals before they become
    # queries, so that two queries rarely start from anchors on one object.
    config.model.distinct_queries = 0.5
    # Each query starts as one of the encoder's best tokens, so more queries cover more objects
    # at little cost. `detr train` keeps them within the smallest training input's tokens.
    config.model.num_queries = 64
    return config


def fast_fine_cpu() -> ExperimentConfig:
    """The default: `fast` with RT-DETR's top-down fusion, which gives the decoder and query
    selection a stride-8 level beside the encoder's stride 16, and Deformable DETR's decoder, whose
    queries sample a few points around their boxes on both levels; one query group instead of four
    buys back most of the steps the fine level costs. Its results are in BENCHMARKS.md."""
    config = fast_cpu()
    config.model.fine_level = True
    config.model.query_groups = 1
    # Deformable DETR's decoder: each query reads a few points around its box on both levels instead
    # of attending every token (cheaper steps, and boxes that read around themselves).
    config.model.decoder_attention = "deformable"
    return config


PRESETS = {
    "detr_r50": lambda: _paper("resnet50", dilation=False),
    "detr_r50_dc5": lambda: _paper("resnet50", dilation=True),
    "detr_r101": lambda: _paper("resnet101", dilation=False),
    "detr_r101_dc5": lambda: _paper("resnet101", dilation=True),
    "small": small_cpu,
    "fast": fast_cpu,
    "fast_fine": fast_fine_cpu,
}


def preset(name: str) -> ExperimentConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
