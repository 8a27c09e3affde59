"""Two CPU processes (gloo) against one: same loss and gradients, one checkpoint that resumes."""

import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from detr.config import LossConfig
from detr.data.collate import pad_images
from detr.engine.checkpoint import load_checkpoint
from detr.engine.local_processes import free_port
from detr.loss import SetCriterion
from detr.model import build_model
from tests.conftest import tiny_model_config


def _global_batch():
    generator = torch.Generator().manual_seed(5)
    sizes = [(64, 96), (48, 64), (64, 80), (56, 96)]
    images, mask = pad_images([torch.randn(3, h, w, generator=generator) for h, w in sizes])
    counts = [3, 0, 1, 2]  # uneven per process: the normalisers must be global
    targets = [{"labels": torch.randint(0, 3, (n,), generator=generator),
                "boxes": torch.rand(n, 4, generator=generator) * 0.3 + 0.3} for n in counts]
    return images, mask, targets


def _model_and_criterion():
    torch.manual_seed(0)
    model = build_model(tiny_model_config())
    with torch.no_grad():  # biases start at zero; make every path carry signal
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.1)
    return model, SetCriterion(3, LossConfig())


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model, criterion = _model_and_criterion()
    net = DistributedDataParallel(model)
    images, mask, targets = _global_batch()
    share = slice(rank * 2, rank * 2 + 2)
    loss = criterion(net(images[share], mask[share]), targets[share])["loss"]
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    if rank == 0:
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": mean_loss / world, "grads": grads}, out)
    dist.destroy_process_group()


def test_two_processes_equal_one_on_the_global_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)

    model, criterion = _model_and_criterion()
    images, mask, targets = _global_batch()
    loss = criterion(model(images, mask), targets)["loss"]
    loss.backward()
    torch.testing.assert_close(ddp["loss"], loss.detach(), atol=1e-5, rtol=0)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(ddp["grads"]) == set(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(ddp["grads"][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "detr.cli", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_process_run_writes_one_checkpoint_that_resumes(tiny_data, tmp_path):
    out = tmp_path / "run"
    common = ["--data", str(tiny_data), "--out", str(out), "--batch-size", "2", "--workers", "0",
              "--no-progress", "--pictures", "1", "--device", "cpu"]
    first = _torchrun("train", "--epochs", "1", *common)
    assert first.stdout.count("COCO evaluation of") == 1  # rank 0 reports, once
    assert sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "last.pt"]
    assert not list(out.glob("*.tmp"))
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    _torchrun("train", "--epochs", "2", "--resume", str(out / "last.pt"), *common)
    resumed = load_checkpoint(out / "last.pt")
    assert resumed["epoch"] == 2 and resumed["step"] == 2 * 3  # 12 images / 2 processes / batch 2
