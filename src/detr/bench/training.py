"""Training speed and memory: this DETR against Hugging Face's DetrForObjectDetection.

    detr benchmark training --batch 2 --height 800 --width 1066 --runs 5
    python benchmarks/training.py --precision bf16      (ours in bf16 against HF in fp32)

One training step = forward, Hungarian matching, the set loss with the
auxiliary decoder losses, backward, gradient clipping and an AdamW step (the
paper's recipe: lr 1e-4, backbone 1e-5, clip 0.1), on the same weights (HF's
random R50 model, mapped into ours) and the same batch of padded images and
targets. Each implementation runs in a process of its own, so that its peak
memory is its own: on CUDA the allocator's peak over the timed steps, on the
CPU the growth of the resident set over the process's size before the first
step (warm-up included). Before timing, the losses of both on the same batch
(dropout off) are printed: HF's loss is an independent check of ours. Median
of --runs steps after --warmup. Not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from detr.bench.timing import median_time
from detr.precision import PRECISIONS, autocast


def _hf_model(aux: bool = True):
    import transformers

    config = transformers.DetrConfig(use_timm_backbone=True, backbone="resnet50", use_pretrained_backbone=False,
                                     num_labels=91, auxiliary_loss=aux)
    return transformers.DetrForObjectDetection(config)


def _ours_model(hf_state: dict[str, torch.Tensor]):
    from detr.config import preset
    from detr.model import build_model
    from detr.weights.huggingface import hf_to_ours

    config = preset("detr_r50")
    config.model.backbone.pretrained = False
    model = build_model(config.model)
    model.load_state_dict(hf_to_ours(hf_state))
    model.backbone.use_channels_last()
    return model, config


def make_inputs(batch: int, height: int, width: int, seed: int = 0) -> dict:
    """Images of two sizes padded into one batch (as collate does), 3-12 targets an image."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(batch, 3, height, width)
    mask = torch.ones(batch, height, width, dtype=torch.bool)
    targets = []
    for i in range(batch):
        h, w = (height, width) if i % 2 == 0 else (height * 3 // 4, width * 7 // 8)
        images[i, :, :h, :w] = torch.randn(3, h, w, generator=generator)
        mask[i, :h, :w] = False
        count = int(torch.randint(3, 13, (), generator=generator))
        centres = torch.rand(count, 2, generator=generator) * 0.6 + 0.2
        sizes = torch.rand(count, 2, generator=generator) * 0.3 + 0.05
        targets.append({"labels": torch.randint(1, 91, (count,), generator=generator),
                        "boxes": torch.cat([centres, sizes], dim=1)})
    return {"images": images, "mask": mask, "targets": targets}


def _optimizer(named_parameters, backbone_prefix: str, fused: bool) -> torch.optim.AdamW:
    named = [(n, p) for n, p in named_parameters if p.requires_grad]
    groups = [{"params": [p for n, p in named if not n.startswith(backbone_prefix)], "lr": 1e-4},
              {"params": [p for n, p in named if n.startswith(backbone_prefix)], "lr": 1e-5}]
    return torch.optim.AdamW(groups, weight_decay=1e-4, fused=fused)


def _step_functions(impl: str, state: dict, device: torch.device, precision: str):
    """(loss on the batch with dropout off, one training step) for `impl`."""
    from detr.config import LossConfig
    from detr.loss import SetCriterion

    images, mask = state["images"].to(device), state["mask"].to(device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in state["targets"]]
    if impl == "ours":
        model, _ = _ours_model(state["weights"])
        model.to(device)
        criterion = SetCriterion(91, LossConfig()).to(device)
        optimizer = _optimizer(model.named_parameters(), "backbone.", device.type == "cuda")

        def loss_of():
            with autocast(device, precision):
                return criterion(model(images, mask), targets)["loss"]
    else:
        model = _hf_model()
        model.load_state_dict(state["hf_weights"])
        model.to(device)
        optimizer = _optimizer(model.named_parameters(), "model.backbone.", device.type == "cuda")
        labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
        pixel_mask = (~mask).long()

        def loss_of():
            with autocast(device, precision):
                return model(pixel_values=images, pixel_mask=pixel_mask, labels=labels).loss

    def check() -> float:
        model.eval()
        with torch.no_grad():
            return float(loss_of())

    def step() -> None:
        model.train()
        loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()

    return check, step


def _resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def worker(impl: str, inputs: Path, device: torch.device, precision: str, warmup: int, runs: int) -> dict:
    """Measure one implementation in this process."""
    state = torch.load(inputs, weights_only=True)
    check, step = _step_functions(impl, state, device, precision)
    del state
    loss = check()
    before = _resident_bytes()
    seconds, peak = median_time(step, runs, device, warmup)
    if device.type != "cuda":  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"impl": impl, "loss": loss, "seconds": seconds, "peak_bytes": peak}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="detr benchmark training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1066)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="ours; HF always runs fp32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--worker", choices=("ours", "hf"), help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.worker:
        precision = args.precision if args.worker == "ours" else "fp32"
        print(json.dumps(worker(args.worker, Path(args.inputs), device, precision, args.warmup, args.runs)))
        return

    import transformers

    torch.manual_seed(0)
    hf = _hf_model()
    hf_state = {k: v.clone() for k, v in hf.state_dict().items()}
    with tempfile.TemporaryDirectory() as folder:
        inputs = Path(folder) / "inputs.pt"
        torch.save({**make_inputs(args.batch, args.height, args.width), "hf_weights": hf_state,
                    "weights": hf_state}, inputs)
        del hf, hf_state
        reports = {}
        for impl in ("ours", "hf"):
            command = [sys.executable, "-m", "detr.bench.training", "--worker", impl, "--inputs", str(inputs),
                       "--device", args.device, "--precision", args.precision, "--runs", str(args.runs),
                       "--warmup", str(args.warmup)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{impl} worker failed:\n{done.stderr[-3000:]}")
            reports[impl] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, hf = reports["ours"], reports["hf"]
    memory = "CUDA peak allocated" if device.type == "cuda" else "RSS growth over the pre-step size"
    print(f"DETR R50 training step (model + matcher + loss + backward + AdamW), batch {args.batch} at "
          f"{args.height}x{args.width}, median of {args.runs} after {args.warmup} warm-up")
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else platform.machine()}, "
          f"{torch.get_num_threads()} threads), torch {torch.__version__}, transformers {transformers.__version__}; "
          f"ours in {args.precision}, HF in fp32; memory: {memory}")
    print(f"{'':>6} {'step s':>8} {'images/s':>9} {'peak GiB':>9} {'loss (eval mode)':>17}")
    for name, report in (("ours", ours), ("HF", hf)):
        print(f"{name:>6} {report['seconds']:8.3f} {args.batch / report['seconds']:9.2f} "
              f"{report['peak_bytes'] / 2**30:9.2f} {report['loss']:17.5f}")
    print(f"HF/ours step time {hf['seconds'] / ours['seconds']:.2f}x, peak memory ours/HF "
          f"{ours['peak_bytes'] / max(hf['peak_bytes'], 1):.2f}, |loss difference| {abs(ours['loss'] - hf['loss']):.2e}")


if __name__ == "__main__":
    main()
