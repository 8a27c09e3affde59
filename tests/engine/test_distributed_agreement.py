"""`detr train` under torchrun (2 gloo processes on the CPU): the same answer as one process, and clean stops."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detr.cli import main
from detr.config import DataConfig
from detr.data.coco import CocoDetection
from detr.data.sources import eval_loader, find_split
from detr.data.synthetic import SynthConfig, write_dataset
from detr.data.transforms import val_transforms
from detr.engine.checkpoint import load_checkpoint
from detr.engine.evaluate import evaluate
from detr.engine.local_processes import free_port
from detr.engine.train import Trainer
from detr.model.outputs import Predictions

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available() and importlib.util.find_spec("torch.distributed.run")),
    reason="needs torch.distributed with the gloo backend and torchrun")

ROOT = Path(__file__).resolve().parents[2]
# What must hold for 2 processes x batch 2 to be 1 process x batch 4: the EpochSampler deals the
# global order round-robin (the two step-s batches together are the single step-s batch); no
# dropout; frozen BatchNorm (live BatchNorm sees only its own process's batch on the CPU, where
# SyncBatchNorm has no kernel); every image 64x64, so that no padding differs between the batches.
# The paper's model: the default preset's denoising noise is drawn per process, so two processes
# cannot equal one exactly there.
SAME = ["--preset", "small", "--workers", "0", "--no-progress", "--pictures", "0", "--device", "cpu",
        "--eval-every", "1", "--set",
        "model.dropout=0.0", "model.backbone.frozen_batchnorm=True", "model.hidden_dim=32", "model.num_heads=4",
        "model.feedforward_dim=64", "model.encoder_layers=1", "model.decoder_layers=1",
        "data.train_scales=(64,)", "data.crop_resize_scales=(64,)", "data.crop_min=64", "data.crop_max=64",
        "data.val_scale=64", "data.max_size=96", "train.lr_drop_fraction=2.0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 train images (3 steps of 4), and an odd count of val images: the processes' shares differ."""
    return write_dataset(tmp_path_factory.mktemp("synth"), SynthConfig(train_images=12, val_images=5))


def _torchrun(args: list[str], **hooks) -> subprocess.CompletedProcess:
    """2 processes of `detr train` with the test hooks of tests/engine/hooked_cli.py; fails on a hang."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1",
           **{f"DETR_TEST_{k}": str(v) for k, v in hooks.items()}}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", str(free_port()), "-m", "tests.engine.hooked_cli", "train", *args]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and its workers, none left behind
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _two_processes(args: list[str], logs: Path, **hooks) -> list[subprocess.CompletedProcess]:
    """2 processes of `detr train` (with the hooks of tests/engine/hooked_cli.py) joined as torchrun
    joins them, by its environment variables, but each left to end by itself: under torchrun the first
    to fail has the others torn down, so their own exit codes and last words would go unseen."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
           **{f"DETR_TEST_{k}": str(v) for k, v in hooks.items()}}
    command = [sys.executable, "-m", "tests.engine.hooked_cli", "train", *args]
    logs.mkdir(parents=True, exist_ok=True)
    processes = []
    for rank in range(2):  # files, not pipes: a process blocked on a full pipe would look like a hang
        with open(logs / f"{rank}.out", "w") as out, open(logs / f"{rank}.err", "w") as err:
            own = {**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}
            processes.append(subprocess.Popen(command, cwd=ROOT, env=own, stdout=out, stderr=err,
                                              start_new_session=True))
    deadline = time.monotonic() + 600  # for both together, as _torchrun's limit
    try:
        for process in processes:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)  # none left behind
                process.wait()
        raise
    return [subprocess.CompletedProcess(command, p.returncode, (logs / f"{r}.out").read_text(),
                                        (logs / f"{r}.err").read_text()) for r, p in enumerate(processes)]


def _files(out):
    """The checkpoints and any temp files left in the run folder."""
    return sorted(p.name for p in out.iterdir() if p.suffix in (".pt", ".tmp"))


def test_two_processes_stop_by_rank_0s_clock_with_the_weights_of_one_process(data, tmp_path, monkeypatch):
    """Proves: by rank 0's clock (a minute a look; rank 1's real clock says ~0) both processes stop
    after step 1 of 3 with exit code 0, one last.pt and one best.pt; and 2 processes x batch 2 hold
    the gradients (Adam's first moment) and weights of 1 process x batch 4, fp32 rounding apart."""
    ran = _torchrun(["--data", str(data), "--out", str(tmp_path / "two"), "--minutes", "0.5", "--batch-size", "2",
                     *SAME], RANK0_CLOCK=1)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.count("COCO evaluation of") == 1
    assert _files(tmp_path / "two") == ["best.pt", "last.pt"]

    monkeypatch.setattr(Trainer, "_minutes_since", lambda self, started: float(self.step + 1))  # the same clock
    initial = _train_one_process(monkeypatch, ["--data", str(data), "--out", str(tmp_path / "one"), "--minutes",
                                               "0.5", "--batch-size", "4", *SAME])
    two, one = load_checkpoint(tmp_path / "two" / "last.pt"), load_checkpoint(tmp_path / "one" / "last.pt")
    assert (two["epoch"], two["batches_done"], two["step"]) == (one["epoch"], one["batches_done"], one["step"]) \
        == (0, 1, 1)
    moments = list(zip(two["optimizer"]["state"].values(), one["optimizer"]["state"].values()))
    assert len(moments) > 20
    for mine, reference in moments:  # one step: the gradient itself, x (1 - beta1)
        scale = float(reference["exp_avg"].abs().max())
        if scale == 0:  # exactly no gradient on step 1 (e.g. the first decoder layer's self-attention
            assert not mine["exp_avg"].any()  # over all-zero queries): the two processes must agree exactly
            continue
        torch.testing.assert_close(mine["exp_avg"], reference["exp_avg"], atol=1e-4 * scale, rtol=1e-3)
    _assert_same_weights(two["model"], one["model"], initial)


def _train_one_process(monkeypatch, args: list[str]) -> dict[str, torch.Tensor]:
    """`detr train` in this process; returns the weights it started from."""
    initial = {}
    build = Trainer._build_model

    def keeping_the_start(self, init):
        model = build(self, init)
        initial.update({n: t.clone() for n, t in model.state_dict().items()})
        return model

    monkeypatch.setattr(Trainer, "_build_model", keeping_the_start)
    assert main(["train", *args]) == 0
    return initial


def _assert_same_weights(two: dict, one: dict, initial: dict) -> None:
    """Each tensor of `two` within 1e-2 of the update `one` made to it from `initial`. Adam moves a
    weight by ~lr whatever its gradient's size, so a near-zero gradient whose rounding flips its sign
    moves it the other way: compare the whole update, not each weight. A step on other images, or on
    one process's half of the gradient, moves a tensor by a large share of its update instead. A tensor
    whose gradient is exactly zero (the first decoder layer's self-attention weights over all-zero
    queries) does not move in one process; in two it may differ by the fp32 rounding of the weight."""
    rounding = torch.finfo(torch.float32).eps
    for name, tensor in one.items():
        update = (tensor - initial[name]).double().norm()
        assert (two[name] - tensor).double().norm() <= 1e-2 * update + rounding * tensor.double().norm(), name


def test_two_processes_train_across_an_epoch_boundary_to_the_weights_of_one_process(data, tmp_path, monkeypatch):
    """Proves: over 2 epochs (6 steps; the second epoch's order is drawn anew, in every process),
    2 processes x batch 2 reach the weights of 1 process x batch 4, fp32 rounding apart."""
    ran = _torchrun(["--data", str(data), "--out", str(tmp_path / "two"), "--epochs", "2", "--batch-size", "2",
                     *SAME])
    assert ran.returncode == 0, ran.stderr[-3000:]
    initial = _train_one_process(monkeypatch, ["--data", str(data), "--out", str(tmp_path / "one"), "--epochs", "2",
                                               "--batch-size", "4", *SAME])
    two, one = load_checkpoint(tmp_path / "two" / "last.pt"), load_checkpoint(tmp_path / "one" / "last.pt")
    assert (two["epoch"], two["step"]) == (one["epoch"], one["step"]) == (2, 6)
    _assert_same_weights(two["model"], one["model"], initial)


class _GridDetector(torch.nn.Module):
    """The same 100 scored boxes (a 5x5 grid of centres x 4 sizes) for every image: some overlap
    the objects well enough that AP and AR are above zero."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        centres = torch.linspace(0.1, 0.9, 5)
        grid = torch.cartesian_prod(centres, centres, torch.tensor([0.15, 0.25, 0.35, 0.45]))
        self.boxes = torch.cat([grid[:, :2], grid[:, 2:], grid[:, 2:]], 1)
        self.logits = torch.randn(len(grid), num_classes + 1, generator=torch.Generator().manual_seed(0))

    def forward(self, images, mask):
        batch = len(images)
        return Predictions(self.logits.expand(batch, -1, -1), self.boxes.expand(batch, -1, -1))


def _val_set(data):
    split = find_split(data, "val")
    return CocoDetection(split.images, split.annotations, val_transforms(DataConfig(val_scale=64, max_size=96)))


def _evaluate_share(rank, world, init_file, data, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    val = _val_set(data)
    report = evaluate(_GridDetector(len(val.categories.ids)), eval_loader(val, 2, 0, rank, world), "cpu",
                      progress=False)
    if rank == 0:
        Path(out).write_text(json.dumps(report[0]))
    else:
        assert report is None
    dist.destroy_process_group()


def test_sharded_evaluation_scores_what_one_process_scores(data, tmp_path):
    """Proves: the processes' shares of the val images (3 and 2 of 5), gathered on rank 0, score
    exactly what one process scores on all of them: no image lost or counted twice."""
    out = tmp_path / "stats.json"
    mp.spawn(_evaluate_share, args=(2, str(tmp_path / "init"), str(data), str(out)), nprocs=2, join=True)
    val = _val_set(data)
    alone, _, _ = evaluate(_GridDetector(len(val.categories.ids)), eval_loader(val, 4, 0), "cpu", progress=False)
    assert json.loads(out.read_text()) == alone
    assert alone["AP"] > 0 and alone["AR100"] > 0  # detections matched: a lost or doubled image would show


def test_a_non_finite_loss_in_one_process_stops_both_keeping_the_last_checkpoint(data, tmp_path):
    """Proves: a NaN loss on rank 1 alone (step 5, in epoch 2) stops both processes by themselves, none
    hanging, each with exit code 1 and its one-line error: rank 1 names its NaN, rank 0, whose own loss
    was finite, says another process's was not; the last.pt of epoch 1 stays, nothing half-written."""
    out = tmp_path / "run"
    ranks = _two_processes(["--data", str(data), "--out", str(out), "--epochs", "2", "--batch-size", "2", *SAME],
                           tmp_path / "logs", NAN_RANK=1, NAN_FROM_STEP=5)
    said = [[line for line in r.stderr.splitlines() if line.startswith("detr train: error:")] for r in ranks]
    kept = f"the last good checkpoint is {out / 'last.pt'}"
    assert said[1] == [f"detr train: error: loss became nan at epoch 1 step 4; {kept}. Lower the learning "
                       "rate or check the data."], ranks[1].stderr[-3000:]
    assert said[0] == [f"detr train: error: loss became non-finite in another process at epoch 1 step 4; "
                       f"{kept}. Lower the learning rate or check the data."], ranks[0].stderr[-3000:]
    assert [r.returncode for r in ranks] == [1, 1]
    assert _files(out) == ["best.pt", "last.pt"]
    kept = load_checkpoint(out / "last.pt")
    assert (kept["epoch"], kept["step"]) == (1, 3)
