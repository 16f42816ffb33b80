import pytest
import torch

from fewprune.criteria import Batch, criteria
from fewprune.models import build
from fewprune.structure import PruningSpace
from model_state import same, snapshot

CRITERIA = criteria.names()


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
    criterion = criteria.get(name)
    # Criteria that learn towards a target (ASCA) get one, and few iterations: the test is about side effects.
    aim = {"target_kind": "macs", "fraction": 0.5, "iterations": 5} if getattr(criterion, "needs_target", False) else {}
    scores = criterion(model, space, Batch(x, torch.randint(0, 10, (8,)), model, seed=1), **aim)
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
    for name in ("l1", "l2", "bn-scale", "taylor", "lrp"):
        scores = criteria.get(name)(model, space, Batch(x, None, model))["layer2.1.conv1"]
        assert scores.argmin() == 5 and scores[5] == 0, name
