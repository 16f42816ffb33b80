import copy
import dataclasses

import pytest
import torch
from torch import nn

import fewprune as fp
from fewprune.criteria import Batch
from fewprune.models import build
from fewprune.models.features import modules_after
from fewprune.recovery import Schedule, recoveries


def model_and_batch(name="resnet20", n=16):
    model = build(name, num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(n, 1, 28, 28)
    return model, Batch(x, torch.randint(0, 10, (n,)), model)


@pytest.mark.parametrize("recovery", ["mir", "mir-blocks"])
@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "vit"])
def test_mir_on_a_student_identical_to_the_teacher_changes_nothing(name, recovery):
    teacher, batch = model_and_batch(name)
    student = copy.deepcopy(teacher)
    # Contiguous layout: NHWC training computes the same features up to float rounding, not bit for bit.
    still = Schedule(iterations=5, batch_size=8, weight_decay=0.0, bn="frozen", channels_last=False)
    structure = {"pruned": fp.structure.Pruned(blocks=fp.structure.find_blocks(teacher, batch.images[:1]))} \
        if recovery == "mir-blocks" else {}
    stats = recoveries.get(recovery)(student, teacher, batch, schedule=still, recalibrate=False, progress=False,
                                     **structure)
    assert stats["first_loss"] == 0 and stats["last_loss"] == 0
    for (k, a), b in zip(teacher.state_dict().items(), student.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_training_in_channels_last_leaves_the_student_contiguous_and_close_to_contiguous_training():
    teacher, batch = model_and_batch("resnet20")
    students = {}
    for layout in (True, False):
        student = copy.deepcopy(teacher)
        recoveries.get("kd")(student, teacher, batch, schedule=Schedule(iterations=6, batch_size=8,
                                                                          channels_last=layout), progress=False)
        assert all(p.is_contiguous() for p in student.parameters())
        students[layout] = student
    x = batch.images[:4]
    with torch.no_grad():
        torch.testing.assert_close(students[True](x), students[False](x), rtol=1e-4, atol=1e-4)
        assert not torch.equal(students[True](x), teacher(x))  # it did train


@pytest.mark.parametrize("name,head", [("resnet20", ["fc"]), ("vgg16", ["classifier"]), ("vit", ["head"]),
                                       ("mobilenetv2", ["classifier.1"])])
def test_mir_never_updates_the_frozen_head(name, head):
    teacher, batch = model_and_batch(name)
    assert modules_after(teacher, fp.models.feature_layer(teacher), batch.images) == head
    quick = {"mir": {"schedule": Schedule(iterations=4, batch_size=8)}}
    method = fp.methods.Method("l1", recovery="mir", protect_features=True, recovery_options=quick)
    result = fp.compress(teacher, (batch.images, batch.labels), target=fp.Target(macs=0.3), method=method,
                         progress=False)
    student_head = result.student.get_submodule(head[0])
    teacher_head = teacher.get_submodule(head[0])
    assert torch.equal(student_head.weight, teacher_head.weight) and torch.equal(student_head.bias, teacher_head.bias)
    assert all(p.requires_grad for p in result.student.parameters())  # flags restored
    assert result.report["recovery"]["mir"]["first_loss"] > 0  # something was learned elsewhere


def test_mir_methods_keep_the_feature_width():
    teacher, batch = model_and_batch()
    assert fp.methods.get("l1+mir").protect_features and fp.methods.get("taylor@global+mir").protect_features
    result = fp.compress(teacher, (batch.images, batch.labels), method="l1", target=fp.Target(macs=0.5),
                         progress=False)
    assert result.student.fc.in_features < 64  # plain L1 may narrow the features...
    from dataclasses import replace

    mir = replace(fp.methods.get("l1+mir"), recovery_options={"mir": {"schedule": Schedule(iterations=2, batch_size=8)}})
    kept = fp.compress(teacher, (batch.images, batch.labels), method=mir, target=fp.Target(macs=0.5), progress=False)
    assert kept.student.fc.in_features == 64  # ...MiR keeps them


def test_bn_recalibration_only_touches_running_statistics():
    teacher, batch = model_and_batch()
    student = copy.deepcopy(teacher)
    recoveries.get("bn")(student, teacher, batch, progress=False)
    for (k, a), b in zip(teacher.state_dict().items(), student.state_dict().values(), strict=True):
        if "running" in k or "num_batches" in k:
            continue
        assert torch.equal(a, b), k
    assert not torch.equal(teacher.bn1.running_mean, student.bn1.running_mean)
    # The new statistics are those of the samples the first (un-augmented) pass saw.
    with torch.no_grad():
        stem = teacher.conv1(batch.images)
    assert torch.allclose(student.bn1.running_mean, stem.mean((0, 2, 3)), atol=0.05)


@pytest.mark.parametrize("side", ["out", "in"])
@pytest.mark.parametrize("layer", [torch.nn.Conv2d(6, 6, 3, padding=1), torch.nn.Linear(6, 6)], ids=["conv", "linear"])
def test_absorbing_an_adaptor_equals_applying_it(side, layer):
    from fewprune.recovery.adaptors import absorb_input, absorb_output

    x = torch.randn(2, 6, 9, 9) if isinstance(layer, torch.nn.Conv2d) else torch.randn(4, 6)
    q = torch.randn(6, 6)
    mix = (lambda t: torch.einsum("oc,nchw->nohw", q, t)) if x.ndim == 4 else (lambda t: t @ q.T)
    layer = copy.deepcopy(layer)
    with torch.no_grad():
        expected = mix(layer(x)) if side == "out" else layer(mix(x))
        (absorb_output if side == "out" else absorb_input)(layer, q)
        assert torch.allclose(layer(x), expected, atol=1e-5)


class ChannelsLastMLP(nn.Module):
    """A ConvNeXt-like block: its linear layers run on a channels-last 4-D map (20×20, wider than the 16 hidden
    channels, so channels taken from the wrong dim would not even fail)."""

    def __init__(self):
        super().__init__()
        self.stem, self.fc1, self.fc2, self.head = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(8, 16), nn.Linear(16, 8), \
            nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.fc2(torch.relu(self.fc1(x.permute(0, 2, 3, 1)))).permute(0, 3, 1, 2)
        return self.head(x.mean((2, 3)))


def silenced_student(name: str):
    """A teacher whose channels a random plan removes already read as zero, its pruned student, the images and what
    was pruned: a recovery has nothing left to correct."""
    from fewprune.structure import Pruned, PruningSpace, masked_copy
    from test_structure import random_plan, randomise_bn

    model = ChannelsLastMLP() if name == "channels-last-mlp" else build(name, num_classes=10, in_channels=1)
    model = randomise_bn(model).eval()
    x = torch.randn(32, 1, 20, 20) if name == "channels-last-mlp" else torch.randn(32, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    plan = random_plan(space, tuple(x.shape[1:]), fraction=0.4)
    silenced = masked_copy(model, plan, space.groups)
    return plan.apply(copy.deepcopy(silenced)), silenced, x, Pruned.from_plan(plan, space.groups)


@pytest.mark.parametrize("name", ["resnet20", "channels-last-mlp"])
def test_fskd_on_already_silenced_channels_reproduces_the_teacher_exactly(name):
    from fewprune.recovery.fskd import fskd

    student, silenced, x, pruned = silenced_student(name)
    stats = fskd(student, silenced, Batch(x, None, silenced), pruned=pruned)
    # Nothing to correct: every fitted correction is the identity and the outputs stay the teacher's.
    assert stats["layers"] and all(s["mse_before"] < 1e-10 and s["mse_after"] < 1e-10 for s in stats["layers"])
    with torch.no_grad():
        assert torch.allclose(student(x), silenced(x), atol=1e-4)


def test_fskd_reduces_the_output_error_through_compress():
    teacher, batch = model_and_batch(n=48)
    plain = fp.compress(teacher, batch.images, method="l1", target=fp.Target(macs=0.5), progress=False)
    fitted = fp.compress(teacher, batch.images, method="l1+fskd", target=fp.Target(macs=0.5), progress=False)
    with torch.no_grad():
        target = teacher(batch.images)
        fitted_error = (fitted.student(batch.images) - target).pow(2).mean()
        assert fitted_error < 0.5 * (plain.student(batch.images) - target).pow(2).mean()


def test_recoveries_chain_in_order():
    teacher, batch = model_and_batch()
    recipe = fp.methods.get("l1+fskd+mir")
    assert recipe.recovery == "fskd+mir" and recipe.protect_features
    from dataclasses import replace

    quick = replace(recipe, recovery_options={"mir": {"schedule": Schedule(iterations=3, batch_size=8)}})
    result = fp.compress(teacher, batch.images, method=quick, target=fp.Target(macs=0.4), progress=False)
    assert list(result.report["recovery"]) == ["fskd", "mir"]
    assert result.report["recovery"]["mir"]["iterations"] == 3


def test_adaptors_leave_the_model_as_it_was_unless_absorbed():
    from fewprune.recovery.adaptors import Adaptors
    from model_state import same, snapshot

    model, batch = model_and_batch()
    before, reference = snapshot(model), model(batch.images).detach()
    sites = [("layer2.1.conv1", "in"), ("layer2.1.conv2", "out")]
    with Adaptors(model, sites) as adaptors:
        for q in adaptors.parameters():
            q.data += 0.05 * torch.randn_like(q)
        with torch.no_grad():
            adapted = model(batch.images)
    same(before, snapshot(model))
    assert not torch.allclose(adapted, reference)
    with Adaptors(model, sites) as adaptors:
        for q, seed in zip(adaptors.parameters(), (1, 2), strict=True):
            q.data += 0.05 * torch.randn(q.shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            adapted = model(batch.images)
        adaptors.absorb()
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0
    with torch.no_grad():
        assert torch.allclose(model(batch.images), adapted, atol=1e-5)


def test_practise_drops_a_zero_residual_block_first_without_changing_any_output():
    from dataclasses import replace

    from fewprune.recovery.practise import SCORING_SCHEDULE, practise_scores
    from fewprune.structure import PruningSpace

    teacher, batch = model_and_batch()
    with torch.no_grad():  # layer2.2's branch is silenced (zero-initialised residual): the block is an identity
        teacher.layer2[2].bn2.weight.zero_()
        teacher.layer2[2].bn2.bias.zero_()
    space = PruningSpace(teacher, batch.images[:1])
    quick = replace(SCORING_SCHEDULE, iterations=3, batch_size=8)
    scores = practise_scores(teacher, space, batch, schedule=quick)
    assert set(scores) == set(space.blocks)
    # Zero up to float rounding (adaptors train in NHWC layout); every other block costs something real.
    others = [v for b, v in scores.items() if b != "layer2.2"]
    assert scores["layer2.2"] < 1e-8 and min(others) > 1e3 * max(scores["layer2.2"], 1e-8), (scores["layer2.2"], min(others))
    recipe = replace(fp.methods.get("practise"), recovery="adapt",
                     criterion_options={"schedule": quick}, recovery_options={"adapt": {"schedule": quick}})
    result = fp.compress(teacher, batch.images, method=recipe, target=fp.Target(blocks=1), progress=False)
    assert result.plan.dropped_blocks == ["layer2.2"]
    with torch.no_grad():
        assert torch.allclose(result.student(batch.images), teacher(batch.images), atol=1e-5)


def test_practise_scoring_length_is_an_option_of_the_method(monkeypatch):
    from fewprune.recovery import practise
    from fewprune.structure import PruningSpace

    trained = []
    real = practise.train_student
    monkeypatch.setattr(practise, "train_student", lambda *a, **k: trained.append(a[3].iterations) or real(*a, **k))
    described = fp.methods.part_options("practise")["criterion"]["options"]
    assert "iterations" in described and "schedule" not in described  # what `fewprune methods practise` lists
    teacher, batch = model_and_batch()
    recipe = dataclasses.replace(fp.methods.with_options("practise", {"criterion.iterations": 2}),
                                 recovery="none", augment=None)
    fp.compress(teacher, batch.images, method=recipe, target=fp.Target(blocks=1), progress=False)
    candidates = PruningSpace(teacher, batch.images[:1]).blocks
    assert len(trained) == len(candidates) > 1 and set(trained) == {2}  # one short run per candidate block
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="whole number of steps"):
            fp.compress(teacher, batch.images, target=fp.Target(blocks=1), progress=False,
                        method=fp.methods.with_options("practise", {"criterion.iterations": bad}))


def _pruned_keeping_features():
    """A resnet20 teacher, its few samples, and the L1 student at 50% MACs with the feature width kept (as MiR needs)."""
    teacher, batch = model_and_batch("resnet20")
    keep_features = dataclasses.replace(fp.methods.get("l1"), protect_features=True)  # as every MiR method does
    result = fp.compress(teacher, batch.images, method=keep_features, target=fp.Target(macs=0.5), progress=False)
    pruned = fp.structure.Pruned.from_plan(result.plan, fp.structure.PruningSpace(teacher, batch.images[:1]).groups,
                                           fp.structure.find_blocks(teacher, batch.images[:1]))
    return teacher, batch, result, pruned


def test_block_mimicking_compares_each_block_with_the_channels_the_student_kept():
    from fewprune.recovery.mir import block_output_channels

    teacher, batch, result, pruned = _pruned_keeping_features()
    example = batch.images[:1]
    from fewprune.models.features import capture

    for block in ("layer1.1", "layer2.2"):
        kept = block_output_channels(teacher, block, pruned, example)
        with torch.no_grad(), capture(result.student, block) as s_out, capture(teacher, block) as t_out:
            result.student(example)
            teacher(example)
        assert kept is not None and len(kept) == s_out[block].shape[1] < t_out[block].shape[1]
    stats = recoveries.get("mir-blocks")(copy.deepcopy(result.student), teacher, batch, pruned=pruned,
                                         schedule=Schedule(iterations=3, batch_size=8), progress=False)
    assert stats["blocks"] and stats["first_loss"] > 0


def _pruned_resnet20(batch):
    teacher = build("resnet20", num_classes=10, in_channels=1, image_size=28).eval()
    result = fp.compress(teacher, batch.images, method="l1", target=fp.Target(macs=0.5), progress=False)
    space = fp.structure.PruningSpace(teacher, batch.images[:1])
    return teacher, result, fp.structure.Pruned.from_plan(result.plan, space.groups)


def test_kept_inputs_are_what_the_student_layer_reads():
    _, batch = model_and_batch("resnet20")
    teacher, result, pruned = _pruned_resnet20(batch)
    assert pruned.kept_inputs and set(pruned.kept_inputs) == set(pruned.reduced_inputs)
    for name, kept in pruned.kept_inputs.items():
        layer = result.student.get_submodule(name)
        assert len(kept) == layer.weight.shape[1] < teacher.get_submodule(name).weight.shape[1]
        # the student's weights are the teacher's on exactly those inputs (before any recovery)
        teacher_w = teacher.get_submodule(name).weight
        rows = pruned.kept_outputs.get(name, torch.arange(teacher_w.shape[0]))
        assert torch.equal(layer.weight, teacher_w[rows][:, kept])


def test_cross_distillation_lowers_every_layer_loss_and_changes_nothing_when_nothing_was_pruned():
    _, batch = model_and_batch("resnet20")
    teacher, result, pruned = _pruned_resnet20(batch)
    student = copy.deepcopy(result.student)
    stats = recoveries.get("cd")(student, teacher, batch, pruned=pruned, iterations=20, progress=False)
    layers = stats["layers"]
    assert layers and all(s["loss_after"] < s["loss_before"] or s["loss_before"] == s["loss_after"] == 0
                          for s in layers) and sum(s["loss_before"] > 0 for s in layers) > len(layers) // 2
    same = copy.deepcopy(teacher)
    stats = recoveries.get("cd")(same, teacher, batch, pruned=fp.structure.Pruned(), iterations=5, progress=False)
    assert stats["layers"] == [] and all(torch.equal(a, b) for a, b in
                                         zip(same.state_dict().values(), teacher.state_dict().values(), strict=True))


@pytest.mark.parametrize("layer", [
    nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False),
    nn.Conv2d(3, 4, 3, dilation=2, padding="same", padding_mode="reflect"), nn.Conv2d(3, 4, (1, 3)), nn.Linear(3, 4),
    nn.Conv2d(6, 4, 3, padding=1, groups=2), nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False),
    nn.Conv2d(3, 6, 3, groups=3)],
    ids=["conv", "strided", "dilated-reflect", "1x3", "linear", "grouped", "depthwise", "depthwise-multiplier"])
def test_least_squares_solves_its_objective_for_every_layer_form(layer):
    """The closed form zeroes the objective's gradient, taken through the layer itself: patches match the kernel."""
    from fewprune.models.features import channel_rows
    from fewprune.recovery.lsq import NormalEquations, _flat_weight, _set_flat_weight, layer_patches

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, layer.in_channels, 9, 9, generator=gen) if isinstance(layer, nn.Conv2d) \
        else torch.randn(6, 5, 3, generator=gen)
    target = copy.deepcopy(layer)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(torch.randn(p.shape, generator=gen))
        reachable = target(x)
        y = reachable + 0.1 * torch.randn(reachable.shape, generator=gen)  # not reachable exactly
    equations = NormalEquations()
    with torch.no_grad():
        equations.add(layer_patches(layer, x), channel_rows(y))
        start = _flat_weight(layer).clone()
        ridge = 1e-2
        solution = equations.solve(start, ridge)
        _set_flat_weight(layer, solution)
    lam = ridge * equations.gram.diagonal(dim1=1, dim2=2).mean(dim=1)  # one system, and one λ, per group
    objective = (layer(x) - y).pow(2).sum() + (lam[:, None, None] * (_flat_weight(layer) - start).pow(2)).sum()
    grads = torch.autograd.grad(objective, list(layer.parameters()))
    assert max(g.abs().max() for g in grads) < 1e-3 * objective.item()
    # the error the normal equations report is the layer's own
    assert equations.mse(solution) == pytest.approx((layer(x) - y).pow(2).mean().item(), rel=1e-4)


@pytest.mark.parametrize("layer", [nn.Linear(40, 3), nn.Conv2d(6, 4, 3, groups=2)], ids=["linear", "grouped"])
def test_the_kernel_form_solves_the_same_ridge_problem_as_the_normal_equations(layer):
    """Fewer rows than features (a wide classifier on few images): the rows × rows kernel gives the same weights."""
    from fewprune.models.features import channel_rows
    from fewprune.recovery.lsq import KernelEquations, NormalEquations, _flat_weight, layer_patches

    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(3, 40, generator=gen) if isinstance(layer, nn.Linear) else
               torch.randn(1, 6, 4, 4, generator=gen) for _ in range(2)]
    normal, kernel = NormalEquations(), KernelEquations()
    with torch.no_grad():
        for x in batches:
            patches, y = layer_patches(layer, x), channel_rows(layer(x) + torch.randn(layer(x).shape, generator=gen))
            assert patches.shape[1] * len(batches) < patches.shape[2]  # the case the kernel form is for
            normal.add(patches, y)
            kernel.add(patches, y)
        start = _flat_weight(layer)
        for ridge in (1e-2, 1.0):
            assert torch.allclose(kernel.solve(start, ridge), normal.solve(start, ridge), atol=1e-5)
        assert kernel.mse(start) == pytest.approx(normal.mse(start), rel=1e-9)


def test_least_squares_picks_the_kernel_form_for_a_wide_layer_and_gets_the_same_student(monkeypatch):
    import fewprune.recovery.lsq as lsq

    teacher = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
                            nn.Linear(8 * 8 * 8, 10)).eval()
    x = torch.randn(6, 1, 12, 12)
    normal = fp.compress(teacher, x, method="l1+lsq", target=fp.Target(channels=0.5), progress=False)
    monkeypatch.setattr(lsq, "GRAM_LIMIT_BYTES", 0)  # as if every Gram were too large
    kernel = fp.compress(teacher, x, method="l1+lsq", target=fp.Target(channels=0.5), progress=False)
    forms = {s["layer"]: s["form"] for s in kernel.report["recovery"]["lsq"]["layers"]}
    assert forms["5"] == "kernel" and {s["form"] for s in normal.report["recovery"]["lsq"]["layers"]} == {"normal"}
    with torch.no_grad():
        assert torch.allclose(kernel.student(x), normal.student(x), atol=1e-4)


# MobileNetV2: depthwise convs refitted channel by channel
@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "channels-last-mlp"])
def test_least_squares_on_already_silenced_channels_reproduces_the_teacher_exactly(name):
    student, silenced, x, pruned = silenced_student(name)
    stats = recoveries.get("lsq")(student, silenced, Batch(x, None, silenced), pruned=pruned, views=2,
                                  progress=False)
    # The cut weights already give the teacher's outputs, on the samples and their shifted copies: the fit keeps them.
    assert stats["layers"] and all(s["mse_before"] < 1e-10 and s["mse_after"] < 1e-10 for s in stats["layers"])
    with torch.no_grad():
        assert torch.allclose(student(x), silenced(x), atol=1e-4)


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2"])
def test_least_squares_fits_every_pruned_layer_and_beats_fskd_through_compress(name):
    from test_structure import randomise_bn

    teacher, batch = model_and_batch(name, n=48)
    # In a fresh MobileNetV2 the signal fades ~10× per stage through eval-mode BNs of unit running variance, so its
    # logits are its head's bias and pruning changes them only by float rounding (relative error ~1e-16): which fit
    # came closer would be decided by rounding. Real BN statistics keep the signal.
    randomise_bn(teacher)
    errors = {}
    for method in ("l1", "l1+fskd", "l1+lsq"):
        # lsq on the samples alone (views=1), so that both fits saw exactly the images the error is taken on
        recipe = fp.methods.with_options(method, {"lsq.views": 1}) if method == "l1+lsq" else method
        result = fp.compress(teacher, batch.images, method=recipe, target=fp.Target(macs=0.5), progress=False)
        with torch.no_grad():
            errors[method] = (result.student(batch.images) - teacher(batch.images)).pow(2).mean().item()
        if method == "l1+lsq":
            layers = result.report["recovery"]["lsq"]["layers"]
            assert all(s["mse_after"] <= s["mse_before"] for s in layers)
            refitted = [result.student.get_submodule(s["layer"]) for s in layers]
            assert any(getattr(layer, "groups", 1) > 1 for layer in refitted) == (name == "mobilenetv2")
            assert sum(s["mse_after"] < 0.9 * s["mse_before"] for s in layers) > len(layers) // 2
    # the whole kernel refitted does more than FSKD's 1×1 output mixing, on the samples it saw
    with torch.no_grad():
        assert errors["l1"] > 1e-2 * teacher(batch.images).pow(2).mean().item()  # pruning alone is far off
    assert errors["l1+lsq"] < errors["l1+fskd"] < errors["l1"]


def test_least_squares_views_per_sample():
    from fewprune.recovery.lsq import views_per_sample

    assert [views_per_sample("auto", n) for n in (1, 10, 50, 100, 256, 500)] == [8, 8, 6, 3, 1, 1]
    assert views_per_sample(3, 10) == 3 and views_per_sample(1, 10) == 1
    for bad in (0, -2, 2.5, "many", True, None):
        with pytest.raises(ValueError, match="lsq views=.*whole number of views per sample"):
            views_per_sample(bad, 10)


def test_least_squares_views_are_the_samples_then_shifted_and_flipped_copies():
    from fewprune.recovery.lsq import with_views

    images = torch.randn(4, 2, 12, 12)
    views = with_views(images, 3, seed=0)
    assert views.shape == (12, 2, 12, 12) and torch.equal(views[:4], images)
    assert torch.equal(with_views(images, 3, seed=0), views) and not torch.equal(with_views(images, 3, seed=1), views)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    for i, view in enumerate(views[4:]):
        source = padded[i % 4]
        candidates = [c for dy in range(5) for dx in range(5) for c in (source[:, dy:dy + 12, dx:dx + 12],)]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(view, c) for c in candidates)  # each copy is its sample, shifted ≤ 2 px, maybe flipped
    assert not all(torch.equal(view, images[i % 4]) for i, view in enumerate(views[4:]))


def test_least_squares_fits_on_views_of_the_samples_reproducibly():
    teacher, batch = model_and_batch("resnet20", n=16)

    def run(seed, **options):
        method = fp.methods.with_options("l1+lsq", {f"lsq.{k}": v for k, v in options.items()})
        return fp.compress(teacher, batch.images, method=method, target=fp.Target(macs=0.5), seed=seed,
                           progress=False)

    auto, again, alone = run(0), run(0), run(0, views=1)
    stats = auto.report["recovery"]["lsq"]
    assert (stats["views"], stats["images"]) == (8, 128)  # 256 images would need 16 views of 16: capped at 8
    assert alone.report["recovery"]["lsq"]["images"] == 16
    first = stats["layers"][0]["layer"]
    rows = {s["layer"]: s["patches"] for s in alone.report["recovery"]["lsq"]["layers"]}
    assert stats["layers"][0]["patches"] == 8 * rows[first]
    state = auto.student.state_dict()
    assert all(torch.equal(v, again.student.state_dict()[k]) for k, v in state.items())  # same seed, same student
    assert any(not torch.equal(v, alone.student.state_dict()[k]) for k, v in state.items())
    assert any(not torch.equal(v, run(1).student.state_dict()[k]) for k, v in state.items())


def test_bf16_recovery_runs_its_forwards_in_bf16_and_stays_close_to_fp32():
    teacher, batch = model_and_batch("resnet20")
    seen = []
    results = {}
    for bf16 in (False, True):
        student = copy.deepcopy(teacher)
        handle = student.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        stats = recoveries.get("kd")(student, teacher, batch, schedule=Schedule(iterations=3, batch_size=8, bf16=bf16),
                                     recalibrate=False, progress=False)
        handle.remove()
        results[bf16] = stats["first_loss"]
    assert seen[0] == torch.float32 and seen[-1] == torch.bfloat16
    assert results[True] != results[False] and abs(results[True] - results[False]) < 0.3 * results[False]


def test_practise_scores_a_hole_no_adaptor_reaches_by_its_plain_error_and_still_runs():
    from dataclasses import replace

    from fewprune.recovery.adaptors import adaptor_sites
    from fewprune.recovery.practise import SCORING_SCHEDULE, recoverability
    from fewprune.structure import PruningSpace, drop_blocks

    teacher, batch = model_and_batch("vit")  # every reader of a transformer block's output is a LayerNorm...
    space = PruningSpace(teacher, batch.images[:1])
    example = batch.images[:1]
    assert adaptor_sites(drop_blocks(copy.deepcopy(teacher), ["blocks.0"]), "blocks.0", space.blocks, example) == []
    assert adaptor_sites(drop_blocks(copy.deepcopy(teacher), ["blocks.2"]), "blocks.2", space.blocks, example)  # ...
    # ...but earlier blocks' last linears can take output adaptors. Untrainable: the error does not depend on training.
    short, longer = (replace(SCORING_SCHEDULE, iterations=n, batch_size=8) for n in (2, 6))
    error = lambda block, schedule: recoverability(teacher, teacher, block, space.blocks, batch, schedule)  # noqa: E731
    assert error("blocks.0", short) == error("blocks.0", longer) > 0
    assert error("blocks.2", short) != error("blocks.2", longer)
    recipe = replace(fp.methods.get("practise"), criterion_options={"schedule": short},
                     recovery_options={"adapt": {"schedule": short}, "mir": {"schedule": short}})
    result = fp.compress(teacher, batch.images, method=recipe, target=fp.Target(blocks=1), progress=False)
    assert len(result.plan.dropped_blocks) == 1


QUICK = {"schedule": Schedule(iterations=3, batch_size=8)}
QUICK_OPTIONS = {"kd": QUICK, "mir": QUICK, "mir-blocks": QUICK, "adapt": QUICK, "cd": {"iterations": 3}}


@pytest.mark.parametrize("name,options", [(name, {}) for name in recoveries.names()] + [("kd", {"label_weight": 0.5})],
                         ids=lambda value: value if isinstance(value, str) else ",".join(value) or "defaults")
def test_recoveries_read_labels_only_when_they_say_so(name, options):
    """Labels shown (disagreeing with the teacher) or hidden give the same student exactly when ``reads_labels`` says no."""
    teacher, batch, result, pruned = _pruned_keeping_features()
    recover = recoveries.get(name)
    structure = {"pruned": pruned} if getattr(recover, "needs_structure", False) else {}
    with torch.no_grad():
        disagreeing = (teacher(batch.images).argmax(1) + 1) % 10
    students = []
    for labels in (disagreeing, None):
        student = copy.deepcopy(result.student)
        recover(student, teacher, Batch(batch.images, labels, teacher, seed=2), seed=2, progress=False, **structure,
                **QUICK_OPTIONS.get(name, {}), **options)
        students.append(student.state_dict())
    same = all(torch.equal(a, b) for a, b in zip(students[0].values(), students[1].values(), strict=True))
    assert same != fp.methods.reads_labels(fp.methods.Method("l1", recovery=name, recovery_options={name: options}))


def test_the_learning_rate_decays_by_cosine_or_in_steps():
    from fewprune.recovery.base import decay_factor

    cosine = Schedule(iterations=100)
    assert decay_factor(cosine, 0) == 1.0 and decay_factor(cosine, 50) == pytest.approx(0.5)
    assert decay_factor(cosine, 99) < 0.01
    step = Schedule(iterations=100, decay="step")  # MiR's authors: ×0.1 at 40% of the iterations
    assert [decay_factor(step, i) for i in (0, 39, 40, 99)] == pytest.approx([1, 1, 0.1, 0.1])
    twice = Schedule(iterations=10, decay="step", step_at=(0.5, 0.8), step_factor=0.5)
    assert [decay_factor(twice, i) for i in (4, 5, 8)] == pytest.approx([1, 0.5, 0.25])


def test_an_unknown_decay_is_refused_before_any_training():
    from fewprune.recovery.base import train_student

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(4, 1, 8, 8)
    model(x)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="decay must be 'cosine' or 'step'"):
        train_student(model, lambda x, y: model(x).pow(2).mean(), Batch(x, None, model),
                      Schedule(iterations=3, decay="linear"), progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_mir_keeps_a_head_of_several_layers_whole_and_frozen():
    # MobileNetV3's classifier is Linear → Hardswish → Linear after the pooled features: MiR mimics the features
    # and reuses that whole head, so neither its input width nor its hidden width may be pruned
    teacher = build("torchvision:mobilenet_v3_small", num_classes=10, in_channels=1).eval()
    x = torch.randn(8, 1, 32, 32)
    result = fp.compress(teacher, x, method=fp.methods.with_schedule("l1+mir", iterations=2, batch_size=4),
                         target=fp.Target(macs=0.3), seed=0, progress=False)
    assert modules_after(teacher, "features", x[:1]) == ["classifier.0", "classifier.3"]
    for name in ("classifier.0", "classifier.3"):
        assert torch.equal(result.student.get_submodule(name).weight, teacher.get_submodule(name).weight), name
    assert result.report["macs_reduction"] > 0.25


def test_a_methods_training_steps_are_listed_with_their_lengths_and_a_run_projected_from_its_step_times():
    from fewprune import methods
    from fewprune.recovery import projected_seconds, train_student
    from fewprune.recovery.mir import MIR_SCHEDULE

    assert methods.training_lengths("l1+lsq") == []
    assert methods.training_lengths("l1+lsq+mir") == [("mir", MIR_SCHEDULE.iterations, MIR_SCHEDULE.batch_size)]
    assert methods.training_lengths(methods.with_schedule("l1+kd", iterations=40)) == [("kd", 40, 64)]
    assert methods.training_lengths(methods.with_schedule("l1+cd", iterations=7)) == [("cd", 7, 64)]
    # train_student reports its steps' times: the median one (the first, warming up, left out) and their sum
    teacher, batch = model_and_batch()
    student = copy.deepcopy(teacher)
    stats = train_student(student, lambda x, y: ((student(x) - teacher(x)) ** 2).mean(), batch,
                          Schedule(iterations=4, batch_size=8), progress=False)
    assert stats["steps_run"] == 4 and 0 < stats["seconds_per_step"] <= stats["steps_seconds"]
    # setup as measured, plus the full length's steps at the step time (cd: per layer, 3 layers), or in proportion
    timed = {"steps_run": 8, "seconds_per_step": 0.5, "steps_seconds": 4.0}
    assert projected_seconds(timed, 10.0, 800, 8) == 10.0 - 4.0 + 800 * 0.5
    assert projected_seconds({**timed, "steps_run": 24}, 20.0, 300, 8) == 20.0 - 4.0 + 900 * 0.5
    assert projected_seconds({"iterations": 8}, 3.0, 300, 8) == pytest.approx(112.5)
