"""The training run's settings: model, loss, data and training, each a typed dataclass.

The one place where their defaults live: presets (`presets.py`) change fields
of these, and the CLI's `--set` (`overrides.py`) changes fields of a preset; no
module restates a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from detr.config.overrides import build_dataclass


@dataclass
class BackboneConfig:
    # torchvision's ResNets (the paper's), or RegNets: the same four stages of strides 4-32 at a
    # fraction of a ResNet's FLOPs (regnet_x_400mf cut at layer3: 0.5 GFLOPs at 256 px, resnet18 3.7).
    name: Literal["resnet18", "resnet34", "resnet50", "resnet101",
                  "regnet_x_400mf", "regnet_y_400mf", "regnet_x_800mf"] = "resnet50"
    dilation: bool = False  # DC5: dilate the last stage, stride 16 instead of 32
    # Frozen BatchNorm is right for ImageNet-initialised backbones (the paper);
    # a backbone trained from scratch needs live BatchNorm statistics.
    frozen_batchnorm: bool = True
    pretrained: bool = False  # torchvision ImageNet weights (downloaded once)
    # Small presets stop at layer2 (stride 8) or layer3 (stride 16) so that
    # small images keep enough tokens; the paper uses layer4.
    last_layer: Literal["layer2", "layer3", "layer4"] = "layer4"
    train_stem_and_layer1: bool = False
    # Channels of a ResNet-18/34's stem and layer1; each later stage doubles them. 64 is
    # torchvision's (and the only width with ImageNet weights); a from-scratch backbone at
    # width 32 costs a quarter of the FLOPs.
    width: int = 64
    # BasicBlocks in layer1..layer4 of a from-scratch ResNet-18/34; () keeps the named network's
    # (resnet18: 2, 2, 2, 2). Fewer blocks cost fewer FLOPs a pixel at each stride.
    blocks: tuple[int, ...] = ()
    # The layers before layer1 of a from-scratch ResNet-18/34, both to stride 4: torchvision's
    # ("resnet": a 7x7 stride-2 convolution, then a 3x3 stride-2 max-pool; the paper's), or two
    # 3x3 stride-2 convolutions to width/2 and width channels ("two_convs", as YOLO's), which
    # take less than half the time on a CPU (BENCHMARKS.md).
    stem: Literal["resnet", "two_convs"] = "resnet"


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
    # Where the decoder's queries come from; "learned" gives the paper's model exactly.
    # "anchors" (DAB-DETR / Deformable DETR): each query is a learned anchor box that every
    # decoder layer refines (a delta in inverse-sigmoid space); its positional query is an MLP of
    # the box's sine encoding, its content a learned vector. "selected" (two-stage query
    # selection: Deformable DETR, DINO): every encoder token proposes a box and a class, and the
    # top-scoring tokens give the anchors; the proposals get a set loss of their own.
    queries: Literal["learned", "anchors", "selected"] = "learned"
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
    # Which tokens' proposals the set loss trains with query selection: "all" (Deformable DETR's
    # two-stage: every token proposes a box, matched one-to-one against the objects) or
    # "candidates" (RT-DETR, DINO: the tokens that could become queries alone, 4 a query, so that
    # the box head, the matching and the loss run on a few hundred tokens instead of thousands).
    proposal_tokens: Literal["all", "candidates"] = "all"
    # DN-DETR: in training, this many groups of noised ground-truth boxes and
    # labels decode as extra queries that learn to reconstruct the originals.
    # They decode in the matching queries' pass behind an attention mask, so neither
    # the matching queries nor the other groups see them. Needs anchor queries.
    denoising_groups: int = 0
    denoising_box_noise: float = 0.4  # corner shifts up to this share of the box's half size
    denoising_label_noise: float = 0.2  # half of these labels are flipped to a random class
    # Deformable DETR's decoder: "deformable" makes each query's cross-attention sample
    # deformable_points points per head on every level around its anchor box (needs anchor
    # queries) instead of attending all the tokens; "full" = the paper.
    decoder_attention: Literal["full", "deformable"] = "full"
    deformable_points: int = 4
    # RT-DETR's cross-scale fusion, top-down: after the encoder (on the last stage alone, as
    # the paper), its output upsampled onto the stage before (stride 8 for layer3) and mixed
    # by convolutions; the decoder and query selection read both levels. A finer level for
    # small objects without attention over its tokens.
    fine_level: bool = False
    fine_level_convs: int = 2  # 3x3 convolutions in the fine level's residual mix (0: none)
    # "conv": full 3x3 convolutions (RT-DETR); "separable": each a depthwise 3x3 then a
    # pointwise 1x1, about an eighth of the FLOPs.
    fine_level_mix: Literal["conv", "separable"] = "conv"
    # How inference reads the outputs: 0 = each query's best class (the paper); N = each
    # image's N best (query, class) pairs (Deformable DETR, DINO; COCO scores 100 an image),
    # so that a query unsure of its class offers its box under the runner-up too. No NMS
    # either way; predictions at a threshold >= 0.5 are the same.
    class_pairs: int = 0
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    def check(self) -> None:
        """Refuse a combination that cannot work, and a setting that would do nothing in it."""
        if self.queries not in ("learned", "anchors", "selected"):
            raise ValueError(f"model.queries is 'learned', 'anchors' or 'selected', not {self.queries!r}")
        if self.proposal_tokens not in ("all", "candidates"):
            raise ValueError(f"model.proposal_tokens is 'all' or 'candidates', not {self.proposal_tokens!r}")
        if self.decoder_attention not in ("full", "deformable"):
            raise ValueError(f"model.decoder_attention is 'full' or 'deformable', not {self.decoder_attention!r}")
        if self.query_groups < 1:
            raise ValueError(f"model.query_groups must be at least 1, not {self.query_groups}")
        if self.class_pairs < 0:
            raise ValueError(f"model.class_pairs is 0 (one class per query) or more, not {self.class_pairs}")
        if self.deformable_points < 1:
            raise ValueError("model.deformable_points must be at least 1")
        if not 0.0 <= self.distinct_queries < 1.0:
            raise ValueError(f"model.distinct_queries is an IoU threshold in [0, 1) (0: off), "
                             f"got {self.distinct_queries}")
        if self.fine_level_convs < 0:
            raise ValueError(f"model.fine_level_convs is 0 or more, not {self.fine_level_convs}")
        if self.fine_level_mix not in ("conv", "separable"):
            raise ValueError(f"model.fine_level_mix is 'conv' or 'separable', not {self.fine_level_mix!r}")
        if (self.fine_level_convs != 2 or self.fine_level_mix != "conv") and not self.fine_level:
            raise ValueError("model.fine_level_convs and model.fine_level_mix shape the fine level: "
                             "set model.fine_level=True")
        if self.fine_level_mix != "conv" and self.fine_level_convs == 0:
            raise ValueError(f"model.fine_level_mix={self.fine_level_mix!r} shapes the mix's convolutions, and "
                             "model.fine_level_convs=0 leaves none: set model.fine_level_convs to 1 or more, "
                             "or leave model.fine_level_mix at 'conv'")
        if self.fine_level and self.backbone.last_layer == "layer2":
            raise ValueError("model.fine_level needs a backbone stage before the last; set backbone.last_layer "
                             "to layer3 or layer4")
        if self.queries == "learned":
            if self.decoder_attention == "deformable":
                raise ValueError("model.decoder_attention='deformable' samples around each query's anchor box, "
                                 "which learned queries do not have: set model.queries to 'anchors' or 'selected'")
            if self.denoising_groups:
                raise ValueError("model.denoising_groups needs anchor-box queries: set model.queries to "
                                 "'anchors' or 'selected', or model.denoising_groups=0")
        if self.queries != "selected":
            for name, off in (("selected_content", False), ("distinct_queries", 0.0), ("proposal_tokens", "all")):
                if getattr(self, name) != off:
                    raise ValueError(f"model.{name} acts on selected queries: set model.queries='selected' "
                                     f"or model.{name}={off!r}")


@dataclass
class LossConfig:
    cost_class: float = 1.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    weight_ce: float = 1.0
    weight_bbox: float = 5.0
    weight_giou: float = 2.0
    eos_coef: float = 0.1  # weight of the no-object class in the cross-entropy
    # Hard negatives against duplicates: the no-object weight of an unmatched decoder query whose
    # box covers an object at IoU >= 0.5, which would draw a second box on that object if it
    # scored. None: eos_coef, as every unmatched query (the paper).
    duplicate_weight: float | None = None
    # IoU-aware classification (in the spirit of varifocal loss, RT-DETR): a matched
    # query's target is its box's IoU on its class and the rest on no-object, so
    # scores rank boxes by localisation quality. False: the paper's one-hot target.
    iou_aware_classes: bool = False
    # Query selection's proposals (needs model.queries="selected") learn as an NMS detector's
    # tokens do: every token inside an object learns it (FCOS's assignment, Co-DETR's auxiliary
    # head), so the tokens that choose the decoder's anchors learn from the first steps. The
    # decoder's queries stay one-to-one: inference needs no NMS either way. False: the proposals
    # are matched one-to-one, as Deformable DETR's two-stage. With model.proposal_tokens=
    # "candidates", the candidate tokens inside an object learn it.
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
    # `detr train` on a CPU: data-parallel processes on this machine, each pinned to its share of
    # the cores with batch_size images, their gradients averaged; capped at one per core.
    # 1: a single process with all the cores.
    processes: int = 1
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
        """Refuse settings that cannot work or would silently do nothing."""
        self.model.check()
        if self.loss.dense_proposals and self.model.queries != "selected":
            raise ValueError("loss.dense_proposals trains query selection's proposals, which this model does not "
                             "have: set model.queries='selected' or loss.dense_proposals=False")
        if self.loss.duplicate_weight is not None and self.loss.duplicate_weight <= 0:
            raise ValueError(f"loss.duplicate_weight is a positive no-object weight (or None: eos_coef), "
                             f"not {self.loss.duplicate_weight}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        return build_dataclass(cls, values)
