import copy

import pytest
import torch
from torch import nn

import fewprune as fp
from fewprune.allocation import allocate
from fewprune.checkpoints import checkpoint_progress
from fewprune.criteria import Batch, criteria
from fewprune.criteria.asca import GateSchedule, binarisation_loss, complexity_weights, learn_gates
from fewprune.models import build
from fewprune.structure import ChannelGates, Plan, PruningSpace
from model_state import same, snapshot


def _tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 4)).eval()
    with torch.no_grad():  # logits of a trained net's scale, so removing a used channel costs something
        model[-1].weight.mul_(20)
    return model


def test_binarisation_is_zero_exactly_at_binary_gates_and_largest_at_one_half():
    binary = {"a": torch.tensor([0.0, 1.0, 1.0]), "b": torch.tensor([1.0, 0.0])}
    assert binarisation_loss(binary) == 0
    for value in (1e-3, 0.2, 0.5, 0.9, 1 - 1e-3):
        assert binarisation_loss({"a": torch.tensor([value])}) > 0
    grid = torch.linspace(0, 1, 101)
    losses = torch.stack([binarisation_loss({"a": v.view(1)}) for v in grid])
    assert grid[losses.argmax()] == 0.5


def test_complexity_weights_emphasise_hard_samples_and_keep_the_batch_scale():
    losses = torch.tensor([0.1, 0.5, 2.0, 0.4])
    w = complexity_weights(losses)
    assert torch.isclose(w.sum(), torch.tensor(4.0)) and w.argmax() == 2 and w.argmin() == 0
    assert w[2] > 1 > w[0]
    assert torch.allclose(complexity_weights(torch.full((5,), 0.3)), torch.ones(5))


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "vit"])
def test_gates_leave_the_model_exactly_as_it_was(name):
    model = build(name, num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(2, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    before, classes, params = snapshot(model), [type(m) for m in model.modules()], list(model.parameters())
    keys = list(model.state_dict())
    with ChannelGates(model, space.groups) as gates:
        gates.fixed = {gid: torch.rand(v.shape) for gid, v in gates.values().items()}
        model(x).sum().backward()
    same(before | {"grads": before["grads"]}, snapshot(model) | {"grads": before["grads"]})
    assert [type(m) for m in model.modules()] == classes and list(model.state_dict()) == keys
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "vit"])
def test_the_pruned_model_equals_the_gated_model_with_binary_gates(name):
    model = build(name, num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(3, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    gen = torch.Generator().manual_seed(0)
    removed = {}
    for g in space.prunable:
        order = torch.randperm(g.size, generator=gen)
        removed[g.id] = sorted(order[: g.size // 2].tolist())
    plan = Plan(input_shape=(1, 28, 28), removed=removed, kinds={g.id: g.kind for g in space.groups},
                sizes={g.id: g.size for g in space.groups})
    with ChannelGates(model, space.groups) as gates, torch.no_grad():
        binary = {}
        for g in gates.groups:
            mask = torch.ones(g.size)
            mask[removed[g.id]] = 0
            binary[g.id] = mask
        gates.fixed = binary
        gated = model(x)
    student = copy.deepcopy(model)
    plan.apply(student)
    with torch.no_grad():
        assert torch.allclose(student(x), gated, atol=1e-5)


def _learn(model, x, fraction, iterations=150, **schedule):
    space = PruningSpace(model, x[:1])
    with torch.no_grad():
        reference = model(x)

    def per_sample(batch, outputs, idx):  # mimic the intact model's logits on un-augmented inputs
        return ((outputs - reference[idx]) ** 2).mean(1)

    from fewprune.structure import frozen_parameters

    with frozen_parameters(model):
        logits, log = learn_gates(model, space, x, per_sample, "macs", fraction,
                                  GateSchedule(iterations=iterations, log_every=1, **schedule), augment=False,
                                  progress=False)
    return space, logits, log


PRICES = ["target", "channels"]  # the cost term charges each unit its MACs, or every unit the same


def test_the_budget_lands_within_one_point_of_the_target_on_a_tiny_net():
    model, x = _tiny(), torch.randn(16, 1, 12, 12)
    space, logits, log = _learn(model, x, 0.5)
    assert all(abs(r - 0.5) <= 0.01 for r in log["remaining"])  # the soft gates keep half the MACs at every step
    # and end at 0 or 1, except the few marginal gates that share the budget's fractional remainder
    assert log["undecided"][0] == 1 and log["undecided"][-1] <= 0.25 and log["binarisation"][-1] < 0.05
    removed = allocate(space, logits, fp.Target(macs=0.5), "threshold")
    assert abs(1 - space.cost.macs(space.keep_counts(removed)) / space.cost.base_macs - 0.5) <= 0.01


@pytest.mark.parametrize("price", PRICES)
def test_gates_close_a_planted_useless_channel_group(price):
    model, x = _tiny(), torch.randn(16, 1, 12, 12)
    with torch.no_grad():  # channels 0-2 of the first conv produce nothing and are read by nothing
        model[0].weight[:3] = 0
        model[0].bias[:3] = 0
        model[1].weight[:3] = 0
        model[1].bias[:3] = 0
    space, logits, log = _learn(model, x, 0.375, price=price)  # what removing three of conv 0's eight channels saves
    assert all(abs(r - (1 - 0.375)) <= 0.01 for r in log["remaining"])  # the projection meets MACs whatever the price
    first = logits["0"]
    assert first[:3].max() < first[3:].min(), first
    removed = allocate(space, logits, fp.Target(macs=0.375), "threshold")
    assert removed["0"] == [0, 1, 2] and not removed["3"]


class _Interrupted(Exception):
    pass


def _learn_with_weights(checkpoint, stop_at=None):
    """Gates and weights trained together (as ASCA from scratch: BN in train mode), checkpointing every 4 steps;
    ``stop_at`` interrupts the run at that iteration."""
    model = _tiny().train()
    x, labels = torch.randn(24, 1, 12, 12), torch.arange(24) % 4
    space = PruningSpace(model, x[:1])
    calls = [0]

    def per_sample(batch, outputs, idx):
        calls[0] += 1
        if calls[0] == stop_at:
            raise _Interrupted
        return torch.nn.functional.cross_entropy(outputs, labels[idx], reduction="none")

    logits, log = learn_gates(model, space, x, per_sample, "macs", 0.5,
                              GateSchedule(iterations=14, batch_size=8, log_every=1), weights=list(model.parameters()),
                              weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
                              weight_lr=lambda step: 1 - step / 14, checkpoint=checkpoint, checkpoint_every=4)
    return model, logits, log


def test_learning_gates_resumes_from_its_checkpoint_to_the_uninterrupted_result(tmp_path):
    model, logits, log = _learn_with_weights(None)
    with pytest.raises(_Interrupted):  # stopped in the third epoch of four steps: its last checkpoint is step 8
        _learn_with_weights(tmp_path / "run.pt", stop_at=11)
    assert torch.load(tmp_path / "run.pt", weights_only=True)["iteration"] == 8
    assert checkpoint_progress(tmp_path / "run.pt") == (8, 14)
    resumed_model, resumed_logits, resumed_log = _learn_with_weights(tmp_path / "run.pt")
    assert logits.keys() == resumed_logits.keys()
    assert all(torch.equal(logits[g], resumed_logits[g]) for g in logits)
    same(snapshot(model), snapshot(resumed_model))  # weights, BN statistics and the last step's gradients
    assert {k: v for k, v in log.items() if k != "seconds"} == {k: v for k, v in resumed_log.items() if k != "seconds"}
    # a finished run's checkpoint gives its result again without training
    again_model, again_logits, _ = _learn_with_weights(tmp_path / "run.pt", stop_at=1)
    assert all(torch.equal(logits[g], again_logits[g]) for g in logits)
    assert all(torch.equal(v, again_model.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_schedule_names_fields_added_later_only_when_changed():
    # checkpoints name their run by the schedule's text: one written before `price` existed must still resume
    old = ("GateSchedule(iterations=7020, batch_size=128, lr=0.05, init=3.0, temperature=(1.0, 0.1), budget_weight=1.0, "
           "binarise_weight=1.0, binarise_ramp=0.3, log_every=35)")
    assert repr(GateSchedule(iterations=7020, batch_size=128, log_every=35)) == old
    assert "price='channels'" in repr(GateSchedule(price="channels"))
    with pytest.raises(ValueError, match="price must be one of 'target', 'channels', not 'chanels'"):
        GateSchedule(price="chanels")


def test_a_checkpoint_of_other_settings_is_refused_by_name(tmp_path):
    _learn_with_weights(tmp_path / "run.pt")
    model, x = _tiny(), torch.randn(16, 1, 12, 12)
    with pytest.raises(ValueError, match="run.pt is the checkpoint of another run"):
        learn_gates(model, PruningSpace(model, x[:1]), x, lambda b, o, i: o.pow(2).mean(1), "macs", 0.3,
                    GateSchedule(iterations=3), checkpoint=tmp_path / "run.pt")


def test_the_asca_criterion_aims_at_the_target_and_compress_meets_it_exactly(tmp_path):
    model = build("resnet20", num_classes=10, in_channels=1).eval()
    x = torch.randn(8, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    scores = criteria.get("asca")(model, space, Batch(x, None, model), target_kind="macs", fraction=0.5,
                                  iterations=60)
    log = scores.log["gates"]
    assert abs(log["remaining"][-1] - 0.5) < 0.05 and len(log["open"]) == len(log["iterations"])
    result = fp.compress(model, (x, None), method="asca", target=fp.Target(macs=0.5), progress=False)
    assert abs(result.report["macs_reduction"] - 0.5) <= 0.01
    assert result.report["recipe"]["allocation"] == "threshold" and "gates" in result.report["criterion"]
    assert fp.methods.get("asca+kd").allocation == "threshold"
    saved = fp.save(result, tmp_path / "run")
    assert (saved / "gates.png").read_bytes()[:4] == b"\x89PNG"


def test_asca_from_scratch_learns_gates_and_weights_and_prunes_to_the_target(tiny_fmnist, tmp_path):
    from fewprune import data
    from fewprune.models.recipes import train_asca_scratch

    train = data.load("fashion-mnist", "train", root=tiny_fmnist)
    result = train_asca_scratch("resnet20-fmnist", fp.Target(macs=0.5), epochs=2, progress=False, log=lambda *_: None,
                                train_set=train)
    assert abs(result.report["macs_reduction"] - 0.5) <= 0.01
    log = result.report["criterion"]["gates"]
    assert len(log["iterations"]) >= 2 and all(abs(r - 0.5) <= 0.01 for r in log["remaining"])
    saved = fp.save(result, tmp_path / "run")
    loaded = fp.load(saved, architecture=build("resnet20", num_classes=10, in_channels=1))
    x = train.normalise(train.images[:4])
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), result.student.eval()(x))


def test_a_flat_price_keeps_the_residual_streams_from_closing_first():
    # Charged by MACs, a residual-stream channel (read by every block of its stage) costs many inner channels,
    # and the cost term shuts the streams while every inner channel stays; charged the same, the task decides.
    torch.manual_seed(0)
    model = build("resnet20", num_classes=10, in_channels=1).eval()
    x = torch.randn(8, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    removed = {}
    for name in ("asca", "asca-flat"):
        scores = criteria.get(name)(model, space, Batch(x, None, model), target_kind="macs", fraction=0.7,
                                    iterations=60)
        removed[name] = {g: len(r) for g, r in allocate(space, scores, fp.Target(macs=0.7), "threshold").items()}
    inner = lambda counts: sum(v for g, v in counts.items() if g.startswith("layer") and g.endswith("conv1"))  # noqa: E731
    assert removed["asca"]["conv1"] >= 12 and inner(removed["asca"]) == 0  # the stem stream nearly shut
    assert removed["asca-flat"]["conv1"] < removed["asca"]["conv1"] and inner(removed["asca-flat"]) > 0
