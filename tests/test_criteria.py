import pytest
import torch

from fewprune.criteria import Batch, criteria
from fewprune.models import build
from fewprune.structure import PruningSpace

CRITERIA = criteria.names()


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


@pytest.mark.parametrize("name", CRITERIA)
@pytest.mark.parametrize("frozen", [False, True])
def test_criteria_leave_the_model_exactly_as_it_was(name, frozen):
    model = build("resnet20", num_classes=10, in_channels=1).train()
    for p in model.parameters():
        p.requires_grad_(not frozen)
        p.grad = None if frozen else torch.ones_like(p)  # a caller's pending gradients must survive
    x = torch.randn(8, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    before = snapshot(model)
    scores = criteria.get(name)(model, space, Batch(x, torch.randint(0, 10, (8,)), model, seed=1))
    same(before, snapshot(model))
    if getattr(criteria.get(name), "granularity", "channels") == "blocks":
        assert set(scores) == set(space.blocks)
    else:
        assert set(scores) == {g.id for g in space.prunable}
        assert all(scores[g.id].shape == (g.size,) for g in space.prunable)


def test_a_channel_with_zero_weights_scores_lowest():
    model = build("resnet20", num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        model.layer2[1].conv1.weight[5].zero_()
        model.layer2[1].bn1.weight[5] = 0.0
    x = torch.randn(8, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    for name in ("l1", "l2", "bn-scale", "taylor"):
        scores = criteria.get(name)(model, space, Batch(x, None, model))["layer2.1.conv1"]
        assert scores.argmin() == 5 and scores[5] == 0, name
