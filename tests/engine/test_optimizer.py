import torch

from detr.config import TrainConfig
from detr.engine.optim import build_optimizer
from detr.model import build_model
from tests.conftest import tiny_model_config


def test_the_fused_adamw_steps_as_torchs_per_tensor_adamw():
    """The optimiser runs torch's fused kernel on CPU; three steps with the same gradients move
    every parameter as the reference implementation (foreach=False, one tensor at a time) does,
    both parameter groups with their own learning rates."""
    model = build_model(tiny_model_config())
    config = TrainConfig(lr=1e-3, lr_backbone=3e-3, weight_decay=1e-2)
    fused = build_optimizer(model, config, torch.device("cpu"))
    assert fused.defaults["fused"] and len(fused.param_groups) == 2
    reference_params = {n: p.detach().clone().requires_grad_(p.requires_grad) for n, p in model.named_parameters()}
    groups = [{"params": [reference_params[n] for n, p in model.named_parameters() if p.requires_grad
                          and not n.startswith("backbone.")], "lr": config.lr},
              {"params": [reference_params[n] for n, p in model.named_parameters() if p.requires_grad
                          and n.startswith("backbone.")], "lr": config.lr_backbone}]
    reference = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, foreach=False)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                parameter.grad = torch.randn(parameter.shape, generator=generator)
                reference_params[name].grad = parameter.grad.clone()
        fused.step()
        reference.step()
    moved = 0
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.detach(), reference_params[name].detach(), rtol=1e-5, atol=1e-6,
                                   msg=name)
        moved += int(not torch.equal(parameter.detach(), initial[name]))
    assert moved == sum(p.requires_grad for p in model.parameters()) > 10
