import copy
import hashlib
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

import fewprune as fp
from fewprune.allocation import allocate
from fewprune.criteria import Batch, criteria
from fewprune.models import build
from fewprune.recovery import RecoveryDiverged, Schedule
from fewprune.structure import PruningSpace

FAST_KD = {"kd": {"schedule": Schedule(iterations=6, batch_size=8)}}


def tiny_samples(n=16, shape=(1, 28, 28), classes=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def teacher(name="resnet20"):
    return build(name, num_classes=10, in_channels=1, image_size=28).eval()


def fast(method: str) -> fp.methods.Method:
    """The registered method with a tiny recovery schedule (tests check behaviour, not accuracy)."""
    recipe = fp.methods.get(method)
    return replace(recipe, recovery_options=FAST_KD) if recipe.recovery == "kd" else recipe


def state_digest(model):
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("kind,value", [("macs", 0.5), ("macs", 0.7), ("params", 0.4), ("channels", 0.3)])
@pytest.mark.parametrize("allocator", ["uniform", "global"])
def test_targets_are_met_within_one_point(kind, value, allocator):
    model = teacher("resnet56")
    x, y = tiny_samples(4)
    space = PruningSpace(model, x[:1])
    scores = criteria.get("l1")(model, space, Batch(x, y, model))
    target = fp.Target(**{kind: value})
    removed = allocate(space, scores, target, allocator)
    student = fp.structure.Plan((1, 28, 28), removed, {g.id: g.kind for g in space.groups},
                                {g.id: g.size for g in space.groups}).apply(copy.deepcopy(model))
    if kind == "macs":
        achieved = 1 - fp.metrics.macs(student, x[:1]) / fp.metrics.macs(model, x[:1])
    elif kind == "params":
        achieved = 1 - fp.metrics.params(student) / fp.metrics.params(model)
    else:
        total = sum(g.size for g in space.prunable)
        achieved = sum(map(len, removed.values())) / total
    assert abs(achieved - value) <= 0.01, f"{allocator} reached {achieved:.4f} for {kind}={value}"


@pytest.mark.parametrize("method,multiple", [("l1", 8), ("l1@global", 8), ("l1", 16), ("l1", "auto")])
def test_rounded_widths_are_multiples_and_still_meet_the_target(method, multiple):
    model = teacher("resnet56")
    x, y = tiny_samples(4)
    result = fp.compress(model, (x, y), method=method, target=fp.Target(macs=0.5), progress=False, round_to=multiple)
    multiple = result.report["round_to"]
    assert abs(result.report["macs_reduction"] - 0.5) <= 0.01
    widths = [after for _, kind, before, after in result.plan.summary() if kind == "channels" and before > multiple]
    # above one channel block a width is a whole number of blocks; below it any width runs efficiently
    assert widths and all(w > 0 and (w % multiple == 0 or w < multiple) for w in widths), widths
    assert any(w % multiple == 0 and w < before for _, kind, before, w in result.plan.summary() if kind == "channels")
    with pytest.raises(ValueError, match="cannot round widths"):
        allocate(PruningSpace(model, x[:1]), {}, fp.Target(macs=0.5), "iterative", round_to=8)


def test_round_keep_snaps_to_whole_channel_blocks_above_one_block():
    from fewprune.allocation.base import round_keep

    assert [round_keep(64, k, 16) for k in (5, 15, 16, 20, 25, 40, 63)] == [5, 15, 16, 16, 32, 48, 64]
    assert round_keep(100, 99, 16) == 96 and round_keep(100, 100, 16) == 100
    assert round_keep(64, 20, None) == 20


class _ChannelScale(torch.nn.Module):
    """A user's layer with a per-channel parameter that no supported layer owns."""

    def __init__(self, channels: int):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * self.gain.view(1, -1, 1, 1)


def test_a_layer_fewprune_cannot_slice_keeps_its_channels_and_a_coarse_target_names_it():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                _ChannelScale(16), torch.nn.Conv2d(16, 32, 3), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10)).eval()
    x = torch.randn(4, 1, 12, 12)
    result = fp.compress(model, x, method="l1", target=fp.Target(channels=0.25), progress=False)
    assert list(result.plan.removed) == ["4"] and result.student[3].gain.shape == (16,)  # conv 0's channels kept
    with pytest.raises(fp.TargetUnreachable, match=r"step from 23\.84% to 2[4-9]\.\d\d% .*too coarse: 1 may be "
                                                   r"pruned; .*0: couples 3\.gain, a parameter no supported layer "
                                                   r"owns.*ask for a nearby target"):
        fp.compress(model, x, method="l1", target=fp.Target(macs=0.25), progress=False)


def test_round_to_auto_is_this_cpus_channel_block_and_bad_values_are_refused():
    from fewprune.allocation import channel_block, resolve_round_to

    assert resolve_round_to("auto") == channel_block() in (4, 8, 16)
    assert resolve_round_to("16") == 16 and resolve_round_to(None) is None
    with pytest.raises(ValueError, match="positive channel count or 'auto'"):
        resolve_round_to("fast")


def test_unreachable_target_says_why():
    model = teacher()
    x, y = tiny_samples(4)
    capped = replace(fp.methods.get("l1"), allocation_options={"max_ratio": 0.5})
    with pytest.raises(fp.TargetUnreachable, match="reaches only .*fc is protected"):
        fp.compress(model, (x, y), method=capped, target=fp.Target(macs=0.9), progress=False)
    with pytest.raises(ValueError, match="takes one of"):
        fp.Target(macs=0.5, params=0.5)


@pytest.mark.parametrize("samples, error", [
    (lambda x, y: x[:0], "no samples"),
    (lambda x, y: x.repeat(1, 3, 1, 1), "the teacher does not run on the samples \\(images of shape \\(3, 28, 28\\)\\)"),
    (lambda x, y: (x, y + 5), "labels must be class indices in \\[0, 10\\) for this model's 10 class scores; got 5…"),
    (lambda x, y: (x, y.float()), "labels must be class indices \\(integers\\), not torch.float32"),
])
def test_samples_the_teacher_cannot_use_are_refused_before_any_work(samples, error):
    model = teacher()
    before = state_digest(model)
    with pytest.raises(ValueError, match=error):
        fp.compress(model, samples(*tiny_samples()), method="l1+bn", progress=False)
    assert state_digest(model) == before


def test_a_frozen_teacher_or_a_caller_without_gradients_still_gets_a_recovered_student():
    model = teacher()
    for p in model.parameters():
        p.requires_grad_(False)  # frozen for inference, as users load a model
    x, y = tiny_samples()
    target = fp.Target(macs=0.5)
    unrecovered = fp.compress(model, (x, y), method="l1", target=target, progress=False).student
    recovered = fp.compress(model, (x, y), method=fast("l1+kd"), target=target, progress=False).student
    assert not torch.equal(recovered.layer1[0].conv1.weight, unrecovered.layer1[0].conv1.weight)  # it trained
    assert not any(p.requires_grad for p in recovered.parameters())  # and kept the teacher's flags
    assert not any(p.requires_grad for p in model.parameters())
    for caller in (torch.no_grad, torch.inference_mode):
        model = teacher()
        with caller():
            student = fp.compress(model, (x, y), method=fast("l1+kd"), target=target, progress=False).student
        assert not torch.equal(student.layer1[0].conv1.weight, unrecovered.layer1[0].conv1.weight)
        assert all(p.requires_grad for p in student.parameters())


@pytest.mark.parametrize("method", ["l1", "l1+bn", "l1+kd", "taylor+kd", "random+kd", "l2@global+bn", "bn-scale"])
def test_compress_leaves_the_teacher_untouched_and_meets_the_target(method):
    model = teacher()
    before = state_digest(model)
    x, y = tiny_samples()
    result = fp.compress(model, (x, y), method=fast(method), target=fp.Target(macs=0.5), seed=0, progress=False)
    assert state_digest(model) == before and not model.training
    assert abs(result.report["macs_reduction"] - 0.5) <= 0.01
    assert result.report["macs_reduction"] == pytest.approx(result.report["predicted_macs_reduction"], abs=1e-9)
    assert result.student(x).shape == (16, 10)


def test_teacher_file_is_never_modified(tmp_path):
    model = teacher()
    path = tmp_path / "teacher.safetensors"
    save_file(model.state_dict(), str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = build("resnet20", num_classes=10, in_channels=1, weights=str(path)).eval()
    fp.compress(loaded, tiny_samples(), method=fast("l1+kd"), target=fp.Target(macs=0.5), progress=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_same_seed_gives_the_same_plan_and_student():
    model = teacher()
    x, y = tiny_samples()
    a = fp.compress(model, (x, y), method=fast("taylor+kd"), target=fp.Target(macs=0.5), seed=3, progress=False)
    b = fp.compress(model, (x, y), method=fast("taylor+kd"), target=fp.Target(macs=0.5), seed=3, progress=False)
    assert a.plan.to_json() == b.plan.to_json()
    assert state_digest(a.student) == state_digest(b.student)
    c = fp.compress(model, (x, y), method=fast("random+kd"), target=fp.Target(macs=0.5), seed=4, progress=False)
    d = fp.compress(model, (x, y), method=fast("random+kd"), target=fp.Target(macs=0.5), seed=5, progress=False)
    assert c.plan.removed != d.plan.removed


def test_zero_target_returns_an_identical_model():
    model = teacher()
    x, y = tiny_samples()
    result = fp.compress(model, (x, y), method="l1+kd", target=fp.Target(macs=0.0), progress=False)
    assert result.plan.is_empty
    assert state_digest(result.student) == state_digest(model)
    assert torch.equal(result.student(x), model(x))


def test_frozen_teacher_is_still_pruned():
    model = teacher()
    for p in model.parameters():
        p.requires_grad_(False)
    result = fp.compress(model, tiny_samples(), method="l1", target=fp.Target(macs=0.5), progress=False)
    assert result.report["macs_reduction"] > 0.49
    assert not any(p.requires_grad for p in model.parameters())


def test_unlabelled_samples_work_for_label_using_criteria():
    model = teacher()
    x, _ = tiny_samples()
    result = fp.compress(model, x, method=fast("taylor+kd"), target=fp.Target(macs=0.3), progress=False)
    assert result.few_shot["labelled"] is False


class ImagesOnly(torch.utils.data.Dataset):
    """A user's dataset whose items are bare image tensors (no labels)."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_a_torch_dataset_or_dataloader_of_the_samples_gives_the_same_student_as_their_tensors():
    from torch.utils.data import DataLoader, TensorDataset

    model = teacher()
    x, y = tiny_samples(12)
    method = fast("taylor+kd")  # reads labels: a lost or reordered label would change the plan
    reference = fp.compress(model, (x, y), method=method, target=fp.Target(macs=0.4), progress=False)
    for samples in (TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=5), [(x[:7], y[:7]), (x[7:], y[7:])]):
        result = fp.compress(model, samples, method=method, target=fp.Target(macs=0.4), progress=False)
        assert result.plan.removed == reference.plan.removed and result.few_shot["labelled"] is True
        assert state_digest(result.student) == state_digest(reference.student)
    unlabelled = fp.compress(model, x, method="l1+bn", target=fp.Target(macs=0.4), progress=False)
    for samples in (ImagesOnly(x), DataLoader(ImagesOnly(x), batch_size=5), list(x)):
        result = fp.compress(model, samples, method="l1+bn", target=fp.Target(macs=0.4), progress=False)
        assert result.few_shot["labelled"] is False
        assert state_digest(result.student) == state_digest(unlabelled.student)


def test_samples_that_are_not_tensors_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="ToTensor"):
        fp.compress(teacher(), [("a PIL image", 3)], method="l1", target=fp.Target(macs=0.4), progress=False)
    with pytest.raises(ValueError, match="some items have no label"):
        fp.compress(teacher(), [(torch.zeros(1, 28, 28), 1), torch.zeros(1, 28, 28)], method="l1",
                    target=fp.Target(macs=0.4), progress=False)


def test_few_shot_draws_from_any_torch_dataset():
    from torch.utils.data import TensorDataset

    x, y = tiny_samples(30)
    few = fp.data.few_shot(TensorDataset(x, y), n=8, seed=3)
    images, labels = few.tensors()
    assert torch.equal(images, x[few.indices]) and torch.equal(labels, y[few.indices])
    result = fp.compress(teacher(), few, method="l1", target=fp.Target(macs=0.4), progress=False)
    assert result.few_shot["dataset"] == "TensorDataset" and result.few_shot["indices"] == few.indices
    with pytest.raises(ValueError, match="per_class= needs the dataset's labels as .targets"):
        fp.data.few_shot(TensorDataset(x, y), per_class=2)
    labelled = TensorDataset(x, y)
    labelled.targets = y.tolist()  # as torchvision's datasets carry them
    balanced = fp.data.few_shot(labelled, per_class=1, seed=0)
    assert sorted(y[balanced.indices].tolist()) == sorted(set(y.tolist()))


@pytest.mark.parametrize("spec", ["resnet20", "vit", "mobilenetv2"])
def test_save_load_reproduces_outputs_exactly(tmp_path, spec):
    model = teacher(spec)
    x, y = tiny_samples()
    result = fp.compress(model, (x, y), method=fast("l1+kd"), target=fp.Target(macs=0.4), progress=False)
    out = fp.save(result, tmp_path / "run")
    assert sorted(p.name for p in out.iterdir()) == [
        ".fewprune-output", "few_shot.json", "plan.json", "report.json", "report.md", "result.png",
        "student.safetensors"]
    # widths and the recovery's loss curve as a figure, shown in the report
    assert (out / "result.png").read_bytes()[:4] == b"\x89PNG" and "](result.png)" in (out / "report.md").read_text()
    architecture = build(spec, num_classes=10, in_channels=1, image_size=28)
    before = {k: v.clone() for k, v in architecture.state_dict().items()}
    loaded = fp.load(out, architecture=architecture)
    built = fp.load(out, architecture=lambda: build(spec, num_classes=10, in_channels=1, image_size=28))
    with torch.no_grad():
        assert torch.equal(loaded(x), result.student.eval()(x))
        assert torch.equal(built(x), result.student(x))  # a builder is pruned in place, with the same result
    assert architecture.state_dict().keys() == before.keys()  # a given module is copied, not pruned
    assert all(torch.equal(v, before[k]) for k, v in architecture.state_dict().items())
    with pytest.raises(FileExistsError, match="--force"):
        fp.save(result, out)
    fp.save(result, out, force=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # force replaces a folder fewprune wrote, never a user's folder or file
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("a file")
    for target, why in ((mine, "holds files fewprune did not write"), (tmp_path / "notes.txt", "is a file")):
        with pytest.raises(ValueError, match=why):
            fp.save(result, target, force=True)
    assert (mine / "thesis.tex").read_text() == "years of work" and (tmp_path / "notes.txt").read_text() == "a file"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_result_saved_with_its_architecture_is_a_model_spec_as_a_prune_result_is(tmp_path, tiny_fmnist,
                                                                                     monkeypatch):
    from fewprune.cli import main
    from fewprune.results import summary

    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    train = fp.data.load("fashion-mnist", "train")
    model = teacher("resnet20")
    result = fp.compress(model, fp.data.few_shot(train, n=10, seed=0), method="l1", target=fp.Target(macs=0.3),
                         progress=False)
    assert result.report["samples"]["input"] == train.info.input_convention()  # how the samples were read
    with pytest.raises(TypeError, match="a spec can be recorded"):
        fp.save(result, tmp_path / "module", architecture=model)
    out = fp.save(result, tmp_path / "run", architecture="resnet20")
    x = train.batch(list(range(4)))[0]
    with torch.no_grad():
        assert torch.equal(fp.load(out)(x), result.student.eval()(x))  # no architecture= needed
    assert main(["eval", "--model", str(out), "--data", "fashion-mnist", "--eval-limit", "8", "--quiet"]) == 0
    with pytest.raises(ValueError, match="fewprune.save writes none"):  # compare reads what prune measured
        summary(out)


def test_interrupted_save_leaves_nothing_behind(tmp_path, monkeypatch):
    model = teacher()
    result = fp.compress(model, tiny_samples(), method="l1", target=fp.Target(macs=0.3), progress=False)

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("safetensors.torch.save_file", explode)
    with pytest.raises(KeyboardInterrupt):
        fp.save(result, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_onnx_export_matches_onnxruntime(tmp_path):
    model = teacher()
    result = fp.compress(model, tiny_samples(), method="l1", target=fp.Target(macs=0.5), progress=False)
    path = fp.export_onnx(result.student, tmp_path / "student.onnx", torch.randn(1, 1, 28, 28))
    assert path.stat().st_size > 1000


def test_diverging_recovery_stops_with_a_message():
    model = teacher()
    x, y = tiny_samples()
    too_fast = Schedule(iterations=30, batch_size=8, lr=1e6)
    wild = replace(fp.methods.get("l1+kd"), recovery_options={"kd": {"schedule": too_fast}})
    with pytest.raises(RecoveryDiverged, match="kept the best student"):
        fp.compress(model, (x, y), method=wild, target=fp.Target(macs=0.5), progress=False)


def test_method_names_and_composition():
    assert {"l1", "l1+bn", "l1+kd", "taylor+kd", "random+kd"} <= set(fp.methods.names())
    composed = fp.methods.get("l2@global+bn")
    assert (composed.criterion, composed.allocation, composed.recovery) == ("l2", "global", "bn")
    with pytest.raises(KeyError, match="registered"):
        fp.methods.get("l3+kd")
    best = fp.methods.get("cma+mir-blocks+mixup")  # a registered recipe with another augmentation
    assert (best.criterion, best.allocation, best.recovery, best.augment) == ("cma", "de", "mir-blocks", "mixup")
    assert fp.methods.get("l1+mir-blocks").protect_features and fp.methods.get("l1+cd").recovery == "cd"


def test_block_level_method_drops_the_least_changing_blocks():
    model = teacher()
    with torch.no_grad():  # planted: layer2.2's branch adds nothing, layer3.1's adds almost nothing
        model.layer2[2].bn2.weight.zero_()
        model.layer2[2].bn2.bias.zero_()
        model.layer3[1].bn2.weight.mul_(1e-3)
        model.layer3[1].bn2.bias.mul_(1e-3)
    x, y = tiny_samples()
    quick = replace(fp.methods.get("block-residual+kd"), recovery_options=FAST_KD)
    result = fp.compress(model, (x, y), method=quick, target=fp.Target(blocks=2), progress=False)
    assert result.plan.dropped_blocks == ["layer2.2", "layer3.1"]
    assert isinstance(result.student.layer2[2], torch.nn.Identity)
    assert result.report["macs_reduction"] > 0
    with pytest.raises(fp.TargetUnreachable, match="7 removable"):
        fp.compress(model, (x, y), method="block-residual", target=fp.Target(blocks=8), progress=False)
    with pytest.raises(ValueError, match="block-level method"):
        fp.compress(model, (x, y), method="l1", target=fp.Target(blocks=1), progress=False)
    with pytest.raises(ValueError, match="needs a blocks= target"):
        fp.compress(model, (x, y), method="block-residual", target=fp.Target(macs=0.3), progress=False)


@pytest.mark.parametrize("method", ["l1", "cma"])
def test_depth_and_width_target_drops_blocks_then_prunes_channels_to_the_mac_target(method):
    from fewprune.structure import masked_copy
    from test_structure import randomise_bn

    model = randomise_bn(teacher())
    before = state_digest(model)
    x, y = tiny_samples()
    recipe = replace(fp.methods.get(method), recovery="none", augment=None)
    result = fp.compress(model, (x, y), method=recipe, target=fp.Target(macs=0.6, blocks=3), seed=0, progress=False)
    assert len(result.plan.dropped_blocks) == 3 and any(result.plan.removed.values())
    assert result.report["macs_reduction"] == pytest.approx(0.6, abs=0.01)  # of the teacher's MACs, not the rest
    assert result.report["predicted_macs_reduction"] == pytest.approx(result.report["macs_reduction"], abs=1e-6)
    assert result.plan.meta["target"] == {"macs": 0.6, "blocks": 3}
    assert state_digest(model) == before
    # The plan on a fresh teacher rebuilds the student; it computes what the teacher does with those units zeroed.
    space = PruningSpace(fp.structure.drop_blocks(copy.deepcopy(model), result.plan.dropped_blocks), x[:1])
    rebuilt = result.plan.apply(copy.deepcopy(model)).eval()
    masked = masked_copy(model, result.plan, space.groups).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), result.student(x))
        assert torch.allclose(masked(x), result.student(x), atol=1e-5, rtol=1e-4)


def test_min_width_prunes_no_group_below_one_channel_block():
    x, y = tiny_samples()
    result = fp.compress(teacher(), (x, y), method="l1", target=fp.Target(macs=0.5, blocks=2), min_width=16,
                         round_to=16, progress=False)
    assert result.report["macs_reduction"] == pytest.approx(0.5, abs=0.01) and result.report["min_width"] == 16
    widths = {g: result.plan.sizes[g] - len(r) for g, r in result.plan.removed.items()}
    assert widths and all(w >= 16 and w % 16 == 0 for w in widths.values()), widths
    with pytest.raises(fp.TargetUnreachable, match="reaches only"):
        fp.compress(teacher(), (x, y), method="l1", target=fp.Target(macs=0.8), min_width=16, progress=False)


def test_automatic_block_count_drops_the_fewest_blocks_that_reach_the_target():
    x, y = tiny_samples()
    aligned = {"min_width": 16, "round_to": 16, "progress": False}
    with pytest.raises(fp.TargetUnreachable, match="blocks="):
        fp.compress(teacher(), (x, y), method="l1", target=fp.Target(macs=0.65), **aligned)
    result = fp.compress(teacher(), (x, y), method="l1", target=fp.Target(macs=0.65, blocks="auto"), **aligned)
    count = len(result.plan.dropped_blocks)
    assert count > 0 and result.report["macs_reduction"] == pytest.approx(0.65, abs=0.01)
    assert [t["blocks"] for t in result.report["fewer_blocks_tried"]] == list(range(count))
    with pytest.raises(fp.TargetUnreachable):  # one block fewer cannot reach it
        fp.compress(teacher(), (x, y), method="l1", target=fp.Target(macs=0.65, blocks=count - 1), **aligned)
    with pytest.raises(ValueError, match="auto"):
        fp.Target(blocks="auto")


def test_depth_and_width_target_says_when_the_blocks_alone_remove_too_much():
    x, y = tiny_samples()
    with pytest.raises(fp.TargetUnreachable, match="already removes"):
        fp.compress(teacher(), (x, y), method="l1", target=fp.Target(macs=0.1, blocks=6), progress=False)
    # the channel allocator speaks of the block-dropped model; the error says how the user's target became that
    with pytest.raises(fp.TargetUnreachable, match=r"^with 2 blocks dropped \(\d+\.\d% of macs\), the 90\.0% target "
                       r"leaves \d+\.\d% of the rest to the channels; cannot remove \d+\.\d% of macs: .*reaches only"):
        fp.compress(teacher(), (x, y), method="l1", target=fp.Target(macs=0.9, blocks=2), min_width=16,
                    progress=False)
    with pytest.raises(ValueError, match="blocks= with macs="):
        fp.Target(channels=0.3, blocks=2)


def test_saved_block_level_student_reloads(tmp_path):
    model = teacher()
    x, y = tiny_samples()
    result = fp.compress(model, (x, y), method="block-random", target=fp.Target(blocks=3), seed=1, progress=False)
    loaded = fp.load(fp.save(result, tmp_path / "blocks"), architecture=teacher())
    with torch.no_grad():
        assert torch.equal(loaded(x), result.student(x))


def test_loading_into_another_architecture_or_from_a_folder_that_is_no_result_says_so(tmp_path):
    x, y = tiny_samples()
    result = fp.compress(teacher(), (x, y), method="l1", target=fp.Target(macs=0.5), progress=False)
    out = fp.save(result, tmp_path / "r20")
    # resnet20's plan fits resnet56 by name (the same stage widths), its weights do not
    with pytest.raises(ValueError, match="does not fit the architecture given \\(CifarResNet\\): missing "
                                         "\\['layer1.3.conv1.weight'"):
        fp.load(out, architecture=teacher("resnet56"))
    with pytest.raises(FileNotFoundError, match="is not a fewprune result"):
        fp.load(tmp_path, architecture=teacher())


def test_teacher_mode_is_restored_even_when_compression_fails():
    model = teacher().train()
    with pytest.raises(fp.TargetUnreachable):
        fp.compress(model, tiny_samples(), method="block-residual", target=fp.Target(blocks=99), progress=False)
    assert model.training


def test_a_method_object_is_reported_by_its_composed_name():
    result = fp.compress(teacher(), tiny_samples(), method=fp.methods.Method("l2", allocation="global"),
                         target=fp.Target(macs=0.3), progress=False)
    assert result.report["method"] == result.plan.meta["method"] == "l2@global+none"


def test_with_schedule_changes_each_training_recovery_and_keeps_its_other_defaults():
    from fewprune.recovery import Schedule
    from fewprune.recovery.baselines import KD_SCHEDULE
    from fewprune.recovery.practise import ADAPT_SCHEDULE

    kd = fp.methods.with_schedule("l1+kd", iterations=5)
    assert kd.recovery_options["kd"]["schedule"] == replace(KD_SCHEDULE, iterations=5)  # KD's own lr stays
    practise = fp.methods.with_schedule("practise", iterations=7, lr=0.01)
    assert practise.recovery_options["adapt"]["schedule"] == replace(ADAPT_SCHEDULE, iterations=7, lr=0.01)
    assert practise.recovery_options["adapt"]["schedule"].bn == "frozen"
    assert practise.recovery_options["mir"]["schedule"] == Schedule(iterations=7, lr=0.01)
    cd = fp.methods.with_schedule("l1+bn+cd", iterations=4, batch_size=16, momentum=0.5)
    assert cd.recovery_options["cd"] == {"iterations": 4, "batch_size": 16}  # the settings cd has, by name
    assert cd.recovery_options["bn"] == {"batch_size": 16}
    assert fp.methods.get("l1+kd").recovery_options == {}  # the registry's method is not changed
    with pytest.raises(ValueError, match="unknown schedule settings \\['epochs'\\]"):
        fp.methods.with_schedule("l1+mir", epochs=3)
    # wrong values are named when the schedule is made, before any pruning is spent
    with pytest.raises(ValueError, match="Schedule: lr must be above 0, not 0; decay must be 'cosine' or 'step', "
                                         "not 'linear'"):
        fp.methods.with_schedule("l1+mir", lr=0, decay="linear")


def test_options_set_the_parts_options_by_name_and_unknown_ones_are_refused_with_what_a_part_takes():
    mir = fp.methods.with_options("cma", {"allocation.bounds": [0.1, 0.7], "mir.recalibrate": False,
                                          "criterion.theta": 0.3})
    cma = fp.methods.get("cma")
    assert mir.allocation_options == {**cma.allocation_options, "bounds": [0.1, 0.7]}
    assert mir.recovery_options["mir"] == {**cma.recovery_options.get("mir", {}), "recalibrate": False}
    assert mir.criterion_options == {**cma.criterion_options, "theta": 0.3}
    assert fp.methods.get("cma") == cma  # the registry's method is not changed
    assert fp.methods.with_options("l1", {"allocation.max_ratio": 0.95}).allocation_options == {"max_ratio": 0.95}
    with pytest.raises(ValueError, match="allocation 'uniform' takes no 'max_ratoi'; did you mean 'max_ratio'\\?; "
                                         "it takes max_ratio$"):
        fp.methods.with_options("l1+mir", {"allocation.max_ratoi": 0.95})
    with pytest.raises(ValueError, match="PART is one of criterion, allocation, mir "):
        fp.methods.with_options("l1+mir", {"kd.temperature": 2})  # kd is not a step of l1+mir
    with pytest.raises(ValueError, match="schedule is set with schedule="):
        fp.methods.with_options("l1+mir", {"mir.schedule": {"iterations": 3}})
    for part, described in fp.methods.part_options("cma+lsq").items():  # every listed option is accepted and set
        for name, value in described["options"].items():
            changed = fp.methods.with_options("cma+lsq", {f"{part}.{name}": value})
            stored = getattr(changed, described["field"])
            assert (stored[part] if described["field"] == "recovery_options" else stored)[name] == value

    model, (x, y) = teacher(), tiny_samples()
    with pytest.raises(fp.TargetUnreachable, match="reaches only"):
        fp.compress(model, (x, y), method="l1", target=fp.Target(macs=0.997), progress=False)
    result = fp.compress(model, (x, y), method="l1", target=fp.Target(macs=0.997), progress=False,
                         options={"allocation.max_ratio": 0.99})
    assert result.report["macs_reduction"] == pytest.approx(0.997, abs=0.01)
    assert result.report["options"] == {"allocation.max_ratio": 0.99} == result.plan.meta["options"]
    assert result.report["recipe"]["allocation_options"] == {"max_ratio": 0.99}


class FixedSplitNet(torch.nn.Module):
    """A layer that splits its input into stored sizes: pruning the conv before it breaks the split."""

    def __init__(self):
        super().__init__()
        self.conv1, self.sizes = torch.nn.Conv2d(1, 16, 3, padding=1), [8, 8]
        self.left, self.right = torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.Conv2d(8, 16, 3, padding=1)
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x):
        a, b = torch.relu(self.conv1(x)).split(self.sizes, dim=1)
        features = torch.cat([self.left(a), self.right(b)], 1).mean((2, 3))
        return self.head(features)


def test_a_model_the_surgery_breaks_is_refused_and_protecting_the_layer_fixes_it():
    from fewprune.structure.graph import UnsupportedModel

    model, x = FixedSplitNet().eval(), torch.randn(4, 1, 28, 28)
    with pytest.raises(UnsupportedModel, match="no longer runs once .* --protect NAME"):
        fp.compress(model, x, method="l1", target=fp.Target(macs=0.3), progress=False)
    result = fp.compress(model, x, method="l1", target=fp.Target(macs=0.3), progress=False, protect=["conv1"])
    assert "conv1" not in result.plan.removed and result.report["protected"] == ["conv1"]
    assert result.student(x).shape == (4, 10)
    with pytest.raises(ValueError, match=r"cannot protect \['conv9'\]"):
        fp.compress(model, x, method="l1", target=fp.Target(macs=0.3), progress=False, protect=["conv9"])


def test_per_class_changes_pair_each_judged_class_largest_drop_first():
    evaluation = {"classes": ["a", "b", "c", "d"], "teacher": {"per_class": [0.9, 0.8, None, 0.5]},
                  "student": {"per_class": [0.5, 0.85, 0.7, 0.4]}}
    assert fp.result_files.per_class_changes(evaluation) == [("a", 0.9, 0.5), ("d", 0.5, 0.4), ("b", 0.8, 0.85)]
    assert fp.result_files.per_class_changes({**evaluation, "classes": None}) == []  # unnamed classes: nothing to show
    assert fp.result_files.per_class_changes({**evaluation, "student": {"per_class": [1] * 4, "per_pixel": True}}) == []
