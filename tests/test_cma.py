"""CMa: concept masks, block divergence, the DE allocator, CMaMix and the cma methods."""

import copy
import re
from dataclasses import replace

import pytest
import torch
from torch import nn

import fewprune as fp
from fewprune.allocation import differential_evolution
from fewprune.augment import augmentations, paste
from fewprune.criteria import Batch, criteria
from fewprune.criteria.concept_mask import as_spatial, block_divergence, concept_mask, mask_divergence
from fewprune.models import build
from fewprune.recovery import Schedule
from fewprune.structure import PruningSpace
from model_state import same, snapshot

FAST_MIR = {"mir": {"schedule": Schedule(iterations=4, batch_size=8)}}


def resnet20():
    return build("resnet20", num_classes=10, in_channels=1, image_size=28).eval()


def test_one_hot_spot_gives_a_mask_of_theta_pixels_around_it():
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    spot = torch.exp(-((ys - 2) ** 2 + (xs - 5) ** 2) / 4)[None, None]  # peak at row 2, column 5
    mask = concept_mask(spot, (32, 32), theta=0.2)[0, 0]
    assert mask.dtype == torch.bool and mask.shape == (32, 32)
    assert abs(mask.sum().item() / (32 * 32) - 0.2) < 0.05
    rows, cols = mask.nonzero().float().mean(0).tolist()  # the region sits on the spot (×4 upsampling)
    assert abs(rows - (2 * 4 + 1.5)) < 2 and abs(cols - (5 * 4 + 1.5)) < 2


def test_a_dead_channel_has_an_empty_mask_and_a_sparse_one_keeps_its_non_zeros():
    maps = torch.zeros(1, 2, 8, 8)
    maps[0, 1, 3, 3] = 1.0  # threshold is 0 (1 of 64 active): keep only where the upsampled map is non-zero
    mask = concept_mask(maps, (16, 16))
    assert mask[0, 0].sum() == 0
    assert 0 < mask[0, 1].sum() < 16 * 16 * 0.1


def test_identical_block_input_and_output_diverge_by_zero():
    x = torch.rand(2, 4, 7, 7)
    assert mask_divergence(x, x.clone(), (28, 28)) == 0
    assert mask_divergence(x, x.flip(-1), (28, 28)) > 0


def test_tokens_are_laid_out_on_their_patch_grid():
    tokens = torch.arange(2 * 17 * 3.0).reshape(2, 17, 3)  # class token + 4×4 patches
    grid = as_spatial(tokens)
    assert grid.shape == (2, 3, 4, 4) and torch.equal(grid[:, :, 0, 1], tokens[:, 2])
    with pytest.raises(ValueError, match="square"):
        as_spatial(torch.zeros(1, 7, 3))


def test_a_block_that_does_nothing_has_the_least_divergence():
    model = resnet20()
    with torch.no_grad():  # layer2.2's residual branch now adds zero: its output is relu(input) = input
        model.layer2[2].bn2.weight.zero_()
        model.layer2[2].bn2.bias.zero_()
    x = torch.randn(8, 1, 28, 28)
    before = snapshot(model)
    space = PruningSpace(model, x[:1])
    divergence = block_divergence(model, space.blocks, x, batch_size=3)
    same(before, snapshot(model))
    assert divergence["layer2.2"] == 0 and min(divergence, key=divergence.get) == "layer2.2"
    assert all(v > 0 for b, v in divergence.items() if b != "layer2.2")
    scores = criteria.get("cma-block")(model, space, Batch(x, None, model))
    assert scores == {b: float(v) for b, v in divergence.items()}


def test_de_meets_a_linear_constraint_and_never_worsens_its_best():
    weights = torch.tensor([3.0, 1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    goal = 2.0
    desired = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15], dtype=torch.float64)
    search = differential_evolution(
        objective=lambda r: float((r / r.sum() - desired).abs().sum()),
        violation=lambda r: max(0.0, abs(float(weights @ r) - goal) - 4e-4),
        lower=torch.full((5,), 0.1), upper=torch.full((5,), 0.9), population=30, generations=60, seed=3)
    assert abs(float(weights @ search.best) - goal) <= 4e-4 + 1e-12
    assert search.violation == 0
    assert ((search.best >= 0.1) & (search.best <= 0.9)).all()
    for (v0, f0), (v1, f1) in zip(search.trace, search.trace[1:], strict=False):
        assert v1 < v0 or (v1 == v0 and f1 <= f0)
    again = differential_evolution(
        objective=lambda r: float((r / r.sum() - desired).abs().sum()),
        violation=lambda r: max(0.0, abs(float(weights @ r) - goal) - 4e-4),
        lower=torch.full((5,), 0.1), upper=torch.full((5,), 0.9), population=30, generations=60, seed=3)
    assert torch.equal(again.best, search.best)


@pytest.mark.parametrize("kind,value", [("macs", 0.5), ("params", 0.4)])
def test_de_allocation_follows_the_profile_and_meets_the_target(kind, value):
    model = resnet20()
    x = torch.randn(8, 1, 28, 28)
    space = PruningSpace(model, x[:1], protect_features=True)
    scores = criteria.get("cma")(model, space, Batch(x, None, model))
    least, most = min(scores.blocks, key=scores.blocks.get), max(scores.blocks, key=scores.blocks.get)
    removed = fp.allocation.allocate(space, scores, fp.Target(**{kind: value}), "de")
    assert abs(fp.allocation.reduction(space, removed, kind) - value) <= 0.01
    inner = {gid: len(r) / space.group(gid).size for gid, r in removed.items()}
    assert set(inner) <= {f"{b}.conv1" for b in space.blocks}  # only inner channels of blocks are pruned
    assert inner[f"{least}.conv1"] > inner[f"{most}.conv1"]  # the block that changes least loses more
    with pytest.raises(ValueError, match="per-block scores"):
        fp.allocation.allocate(space, criteria.get("l1")(model, space, Batch(x, None, model)),
                               fp.Target(macs=0.3), "de")


def test_de_prunes_outside_the_blocks_only_when_their_inner_channels_cannot_carry_the_target():
    # A MobileNetV2's residual blocks hold about half its MACs: CMa's profile alone stops near 50%.
    model = build("mobilenetv2", num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(8, 1, 28, 28)
    space = PruningSpace(model, x[:1], protect_features=True)
    scores = criteria.get("cma")(model, space, Batch(x, None, model))
    inner = {f"{b}." for b in scores.blocks}
    outside = lambda removed: {g for g, r in removed.items() if r and not any(g.startswith(b) for b in inner)}  # noqa: E731
    small = fp.allocation.allocate(space, scores, fp.Target(macs=0.3), "de")
    assert abs(fp.allocation.reduction(space, small, "macs") - 0.3) <= 0.01 and not outside(small)
    with pytest.raises(fp.allocation.TargetUnreachable, match="reached"):
        fp.allocation.allocate(space, scores, fp.Target(macs=0.7), "de", outside="keep")
    large = fp.allocation.allocate(space, scores, fp.Target(macs=0.7), "de")
    assert abs(fp.allocation.reduction(space, large, "macs") - 0.7) <= 0.01 and outside(large)
    assert fp.allocation.allocate(space, scores, fp.Target(macs=0.7), "de") == large  # same seed, same plan


def test_auto_blocks_says_why_no_block_count_reaches_the_target():
    model = build("mobilenetv2", num_classes=10, in_channels=1, image_size=28).eval()
    recipe = replace(fp.methods.get("cma"), allocation_options={"outside": "keep", "generations": 5})
    with pytest.raises(fp.allocation.TargetUnreachable) as refusal:
        fp.compress(model, torch.randn(8, 1, 28, 28), method=recipe, target=fp.Target(macs=0.7, blocks="auto"),
                    progress=False)
    message = str(refusal.value)
    assert "with any number of dropped blocks" in message and "no shape-preserving residual block" in message


def test_auto_blocks_drops_whole_blocks_before_cma_prunes_outside_them():
    # With min_width 16 a resnet20's inner channels alone cannot give half its MACs; pruning the residual
    # streams could, but auto-blocks first tries every count with DE kept inside the profiled blocks.
    x = torch.randn(8, 1, 28, 28)
    recipe = replace(fp.methods.get("cma"), recovery="none", augment=None, allocation_options={"generations": 5})
    options = {"min_width": 16, "round_to": 16, "progress": False}
    result = fp.compress(resnet20(), x, method=recipe, target=fp.Target(macs=0.5, blocks="auto"), **options)
    dropped, removed = result.plan.dropped_blocks, result.plan.removed
    assert dropped and result.report["macs_reduction"] == pytest.approx(0.5, abs=0.01)
    outside = lambda removed: [g for g, r in removed.items() if r and not re.fullmatch(r"layer\d\.\d\.conv1", g)]  # noqa: E731
    assert not outside(removed)  # only the blocks' inner convs lose channels, not the residual streams
    tried = result.report["fewer_blocks_tried"]
    assert [t["blocks"] for t in tried] == list(range(len(dropped)))
    assert all(t["allocation_options"] == {"outside": "keep"} for t in tried)
    # the user's own choice is respected: with outside pruning allowed outright, fewer blocks need to go
    allowed = replace(recipe, allocation_options={"generations": 5, "outside": "as-needed"})
    anyway = fp.compress(resnet20(), x, method=allowed, target=fp.Target(macs=0.5, blocks="auto"), **options)
    assert len(anyway.plan.dropped_blocks) < len(dropped) and outside(anyway.plan.removed)
    assert all("allocation_options" not in t for t in anyway.report.get("fewer_blocks_tried", []))


def test_auto_blocks_prunes_outside_the_blocks_when_no_block_count_reaches_the_target_inside_them():
    # A MobileNetV2's blocks hold about half its MACs: no count of dropped blocks reaches 70% inside them, so
    # after trying every count with DE kept inside, the search prunes outside them with no block dropped.
    model = build("mobilenetv2", num_classes=10, in_channels=1, image_size=28).eval()
    recipe = replace(fp.methods.get("cma"), recovery="none", augment=None, allocation_options={"generations": 5})
    result = fp.compress(model, torch.randn(8, 1, 28, 28), method=recipe, target=fp.Target(macs=0.7, blocks="auto"),
                         progress=False)
    assert result.plan.dropped_blocks == [] and result.report["macs_reduction"] == pytest.approx(0.7, abs=0.01)
    tried = result.report["fewer_blocks_tried"]
    assert tried and all(t["allocation_options"] == {"outside": "keep"} for t in tried)
    assert [t["blocks"] for t in tried] == list(range(len(tried)))  # one more block at a time, from none


def test_cmamix_pastes_the_partners_salient_region():
    images, partners = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    assert torch.equal(paste(images, partners, torch.ones(4, 1, 8, 8)), partners)
    assert torch.equal(paste(images, partners, torch.zeros(4, 1, 8, 8)), images)

    model = resnet20()
    x = torch.randn(6, 1, 28, 28)
    before = snapshot(model)
    mix = augmentations.get("cmamix")(model, x[:1])
    mixed = mix(x, torch.Generator().manual_seed(0))
    same(before, snapshot(model))
    order = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    from_partner = mixed == x[order]
    assert ((mixed == x) | from_partner).all()  # every pixel is the image's own or its partner's
    share = from_partner.float().mean().item()
    assert 0.1 < share < 0.4  # about θ = 20% of each image is pasted


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_comparison_mixes_blend_with_a_partner_reproducibly(name):
    x = torch.rand(5, 1, 8, 8)
    mix = augmentations.get(name)(None, x[:1])
    first, second = mix(x, torch.Generator().manual_seed(1)), mix(x, torch.Generator().manual_seed(1))
    assert torch.equal(first, second) and not torch.equal(first, x)
    assert first.min() >= 0 and first.max() <= 1
    assert augmentations.get("nomix")(None, x[:1]) is None


@pytest.mark.parametrize("method,target", [("cma", fp.Target(macs=0.5)), ("cma-block", fp.Target(blocks=2)),
                                           ("cma+mixup", fp.Target(macs=0.4)), ("l1+mir+cutmix", fp.Target(macs=0.4))])
def test_cma_methods_compress_label_free_and_leave_the_teacher(method, target):
    model = resnet20()
    teacher_before = copy.deepcopy(model.state_dict())
    x = torch.randn(12, 1, 28, 28)
    recipe = replace(fp.methods.get(method), recovery_options=FAST_MIR)
    result = fp.compress(model, x, method=recipe, target=target, seed=0, progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in teacher_before.items())
    assert result.report["recovery"]["mir"]["iterations"] == 4
    if target.kind == "macs":
        assert abs(result.report["macs_reduction"] - target.value) <= 0.01
    else:
        assert len(result.plan.dropped_blocks) == 2
    again = fp.compress(model, x, method=recipe, target=target, seed=0, progress=False)
    assert again.plan.to_dict() == result.plan.to_dict()
    with torch.no_grad():
        assert torch.equal(again.student(x), result.student(x))


def test_an_augmentation_without_a_training_recovery_is_refused():
    with pytest.raises(ValueError, match="needs a training recovery"):
        fp.compress(resnet20(), torch.randn(4, 1, 28, 28), method="l1+bn+cmamix", target=fp.Target(macs=0.3),
                    progress=False)
    with pytest.raises(ValueError, match="more than one augmentation"):
        fp.methods.get("l1+mir+cmamix+mixup")


def test_a_composition_of_the_cma_criterion_allocates_by_its_block_profile():
    # "cma+lsq" once fell back to the uniform allocator, which ignores the block profile: plain L1's plan
    assert fp.methods.get("cma+lsq").allocation == "de" and fp.methods.get("cma+mir").block_criterion == "cma-block"
    model, x = resnet20(), torch.randn(12, 1, 28, 28)
    composed = replace(fp.methods.get("cma+bn"), allocation_options={"generations": 5})
    registered = replace(fp.methods.get("cma"), recovery="bn", augment=None, allocation_options={"generations": 5})
    plans = [fp.compress(model, x, method=recipe, target=fp.Target(macs=0.4), seed=0, progress=False).plan.to_dict()
             for recipe in (composed, registered, "l1+bn")]
    assert plans[0] == plans[1] and plans[0] != plans[2]


class GroupedResidual(nn.Module):
    """A ResNeXt-like block: its inner channels pass a grouped (not depthwise) convolution."""

    def __init__(self, width=8):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, groups=2, bias=False), nn.BatchNorm2d(width)

    def forward(self, x):
        return x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


def test_de_names_why_no_block_has_prunable_inner_channels():
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),  # 6 prunable
                          GroupedResidual(), GroupedResidual(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10)).eval()
    with pytest.raises(ValueError, match=r"no block has prunable inner channels .*: 3\.conv2 is a grouped convolution"):
        fp.compress(model, torch.randn(4, 1, 12, 12), method="cma", target=fp.Target(macs=0.2), progress=False)
