"""Presets: functions of nothing that each return a full training config.

The paper's models at four backbones, and small ones that learn on a CPU in minutes.
"""

from __future__ import annotations

from detr.config.schema import BackboneConfig, DataConfig, ExperimentConfig, ModelConfig, TrainConfig

# `detr train`'s preset when none is named: the one that converged fastest at a CPU budget
# on data it was not chosen on (BENCHMARKS.md); the paper's models stay presets beside it.
DEFAULT_PRESET = "fast_fine"


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
            query_groups=4,  # Group DETR: more matched queries per image in training, none at inference
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
    config.model.queries = "selected"
    config.model.selected_content = True
    config.loss.dense_proposals = True
    config.model.denoising_groups = 2
    config.loss.iou_aware_classes = True
    config.train.ema_decay = 0.999
    config.model.class_pairs = 100
    # DDQ-DETR's distinct queries: neighbouring tokens of one object would otherwise become several
    # anchors at IoU > 0.5, and the decoder would list several boxes for that object.
    config.model.distinct_queries = 0.5
    # Each query starts as one of the encoder's best tokens, so more queries cover more objects
    # at little cost. `detr train` keeps them within the smallest training input's tokens.
    config.model.num_queries = 64
    return config


def fast_fine_cpu() -> ExperimentConfig:
    """The default: `fast` with RT-DETR's top-down fusion (the encoder's output upsampled and added
    to the projected stride-8 stage), which gives the decoder and query selection a stride-8
    level beside the encoder's stride 16, and Deformable DETR's decoder, whose
    queries sample a few points around their boxes on both levels; one query group instead of four
    buys back most of the steps the fine level costs. It needs distinct queries: the finer
    level's neighbouring tokens would otherwise crowd onto one object, and hard negatives keep
    second boxes on found objects from scoring. Sized for the budget: a ResNet 24 channels
    wide after a stem of two 3x3 convolutions (torchvision's: 64 after a 7x7 convolution and a
    max-pool) with one block a stage (ResNet-18's: two), a
    transformer 96 wide with one encoder and two decoder layers. With two blocks a stage, three
    decoder layers and the fine level's mix, that size made 1.5x the
    images in a budget of a 32-wide ResNet-18 with a 128-wide, 3-encoder-layer transformer, and
    the same AP in 10 minutes on general (two seeds), more on dense and the built-in set (a
    16-wide ResNet with a 64-wide transformer made 1.9x the steps and lost 0.06 AP).
    Batches of 2: a step costs about half a step of 4, so a budget holds twice the updates for
    about as many images, and at these budgets AP follows the updates; on a CPU of two or more
    cores, two processes train on a batch of 2 each. Results: BENCHMARKS.md."""
    config = fast_cpu()
    config.model.backbone.width = 24
    # One block a stage: a step 0.89x the time of two blocks', so 1.11-1.17x the images in 10
    # minutes on the three synthetic sets, and as much AP on general (chosen on) and dense
    # (0.009 less on the built-in set, within its seeds' spread; BENCHMARKS.md).
    config.model.backbone.blocks = (1, 1, 1, 1)
    # Two 3x3 stride-2 convolutions for the 7x7 convolution and max-pool: a one-thread step 0.91x
    # the time, 1.05-1.13x the images in 10 minutes on the three synthetic sets, AP +0.016 on
    # general (chosen on), +0.023 on dense, +0.001 on the built-in set (BENCHMARKS.md).
    config.model.backbone.stem = "two_convs"
    config.model.hidden_dim = 96
    config.model.feedforward_dim = 384
    config.model.encoder_layers = 1
    config.model.fine_level = True
    # The fine level without its mix (the projection plus the upsampled encoder output alone) and
    # two decoder layers instead of three: a training step 0.83x the time of two separable
    # convolutions and three layers (one thread, fixed batches), 1.13-1.19x the images in 10
    # minutes, and as much AP or more on general (chosen on), dense and the built-in set
    # (BENCHMARKS.md, "Cost per image against a YOLO").
    config.model.fine_level_convs = 0
    config.model.decoder_layers = 2
    config.model.query_groups = 1
    # Deformable DETR's decoder: each query reads a few points around its box on both levels instead
    # of attending every token, which learns faster and costs fewer steps than full attention.
    config.model.decoder_attention = "deformable"
    # Hard negatives against duplicates: an unmatched query whose box covers an object learns
    # no-object at full weight, not eos_coef's 0.1, so a second box on a found object loses its score.
    config.loss.duplicate_weight = 1.0
    config.train.batch_size = 2
    # Twice `small`'s learning rates: at 10 minutes on one core each, side by side with them, AP
    # 0.579 against 0.523 on `general` (chosen on) and 0.334 against 0.322 on `dense` seed 11
    # (BENCHMARKS.md, "Learning rate").
    config.train.lr = 4e-4
    config.train.lr_backbone = 2e-3
    # Two processes of batch 2 on two cores: a step of batch 2 used a second thread for only 1.1x,
    # while a second process trains on a second batch in the same time (BENCHMARKS.md).
    config.train.processes = 2
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
