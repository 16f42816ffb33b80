"""A measured speed-up as the target: the search over MAC fractions, and compress / prune with it.

Timings are replaced by a MAC-driven model of time, so the tests check the search and its wiring, not this
machine's speed."""

import copy
import importlib

import pytest
import torch

import fewprune as fp
from fewprune import metrics
from fewprune.allocation import TargetUnreachable
from fewprune.allocation.speedup import describe_search, search_macs_for_speedup
from fewprune.models import build


def overhead_model(fixed: float):
    """Speed-up at a MAC fraction when a ``fixed`` share of the teacher's time does not shrink with MACs."""
    return lambda fraction: 1 / (fixed + (1 - fixed) * (1 - fraction))


@pytest.mark.parametrize("fixed", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("goal", [1.5, 2.0, 3.0])
def test_the_search_finds_the_least_fraction_that_reaches_the_goal_within_the_tolerance(goal, fixed):
    speedup_at = overhead_model(fixed)
    exact = (1 - 1 / goal) / (1 - fixed)  # where 1 / (fixed + (1 - fixed)(1 - f)) = goal
    search = search_macs_for_speedup(speedup_at, goal, tolerance=0.01)
    best = search.best()
    assert best["speedup"] >= goal and exact <= best["macs"] <= exact + 0.01
    assert len(search.probes) <= 8
    # every probe is recorded as measured, and the shortfalls lie below the choice
    assert all(p["speedup"] == speedup_at(p["macs"]) for p in search.probes)
    assert all(p["macs"] < best["macs"] for p in search.short())


def test_time_proportional_to_macs_is_found_at_the_first_probe_or_next_to_it():
    search = search_macs_for_speedup(overhead_model(0.0), 2.0, tolerance=0.01)
    assert search.probes[0]["macs"] == 0.5 and search.best()["macs"] == pytest.approx(0.5, abs=0.01)


def test_the_fraction_chosen_is_timed_again_so_one_lucky_timing_does_not_decide():
    true = overhead_model(0.2)
    calls: dict = {}

    def lucky_first(fraction):  # each structure's first timing 0.1× too fast, its second 0.1× too slow
        calls[fraction] = calls.get(fraction, 0) + 1
        return true(fraction) + (0.1 if calls[fraction] == 1 else -0.1)

    search = search_macs_for_speedup(lucky_first, 2.0, tolerance=0.01)
    best = search.best()
    assert best["measured"] == [true(best["macs"]) + 0.1, true(best["macs"]) - 0.1]  # its mean is the truth
    assert true(best["macs"]) >= 2.0
    # some fraction's first timing reached 2×, and its second showed it does not
    assert any(len(p["measured"]) == 2 and p["measured"][0] >= 2.0 > p["speedup"] for p in search.probes)
    assert f"{best['speedup']:.2f}× ({best['measured'][0]:.2f}, {best['measured'][1]:.2f})" in \
        describe_search(search.to_dict())


@pytest.mark.parametrize("fixed", [0.0, 0.3])
def test_under_10_percent_random_timing_noise_the_search_ends_near_the_goal_within_16_timings(fixed):
    true = overhead_model(fixed)
    exact = (1 - 1 / 2.0) / (1 - fixed)
    for seed in range(20):
        rng = torch.Generator().manual_seed(seed)
        noisy = lambda f, rng=rng: true(f) * (1 + 0.1 * (2 * float(torch.rand(1, generator=rng)) - 1))  # noqa: E731
        search = search_macs_for_speedup(noisy, 2.0)
        best = search.best()
        assert best["speedup"] >= 2.0 and len(best["measured"]) == 2
        assert true(best["macs"]) >= 1.8 and abs(best["macs"] - exact) <= 0.1
        assert sum(len(p.get("measured", [])) for p in search.probes) <= 16


@pytest.mark.parametrize("spread, warned", [(1.05, False), (1.6, True)])
def test_a_search_whose_timing_rounds_scatter_warns_that_the_machine_was_busy(spread, warned):
    true = overhead_model(0.1)

    def timed(fraction):  # paired_speedup's shape: its rounds scatter around the median by ``spread``
        s = true(fraction)
        return {"speedup": s, "rounds": [s / spread ** 0.5, s, s * spread ** 0.5]}

    search = search_macs_for_speedup(timed, 2.0).to_dict()
    assert search["scatter"] == pytest.approx(spread)
    text = describe_search(search)
    assert ("this machine was busy and the speed-up reached may be far from the goal" in text) == warned
    assert "give --macs" in text if warned else "Warning" not in text


def test_fractions_the_method_cannot_remove_are_not_tried_again_and_an_unreachable_goal_says_what_was_measured():
    def capped(fraction):
        if fraction > 0.6:
            raise TargetUnreachable("cannot remove that much")
        return overhead_model(0.3)(fraction)  # 0.6 removed: 1.72×

    with pytest.raises(TargetUnreachable, match=r"3× measured speed-up on this machine: the fastest structure "
                                                r"measured, 5\d\.\d% of MACs removed, ran 1\.7\d× faster"):
        search_macs_for_speedup(capped, 3.0)
    search = search_macs_for_speedup(capped, 1.6)  # 0.6 removed is 1.72×: reachable below the cap
    assert search.best()["speedup"] >= 1.6 and search.best()["macs"] <= 0.6
    for i, probe in enumerate(search.probes):
        if "unreachable" in probe:
            assert all(later["macs"] < probe["macs"] for later in search.probes[i + 1:])


def test_a_goal_of_one_or_less_is_refused():
    with pytest.raises(ValueError, match="above 1"):
        fp.Target(speedup=1.0)
    with pytest.raises(ValueError, match="one of"):
        fp.Target(speedup=2.0, macs=0.5)
    assert fp.Target(speedup=2.0, blocks="auto").describe() == "2× measured speed-up (auto blocks)"


@pytest.fixture
def mac_timed(monkeypatch):
    """latency() as the model's MACs (with 5% fixed cost), so every speed-up is known from the structure."""
    def timed(model, x, **_):
        return {"median_ms": metrics.macs(model, x[:1]) / 1e6 + 0.05 * reference_macs[0] / 1e6}

    reference_macs = [0]
    monkeypatch.setattr(importlib.import_module("fewprune.metrics.latency"), "latency", timed)
    return reference_macs


def test_compress_to_a_speedup_gives_the_student_that_the_fraction_it_found_gives(mac_timed):
    teacher = build("resnet20", num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    mac_timed[0] = metrics.macs(teacher, x[:1])
    before = copy.deepcopy(teacher.state_dict())
    result = fp.compress(teacher, x, method="random+kd", target=fp.Target(speedup=2.0), progress=False,
                         schedule={"iterations": 4, "batch_size": 4})  # a criterion and a recovery that draw numbers
    search = result.report["speedup_search"]
    chosen = search["macs"]
    # 5% of the teacher's time is fixed: 2× needs (1 - 1/2) / 0.95 = 52.6% of MACs removed
    assert 0.526 <= chosen <= 0.537 and result.report["target"] == {"macs": chosen}
    assert result.report["requested_target"] == {"speedup": 2.0}
    assert result.plan.meta["requested_target"] == {"speedup": 2.0}
    teacher_time = 1.05 * mac_timed[0]
    student_time = metrics.macs(result.student, x[:1]) + 0.05 * mac_timed[0]
    assert teacher_time / student_time >= 2.0 - 1e-3
    # the same student as asking for that fraction of MACs directly; the teacher untouched
    direct = fp.compress(teacher, x, method="random+kd", target=fp.Target(macs=chosen), progress=False,
                         schedule={"iterations": 4, "batch_size": 4})
    assert result.plan.removed == direct.plan.removed
    with torch.no_grad():
        assert torch.equal(result.student(x), direct.student(x))
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert "speed-up search for 2×" in describe_search(search) and "chose" in describe_search(search)


def test_a_speedup_with_automatic_blocks_drops_blocks_and_a_block_method_refuses_a_speedup(mac_timed):
    teacher = build("resnet20", num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    mac_timed[0] = metrics.macs(teacher, x[:1])
    result = fp.compress(teacher, x, method="l1", target=fp.Target(speedup=3.0, blocks="auto"), min_width=16,
                         progress=False)
    assert result.report["target"]["blocks"] == "auto" and result.plan.dropped_blocks
    assert result.report["speedup_search"]["probes"][-1]["speedup"] > 0
    with pytest.raises(ValueError, match="takes a block count"):
        fp.compress(teacher, x, method="block-residual", target=fp.Target(speedup=2.0), progress=False)


def test_prune_with_a_speedup_reports_its_search_and_saves_the_student_at_the_fraction_found(tiny_fmnist, monkeypatch,
                                                                                              tmp_path, capsys):
    import json

    from safetensors.torch import save_file

    from fewprune.cli import main

    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    weights = tmp_path / "teacher.safetensors"
    save_file(build("resnet20", num_classes=10, in_channels=1).state_dict(), str(weights))

    def timed(model, x, **_):  # time = MACs, for the search and for the table alike
        return {"median_ms": metrics.macs(model, x[:1]) / 1e6, "p25_ms": 0.0, "p75_ms": 0.0, "threads": 1}

    monkeypatch.setattr(importlib.import_module("fewprune.metrics.latency"), "latency", timed)
    monkeypatch.setattr(metrics, "latency", timed)
    out = tmp_path / "run"
    assert main(["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "10", "--method", "l1",
                 "--speed-up", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2× measured speed-up" in printed and "speed-up search for 2×" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["requested_target"] == {"speedup": 2.0} and report["target"]["macs"] == report["speedup_search"]["macs"]
    assert 0.5 <= report["macs_reduction"] <= 0.51 + 0.01  # time = MACs: 2× is half the MACs, within the tolerance
    assert "speed-up search for 2×" in (out / "report.md").read_text()
    # compare names the target as asked for, and the fraction its search chose
    assert main(["compare", str(out), "--out", str(tmp_path / "compare.md")]) == 0
    assert f"2× measured speed-up: -{100 * report['target']['macs']:.2f}% macs" in (tmp_path / "compare.md").read_text()
    capsys.readouterr()
    assert main(["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "10", "--method", "l1",
                 "--speed-up", "2", "--macs", "0.5", "--dry-run"]) == 2
    assert "one of macs=, params=, channels=, speedup=" in capsys.readouterr().err
