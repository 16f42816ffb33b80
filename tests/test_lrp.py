"""LRP relevance (zennit), the iterative and accuracy-aware allocators, and the lrp / lrp-aa methods."""

import copy

import pytest
import torch
from torch import nn

import fewprune as fp
from fewprune.allocation import Probe, harmonic_mean
from fewprune.criteria.lrp import relevance
from fewprune.models import build
from model_state import scored_resnet20


def test_relevance_is_conserved_from_the_output_to_the_input():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1, bias=False),
                        nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 5, bias=False))
    x = torch.randn(6, 1, 8, 8)
    maps, input_relevance = relevance(net, x, layers=["2"])
    assert torch.allclose(input_relevance.sum((1, 2, 3)), torch.ones(6), atol=1e-3)  # one unit seeded per sample
    assert maps["2"].sum().item() == pytest.approx(6.0, abs=1e-3)


@pytest.mark.parametrize("name,size", [("resnet20", 28), ("mobilenetv2", 28), ("vgg16", 28),
                                       ("torchvision:resnet18", 28), ("torchvision:vgg11", 32),
                                       ("torchvision:mobilenet_v2", 32), ("torchvision:mobilenet_v3_small", 32)])
def test_attribution_leaves_outputs_hooks_and_attributes_as_they_were(name, size):
    model = build(name, num_classes=10, in_channels=1, image_size=size).eval()
    x = torch.randn(4, 1, size, size)
    with torch.no_grad():
        before = model(x)
    attributes = {n: set(vars(m)) for n, m in model.named_modules()}
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][:3]
    maps, _ = relevance(model, x, layers=layers)
    assert set(maps) == set(layers) and all(torch.isfinite(v).all() and v.abs().sum() > 0 for v in maps.values())
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert {n: set(vars(m)) for n, m in model.named_modules()} == attributes  # canonizer overloads removed
    assert all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_residual_joins_split_relevance_instead_of_copying_it():
    model = build("resnet20", num_classes=10, in_channels=1).eval()
    x = torch.randn(4, 1, 28, 28)
    maps, _ = relevance(model, x, layers=["layer3.2", "layer3.2.add"])
    # the block's output relevance is what reached its add; a copying add would double it upstream
    assert maps["layer3.2.add"].sum().item() == pytest.approx(maps["layer3.2"].sum().item(), rel=1e-4)


def test_accuracy_aware_steps_never_break_the_guard_and_defer_a_harmful_unit():
    model, x, space, scores = scored_resnet20()
    harmful_group = space.prunable[0].id
    harmful_unit = int(scores[harmful_group].argmin())
    for g in space.prunable:  # make the harmful unit the very first candidate
        scores[g.id] = scores[g.id] + 1.0
    scores[harmful_group][harmful_unit] = 0.0

    def class_accuracy(removed):
        hit = harmful_unit in removed.get(harmful_group, [])
        return [0.5, 0.6] if hit else [1.0, 0.9]

    probe = Probe(rescore=lambda removed: scores, class_accuracy=class_accuracy)
    removed = fp.allocation.allocate(space, scores, fp.Target(macs=0.3), "accuracy-aware", probe=probe)
    assert harmful_unit not in removed.get(harmful_group, [])
    assert abs(fp.allocation.reduction(space, removed, "macs") - 0.3) <= 0.01
    guards = [entry["guard"] for entry in probe.log]
    assert all(after >= before - 0.01 for before, after in zip(guards, guards[1:], strict=False))
    assert harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3) and harmonic_mean([1.0, 0.0]) == 0


def test_when_only_deferred_units_are_left_they_go_last_and_the_broken_guard_is_logged():
    model, x, space, scores = scored_resnet20()
    probe = Probe(rescore=lambda removed: scores,
                  class_accuracy=lambda removed: [1.0] if sum(map(len, removed.values())) < 40 else [0.0])
    removed = fp.allocation.allocate(space, scores, fp.Target(macs=0.5), "accuracy-aware", probe=probe, step=0.2,
                                     min_step=0.1)
    assert abs(fp.allocation.reduction(space, removed, "macs") - 0.5) <= 0.01  # the target is met
    kept = [entry for entry in probe.log[1:] if not entry.get("guard_broken")]
    broken = [entry for entry in probe.log if entry.get("guard_broken")]
    assert broken and all(entry["guard"] == 0.0 for entry in broken)  # where the guard gave way, on record
    assert all(entry["guard"] == 1.0 for entry in kept)
    assert probe.log.index(broken[0]) > max((probe.log.index(e) for e in kept), default=0)  # deferred went last


@pytest.mark.parametrize("method", ["lrp", "lrp-aa"])
def test_lrp_methods_meet_the_target_without_fine_tuning(method):
    teacher = build("resnet20", num_classes=10, in_channels=1).eval()
    before = copy.deepcopy(teacher.state_dict())
    x, y = torch.randn(12, 1, 28, 28), torch.randint(0, 3, (12,))
    result = fp.compress(teacher, (x, y), method=method, target=fp.Target(macs=0.3), progress=False)
    assert abs(result.report["macs_reduction"] - 0.3) <= 0.01
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    steps = result.report["allocation"]["steps"]
    assert len(steps) >= 2 and steps[-1]["removed"] <= 0.31
    if method == "lrp-aa":
        assert result.report["allocation"]["class_averaged_auc"] is not None


def test_accuracy_aware_re_ranks_once_per_step_of_units_however_small_the_guarded_steps():
    model, x, space, scores = scored_resnet20()
    total = sum(g.size for g in space.prunable)
    rescored_at, accepted = [], [0]

    def rescore(removed):
        rescored_at.append(sum(map(len, removed.values())))
        return scores

    def class_accuracy(removed):  # a step of more than 2% of the units at once breaks the guard
        now = sum(map(len, removed.values()))
        if now - accepted[-1] > 0.02 * total:
            return [0.0]
        accepted.append(now)  # the allocator takes every step the guard allows
        return [1.0]

    probe = Probe(rescore=rescore, class_accuracy=class_accuracy)
    fp.allocation.allocate(space, scores, fp.Target(macs=0.4), "accuracy-aware", probe=probe, step=0.1,
                           min_step=0.001)
    steps = [b - a for a, b in zip(accepted, accepted[1:], strict=False)]
    assert steps and max(steps) <= 0.02 * total  # the guard kept every step small
    gaps = [b - a for a, b in zip([0] + rescored_at, rescored_at, strict=False)]
    assert rescored_at and all(gap >= 0.1 * total for gap in gaps)  # yet the ranking was redone per 10%
    assert len(rescored_at) < len(steps) / 3


def test_consecutive_deferrals_measure_each_single_removal_once():
    model, x, space, scores = scored_resnet20()
    measured = []

    def class_accuracy(removed):  # every removal beyond the first 30 units breaks the guard
        # keyed by how many steps were accepted so far: between two accepted steps nothing is re-measured
        measured.append((len(probe.log), tuple(sorted((g, tuple(sorted(u))) for g, u in removed.items()))))
        count = sum(map(len, removed.values()))
        return [1.0] if count <= 30 else [0.5 + 0.01 * (count % 7)]

    probe = Probe(rescore=lambda removed: scores, class_accuracy=class_accuracy)
    removed = fp.allocation.allocate(space, scores, fp.Target(macs=0.3), "accuracy-aware", probe=probe, step=0.1,
                                     min_step=0.02)
    assert abs(fp.allocation.reduction(space, removed, "macs") - 0.3) <= 0.01
    assert sum(1 for entry in probe.log if entry.get("guard_broken"))  # it deferred until only deferred were left
    assert len(measured) == len(set(measured))  # no removal set was measured twice between accepted steps
    assert len(measured) > 100  # past 30 units every step breaks the guard: many deferrals were measured
