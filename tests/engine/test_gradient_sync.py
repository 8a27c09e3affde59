"""The CPU's one-allreduce gradient average against DistributedDataParallel, in 2 gloo processes;
the processes' agreement on finiteness and on rank 0's clock, on both paths."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from detr.engine.gradient_sync import DataParallelSync, FlatAverageSync


class _Parts(nn.Module):
    """`shared` is used by both processes, `first` by rank 0 alone, `never` by none; `stats` is a
    buffer that each process moves its own way (as BatchNorm's running statistics)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(3, 2)
        self.first = nn.Linear(2, 1)
        self.never = nn.Linear(2, 1)
        self.register_buffer("stats", torch.zeros(2))

    def forward(self, x: torch.Tensor, rank: int) -> torch.Tensor:
        hidden = self.shared(x)
        self.stats.add_(float(rank + 1))
        return hidden.square().sum() + (self.first(hidden).sum() if rank == 0 else 0)


def _step(net: nn.Module, rank: int) -> None:
    x = torch.arange(6.0).view(2, 3) * (rank + 1)
    net(x, rank).backward()


def _worker(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    reference = _Parts()
    ddp = DistributedDataParallel(reference, find_unused_parameters=True, broadcast_buffers=False)
    _step(ddp, rank)
    torch.manual_seed(rank)  # a different start in each process: the sync starts both from rank 0's
    model = _Parts()
    sync = FlatAverageSync(model)
    starts = {name: p.detach().clone() for name, p in model.named_parameters()}
    _step(model, rank)
    finite, minutes = sync.finish(torch.tensor(float(rank == 0)), 7.25 * (rank + 1))
    ddp_finite, ddp_minutes = DataParallelSync(_Parts(), torch.device("cpu"), True).finish(
        torch.tensor(float(rank == 0)), 7.25 * (rank + 1))
    torch.save({"ddp": {name: p.grad for name, p in reference.named_parameters()},
                "flat": {name: p.grad for name, p in model.named_parameters()},
                "starts": starts, "stats": model.stats.clone(), "finite": finite, "minutes": minutes,
                "ddp_finite": ddp_finite, "ddp_minutes": ddp_minutes}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_the_flat_average_gives_ddps_gradients_and_agrees_on_start_buffers_and_finiteness(tmp_path):
    out = str(tmp_path / "grads")
    mp.spawn(_worker, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in (0, 1)]
    torch.manual_seed(0)
    first_start = {name: p.detach() for name, p in _Parts().named_parameters()}
    for result in ranks:
        for name, start in first_start.items():
            torch.testing.assert_close(result["starts"][name], start, rtol=0, atol=0)
        for name in ("shared.weight", "shared.bias", "first.weight", "first.bias"):
            assert result["flat"][name] is not None
            torch.testing.assert_close(result["flat"][name], ranks[0]["ddp"][name])
        assert result["flat"]["never.weight"] is None and result["ddp"]["never.weight"] is None
        torch.testing.assert_close(result["stats"], torch.full((2,), 1.5))  # the mean of 1 and 2
        assert float(result["finite"]) == float(result["ddp_finite"]) == 0.0  # rank 1's loss was not finite: both stop
        assert float(result["minutes"]) == float(result["ddp_minutes"]) == 7.25  # rank 0's clock
    # rank 0 alone used `first`: the mean counts rank 1's zeros, as DDP's does
    assert ranks[0]["flat"]["first.weight"].abs().sum() > 0
