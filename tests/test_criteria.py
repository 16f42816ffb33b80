import pytest
import torch

from fewprune.criteria import Batch, criteria
from fewprune.models import build
from fewprune.recovery import Schedule
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


def _scores_equal(a, b) -> bool:
    if set(a) != set(b):
        return False
    return all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)


@pytest.mark.parametrize("name", CRITERIA)
def test_criteria_read_labels_only_when_they_say_so(name, monkeypatch):
    """A criterion without ``reads_labels`` scores the same with the labels shown or hidden; one with it does not.

    The shown labels disagree with the teacher (what a criterion falls back to without them), so a criterion
    that used them would score differently. Benchmarks count one measurement for both settings on this basis.
    """
    monkeypatch.setattr("fewprune.recovery.practise.block_latency", lambda *args, **kwargs: 1e-3)  # timing noise
    model = build("resnet20", num_classes=10, in_channels=1).eval()
    x = torch.randn(8, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    criterion = criteria.get(name)
    aim = {"target_kind": "macs", "fraction": 0.5, "iterations": 5} if getattr(criterion, "needs_target", False) else {}
    if name == "practise":  # its adaptor training, shortened: the test is about what it reads
        aim = {"schedule": Schedule(iterations=2, batch_size=8, weight_decay=0.0, bn="frozen")}
    with torch.no_grad():
        disagreeing = (model(x).argmax(1) + 1) % 10
    shown = criterion(model, space, Batch(x, disagreeing, model, seed=1), **aim)
    hidden = criterion(model, space, Batch(x, None, model, seed=1), **aim)
    assert _scores_equal(shown, hidden) != getattr(criterion, "reads_labels", False)
