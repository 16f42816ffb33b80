"""Shared paths: a step-wise allocation resumed from another target's walk ends exactly where a fresh one does."""

import pytest
import torch

import fewprune as fp
from fewprune.allocation import Probe
from fewprune.allocation.paths import SharedPaths, shared_paths
from fewprune.models import build
from model_state import scored_resnet20


def _synthetic_probe(scores, log_calls):
    """A guard that depends on the removal alone (as a model's would) and breaks past 30 units, with a
    criterion that re-ranks by how much was removed: the walk takes, halves and defers steps."""

    def rescore(removed):
        count = sum(map(len, removed.values()))
        return fp.criteria.Scores({g: v * (1 + 0.01 * ((count + i) % 5)) for i, (g, v) in enumerate(scores.items())})

    def class_accuracy(removed):
        log_calls.append(1)
        count = sum(map(len, removed.values()))
        return [1.0] if count <= 30 else [0.6 + 0.01 * (count % 7), 0.7]

    return rescore, class_accuracy


@pytest.mark.parametrize("allocator,options", [("accuracy-aware", {"step": 0.1, "min_step": 0.02}),
                                               ("iterative", {"step": 0.1}),
                                               ("progressive", {"chunk": 0.2, "tolerance": 0.5})])
def test_a_walk_resumed_from_any_other_target_ends_where_a_fresh_walk_ends(allocator, options):
    model, x, space, scores = scored_resnet20()

    def run(target, store=None):
        calls: list = []
        rescore, class_accuracy = _synthetic_probe(scores, calls)
        probe = Probe(rescore=rescore, class_accuracy=class_accuracy)
        if store is not None:
            probe.path = store.log("walk", target)
        removed = fp.allocation.allocate(space, scores, fp.Target(channels=target), allocator, probe=probe,
                                         **options)
        return removed, probe.log, len(calls), probe.path

    targets = [0.3, 0.15, 0.5, 0.45, 0.2, 0.6]  # up and down: waypoints past a smaller target are never used
    fresh = {t: run(t) for t in targets}
    store = SharedPaths()
    resumed_any = False
    for t in targets:
        removed, log, calls, path = run(t, store)
        assert removed == fresh[t][0], t
        assert log == fresh[t][1], t  # the same steps, logged the same way
        if path.resumed is not None:
            resumed_any = True
            assert path.resumed.peak < t and calls <= fresh[t][2]
    assert resumed_any
    assert store.paths["walk"].waypoints  # the path was recorded


def _tiny_teacher_and_samples():
    teacher = build("resnet20", num_classes=10, in_channels=1).eval()
    generator = torch.Generator().manual_seed(3)
    return teacher, (torch.randn(20, 1, 28, 28, generator=generator), torch.randint(0, 4, (20,), generator=generator))


@pytest.mark.parametrize("method", [
    "lrp",
    "lrp-aa",
    fp.methods.Method(criterion="cswap", allocation="progressive",
                      allocation_options={"tolerance": 1.0}),
])
def test_compress_inside_shared_paths_gives_the_plans_of_separate_calls(method):
    teacher, samples = _tiny_teacher_and_samples()
    targets = [0.1, 0.25]
    alone = {t: fp.compress(teacher, samples, method=method, target=fp.Target(channels=t), progress=False)
             for t in targets}
    with shared_paths():
        together = {t: fp.compress(teacher, samples, method=method, target=fp.Target(channels=t), progress=False)
                    for t in targets}
        other_seed = fp.compress(teacher, samples, method=method, target=fp.Target(channels=0.25), seed=1,
                                 progress=False)
    for t in targets:
        assert together[t].plan.removed == alone[t].plan.removed
        assert together[t].report["allocation"]["steps"] == alone[t].report["allocation"]["steps"]
    shared = together[0.25].report["allocation"].get("shared_path")
    assert shared and 0 < shared["resumed_at"] < 0.1 and shared["shared_seconds"] >= 0
    assert together[0.25].report["shared_scores"]["shared_seconds"] > 0  # the first scores were computed once
    assert "shared_path" not in alone[0.25].report["allocation"] and "shared_scores" not in alone[0.25].report
    assert "shared_path" not in other_seed.report["allocation"]  # another seed is another walk
    assert "shared_scores" not in other_seed.report
