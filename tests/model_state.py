"""Snapshot of everything a temporary model edit could leave behind (weights, grads, flags, modes, hooks)."""

import torch


def snapshot(model):
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "flags": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                     for m in model.modules()),
    }


def same(a, b):
    assert a["flags"] == b["flags"] and a["modes"] == b["modes"] and a["hooks"] == b["hooks"]
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    for n, g in a["grads"].items():
        assert (g is None and b["grads"][n] is None) or torch.equal(g, b["grads"][n])


def scored_resnet20(samples: int = 4):
    """A random resnet20, a few random samples, its pruning space and L1 scores (for allocator tests)."""
    from fewprune.criteria import Batch, criteria
    from fewprune.models import build
    from fewprune.structure import PruningSpace

    model = build("resnet20", num_classes=10, in_channels=1).eval()
    x = torch.randn(samples, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    return model, x, space, criteria.get("l1")(model, space, Batch(x, None, model))
