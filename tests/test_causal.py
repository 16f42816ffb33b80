"""C-SWAP causal effects: interventions, the statistical sorting of units, the progressive allocator."""

import pytest
import torch
from torch import nn

import fewprune as fp
from fewprune.criteria import Batch, criteria
from fewprune.criteria.causal import causal_effects, holm
from fewprune.models import build
from fewprune.structure import Plan, PruningSpace, masked_copy
from model_state import scored_resnet20


class Planted(nn.Module):
    """Three channels: 0 carries the decision (critical), 1 adds logit noise (detrimental), 2 is dead."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.copy_(torch.tensor([10.0, 0.0, 0.0]))
            self.conv.weight[1, 0] = 1.0  # channel 1 follows the input brightness
            self.fc.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 3.0, 0], [0, 0, 1.0]]))

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def test_planted_units_are_sorted_critical_detrimental_and_neutral():
    model = Planted().eval()
    x = torch.rand(20, 1, 4, 4) * 2  # channel-1 activation in (0, 2): class 0 always wins, by a varying margin
    space = PruningSpace(model, x[:1])
    scores = criteria.get("cswap")(model, space, Batch(x, None, model))
    (gid,) = [g.id for g in space.prunable]
    assert scores.classes[gid] == ["critical", "detrimental", "neutral"]
    assert scores.locked[gid] == [0]
    assert scores[gid].argmin() == 1  # the detrimental unit is removed first


def test_silencing_by_batched_intervention_equals_the_masked_model_and_zero_weights_have_no_effect():
    model = build("resnet20", num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        model.layer2[1].conv1.weight[5].zero_()
        model.layer2[1].bn1.weight[5] = 0.0
        model.layer2[1].bn1.bias[5] = 0.0
    x = torch.randn(6, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    effects = causal_effects(model, space, x)
    assert torch.equal(effects["layer2.1.conv1"][5], torch.zeros(6))
    group = space.group("layer2.0.conv1")
    plan = Plan((1, 28, 28), {group.id: [3]}, {g.id: g.kind for g in space.groups}, {g.id: g.size for g in space.groups})
    with torch.no_grad():
        clean = torch.log_softmax(model(x), 1)
        predicted = clean.argmax(1, keepdim=True)
        silenced = torch.log_softmax(masked_copy(model, plan, space.groups)(x), 1)
    expected = (silenced.gather(1, predicted) - clean.gather(1, predicted)).squeeze(1)
    assert torch.allclose(effects[group.id][3], expected, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "vit"])
def test_suffix_only_interventions_equal_the_masked_model_at_every_depth(name):
    from torch import fx

    model = build(name, num_classes=10, in_channels=1, image_size=28).eval()
    fx.symbolic_trace(model)  # traceable, so only the suffix after each silenced unit is re-run
    x = torch.randn(5, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    groups = [space.prunable[0], space.prunable[len(space.prunable) // 2], space.prunable[-1]]
    only = {g.id: [0, g.size - 1] for g in groups}
    effects = causal_effects(model, space, x, only=only)
    with torch.no_grad():
        clean = torch.log_softmax(model(x), 1)
        predicted = clean.argmax(1, keepdim=True)
        for g in groups:
            for row, unit in enumerate(only[g.id]):
                plan = Plan((1, 28, 28), {g.id: [unit]}, {h.id: h.kind for h in space.groups},
                            {h.id: h.size for h in space.groups})
                silenced = torch.log_softmax(masked_copy(model, plan, space.groups)(x), 1)
                expected = (silenced.gather(1, predicted) - clean.gather(1, predicted)).squeeze(1)
                assert torch.allclose(effects[g.id][row], expected, atol=1e-5), (g.id, unit)


@pytest.mark.parametrize("shared", [True, False])  # one reused copy (as compress does) or a new module per base
@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "vit"])
def test_silenced_outputs_re_run_only_the_extension_and_equal_the_masked_model(name, shared):
    from fewprune.criteria.causal import SilencedOutputs
    from fewprune.structure import Silencer

    model = build(name, num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(4, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    kinds, sizes = {g.id: g.kind for g in space.groups}, {g.id: g.size for g in space.groups}
    plan = lambda removed: Plan((1, 28, 28), removed, kinds, sizes)  # noqa: E731
    silencer = Silencer(model, space.groups)
    silence = (lambda removed: silencer(plan(removed))) if shared else \
        (lambda removed: Silencer(model, space.groups)(plan(removed)))
    outputs = SilencedOutputs(silence, space, x)
    wide = [g.id for g in space.prunable if g.size >= 6]
    first, middle, last = wide[0], wide[len(wide) // 2], wide[-1]
    removals = [{first: [0, 1]},                          # the first base
                {first: [0, 1], last: [2]},               # extends it by one unit: suffix only
                {first: [0, 1, 3], middle: [1, 2]},       # by three units of two groups: suffix only
                {first: [0], middle: [1]},                # does not extend it: a new base
                {first: [0], middle: [1, 2, 3, 4, 5]}]    # extends the new base by four units: suffix only
    for removed in removals:
        with torch.no_grad():
            expected = masked_copy(model, plan(removed), space.groups).eval()(x)
        assert torch.allclose(outputs(removed), expected, atol=1e-5), removed
    assert (outputs.full_runs, outputs.suffix_runs) == (2, 3)


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "vit"])
def test_compact_bases_run_the_pruned_model_and_still_equal_the_masked_model(name):
    import copy

    from fewprune.criteria.causal import SilencedOutputs
    from fewprune.structure import Silencer

    model = build(name, num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(4, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    kinds, sizes = {g.id: g.kind for g in space.groups}, {g.id: g.size for g in space.groups}
    plan = lambda removed: Plan((1, 28, 28), removed, kinds, sizes, islands=space.islands)  # noqa: E731
    silencer = Silencer(model, space.groups)
    outputs = SilencedOutputs(lambda removed: silencer(plan(removed)), space, x,
                              compactor=lambda removed: plan(removed).apply(copy.deepcopy(model)))
    wide = [g.id for g in space.prunable if g.size >= 6]
    first, middle, last = wide[0], wide[len(wide) // 2], wide[-1]
    everywhere = {g.id: list(range(0, g.size - 1, 3)) for g in space.prunable}  # a third of every group
    removals = [{first: [0, 1]}, {first: [0, 1], last: [2]}, {first: [0, 1, 3], middle: [1, 2]},
                {first: [0], middle: [1]}, everywhere,
                {**everywhere, first: everywhere[first] + [1], last: everywhere[last] + [2, 4]}]
    for removed in removals:
        if removed is everywhere:
            outputs.anchor(removed)
        with torch.no_grad():
            expected = masked_copy(model, plan(removed), space.groups).eval()(x)
        assert torch.allclose(outputs(removed), expected, atol=1e-4), removed
    assert outputs.remap is not None and outputs.compactor is not None  # the check passed: compaction stays on
    width = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert width(outputs.traced) < width(model)  # the last suffix ran on the pruned model


def test_compact_check_extends_only_prunable_groups():
    """A ViT's qkv output group is not prunable (heads are), yet it maps onto the projection's inputs: the compact
    check once extended it and, with a head already removed, indexed a projection input the pruned base lacks."""
    import copy

    from fewprune.criteria.causal import SilencedOutputs
    from fewprune.structure import Silencer

    model = build("vit", num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(4, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    assert {g.id for g in space.groups} - {g.id for g in space.prunable}  # the unprunable groups are there
    kinds, sizes = {g.id: g.kind for g in space.groups}, {g.id: g.size for g in space.groups}
    plan = lambda removed: Plan((1, 28, 28), removed, kinds, sizes, islands=space.islands)  # noqa: E731
    silencer = Silencer(model, space.groups)
    outputs = SilencedOutputs(lambda removed: silencer(plan(removed)), space, x,
                              compactor=lambda removed: plan(removed).apply(copy.deepcopy(model)))
    first_heads = {g.id: [0] for g in space.prunable if g.kind == "heads"}
    assert first_heads
    with torch.no_grad():
        expected = masked_copy(model, plan(first_heads), space.groups).eval()(x)
    assert torch.allclose(outputs(first_heads), expected, atol=1e-4)
    assert outputs.compactor is not None  # the check ran and passed


def test_holm_rejects_step_down():
    p = torch.tensor([0.001, 0.04, 0.012, 0.5])
    assert holm(p, 0.05).tolist() == [True, False, True, False]  # 0.001 ≤ .05/4, 0.012 ≤ .05/3, 0.04 > .05/2


def test_progressive_never_removes_locked_units_and_meets_the_target():
    from fewprune.allocation import Probe

    model, x, space, scores = scored_resnet20()
    scores = fp.criteria.Scores(scores)
    scores.locked = {g.id: [int(scores[g.id].argmin())] for g in space.prunable}  # lock the first candidates
    probe = Probe(rescore=lambda removed: scores, class_accuracy=lambda removed: [1.0, 1.0])
    removed = fp.allocation.allocate(space, scores, fp.Target(macs=0.4), "progressive", probe=probe)
    assert abs(fp.allocation.reduction(space, removed, "macs") - 0.4) <= 0.01
    assert all(not set(removed.get(gid, ())) & set(units) for gid, units in scores.locked.items())


def test_cswap_compresses_without_fine_tuning_and_re_estimates_only_the_next_candidates():
    teacher = build("resnet20", num_classes=10, in_channels=1).eval()
    x = torch.randn(8, 1, 28, 28)
    relaxed = fp.methods.Method("cswap", allocation="progressive", allocation_options={"tolerance": 1.0})
    result = fp.compress(teacher, x, method=relaxed, target=fp.Target(macs=0.15), progress=False)
    assert abs(result.report["macs_reduction"] - 0.15) <= 0.01
    assert result.report["allocation"]["steps"][0]["removed"] == 0.0
    space = PruningSpace(teacher, x[:1])
    full = criteria.get("cswap")(teacher, space, Batch(x, None, teacher))
    gid = space.prunable[0].id
    partial = criteria.get("cswap")(teacher, space, Batch(x, None, teacher), previous=full, only={gid: [2, 0]})
    assert torch.equal(partial[gid], full[gid])  # same model: re-estimated units agree, the others are kept
    assert all(torch.equal(partial[g], full[g]) for g in full)


def test_progressive_stops_before_the_sample_accuracy_drops():
    from fewprune.allocation import Probe

    model, x, space, scores = scored_resnet20()
    probe = Probe(rescore=lambda removed: scores,
                  class_accuracy=lambda removed: [1.0] if sum(map(len, removed.values())) < 30 else [0.5])
    with pytest.raises(fp.TargetUnreachable, match="accuracy on the samples"):
        fp.allocation.allocate(space, scores, fp.Target(macs=0.5), "progressive", probe=probe)
    assert all(step["accuracy"] == 1.0 for step in probe.log)


def test_progressive_narrows_a_step_that_hurts_and_grows_it_back_after_one_that_holds():
    from fewprune.allocation import Probe

    model, x, space, scores = scored_resnet20()
    accepted = [0]

    def accuracy(removed):  # until 20 units are gone, a step of more than 12 at once "hurts"
        count = sum(map(len, removed.values()))
        return [1.0] if count - accepted[-1] <= 12 or accepted[-1] >= 20 else [0.0]

    def rescore(removed, **_):
        accepted.append(sum(map(len, removed.values())))
        return scores

    probe = Probe(rescore=rescore, class_accuracy=accuracy)
    removed = fp.allocation.allocate(space, scores, fp.Target(macs=0.3), "progressive", probe=probe)
    assert abs(fp.allocation.reduction(space, removed, "macs") - 0.3) <= 0.01
    steps = [b - a for a, b in zip(accepted, accepted[1:], strict=False)]
    early = [step for step, before in zip(steps, accepted, strict=False) if before < 20]
    assert early and max(early) <= 12  # narrowed while steps hurt
    assert max(steps) > 12  # grown back once they held


def test_progressive_allows_a_drop_of_exactly_the_tolerance_however_floats_round_it():
    from fewprune.allocation import Probe

    model, x, space, scores = scored_resnet20()
    clean = [1.0, 1.0, 1.0, 1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8]  # mean 0.89
    one_flip = [0.9] + clean[1:]  # one sample of ten in one class: the mean falls by exactly 0.01
    assert sum(one_flip) / 10 < sum(clean) / 10 - 0.01  # ... which float arithmetic makes a little more
    probe = Probe(rescore=lambda removed: scores, class_accuracy=lambda removed: one_flip if removed else clean)
    removed = fp.allocation.allocate(space, scores, fp.Target(macs=0.3), "progressive", probe=probe,
                                     tolerance=0.01)
    assert abs(fp.allocation.reduction(space, removed, "macs") - 0.3) <= 0.01
