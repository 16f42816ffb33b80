import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from fewprune.bench import SweepConfig, read_results, run_sweep, write_report
from fewprune.bench import runner as runner_module


@pytest.fixture
def sweep(tiny_fmnist, monkeypatch, tmp_path):
    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    model_file = tmp_path / "tiny.py"
    model_file.write_text(  # the same weights at every load, like a trained teacher's
        "import torch, torch.nn as nn\n"
        "def make(num_classes=10, in_channels=1):\n"
        "    with torch.random.fork_rng():\n"
        "        torch.manual_seed(0)\n"
        "        return nn.Sequential(nn.Conv2d(in_channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),\n"
        "                             nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),\n"
        "                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))\n")

    def write(methods, name="tiny", **extra):
        config = {"name": name, "dataset": "fashion-mnist", "models": [f"{model_file}:make"], "methods": methods,
                  "samples": [20], "targets": [{"macs": 0.4}], "seeds": [0], "latency": False, **extra}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return SweepConfig.read(path)

    return write


def test_two_cell_sweep_writes_json_lines_report_and_plots(sweep):
    config = sweep(["l1", "l1+bn"])
    summary = run_sweep(config, progress=False, log=lambda *_: None)
    rows = read_results(config.results)
    cells = [r for r in rows if r["kind"] == "cell"]
    assert len(cells) == 2 and all(r["status"] == "ok" for r in cells)
    for r in cells:
        assert 0 <= r["accuracy"] <= 1 and len(r["per_class"]) == 10 and r["test_samples"] == 40
        assert abs(r["macs_reduction"] - 0.4) <= 0.01 and r["few_shot_hash"] and r["versions"]["torch"]
        assert r["command"].startswith("fewprune prune --model")
        # CPU time of the compression, beside its wall time (which other load on the machine stretches)
        assert 0 < r["compress_cpu_seconds"] <= r["compress_seconds"] * torch.get_num_threads() + 1
    assert [r["kind"] for r in rows].count("teacher") == 1
    report = open(summary["report"]).read()
    assert "| l1 |" in report and "| l1+bn |" in report and "*teacher*" in report and "#1" in report
    assert all(open(p, "rb").read(4) == b"\x89PNG" for p in summary["plots"]) and "stopped" not in summary


def test_rerun_completes_only_the_missing_cell(sweep, monkeypatch):
    config = sweep(["l1"])
    run_sweep(config, progress=False, log=lambda *_: None)
    calls = []
    original = runner_module.run_cell
    monkeypatch.setattr("fewprune.bench.runner.run_cell", lambda cell, *a: calls.append(cell.method) or original(cell, *a))
    bigger = sweep(["l1", "l1+bn"])
    run_sweep(bigger, progress=False, log=lambda *_: None)
    assert calls == ["l1+bn"]
    keys = [r["key"] for r in read_results(bigger.results) if r["kind"] == "cell"]
    assert len(keys) == len(set(keys)) == 2


def test_a_torn_last_line_is_ignored_and_the_cell_rerun(sweep):
    config = sweep(["l1"])
    run_sweep(config, progress=False, log=lambda *_: None)
    lines = open(config.results).read().splitlines()
    with open(config.results, "w") as f:  # simulate a crash while writing the cell's line
        f.write("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    run_sweep(config, progress=False, log=lambda *_: None)
    assert sum(r["kind"] == "cell" for r in read_results(config.results)) == 1


def test_a_first_interrupt_stops_the_sweep_after_the_cell_in_progress(sweep, monkeypatch):
    import os
    import signal

    config = sweep(["l1", "l1+bn", "random"])
    original = runner_module.run_cell

    def interrupted(cell, *args):  # Ctrl-C arrives while the first cell is being measured
        if cell.method == "l1":
            os.kill(os.getpid(), signal.SIGINT)
        return original(cell, *args)

    monkeypatch.setattr("fewprune.bench.runner.run_cell", interrupted)
    messages = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job, Python's handler in a terminal
    summary = run_sweep(config, progress=False, log=messages.append)
    cells = [r for r in read_results(config.results) if r["kind"] == "cell"]
    assert [(r["cell"]["method"], r["status"]) for r in cells] == [("l1", "ok")]  # finished, then stopped
    assert any("stopped as asked after 1 of 3 jobs" in m for m in messages)
    assert os.path.exists(summary["report"]) and summary["stopped"]  # `fewprune bench` then exits with 130
    assert signal.getsignal(signal.SIGINT) == before  # the handlers are given back


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(sweep):
    config = sweep(["l1", "nonsense+kd", "l1+bn"])
    run_sweep(config, progress=False, log=lambda *_: None)
    rows = {r["cell"]["method"]: r for r in read_results(config.results) if r["kind"] == "cell"}
    assert rows["nonsense+kd"]["status"] == "error" and "nonsense" in rows["nonsense+kd"]["error"]
    assert rows["l1"]["status"] == rows["l1+bn"]["status"] == "ok"
    report = open(config.report).read()
    assert "Failed cells" in report and "| nonsense+kd | failed [1 of 1 seeds, see below] |" in report


def test_block_methods_pair_only_with_block_targets(tmp_path):
    config = SweepConfig(name="x", dataset="fashion-mnist", models=["resnet20"], methods=["l1", "block-random"],
                         samples=[5], targets=[{"macs": 0.5}, {"blocks": 1}, {"macs": 0.7, "blocks": 2}],
                         seeds=[0, 1])
    pairs = {(c.method, tuple(c.target)) for c in config.cells()}
    assert pairs == {("l1", ("macs",)), ("block-random", ("blocks",)), ("l1", ("macs", "blocks"))}
    assert len(config.cells()) == 6
    hybrid = next(c for c in config.cells() if len(c.target) == 2)
    assert "--macs 0.7 --blocks 2 " in hybrid.command()


def test_config_errors_are_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"name": "x", "dataset": "fashion-mnist", "models": [], "methods": [],
                                "samples": [1], "targets": [{"macs": 0.5}], "colour": "red"}))
    with pytest.raises(ValueError, match="colour") as refused:
        SweepConfig.read(path)
    assert "did you mean" not in str(refused.value) and "takes name, dataset, models, methods" in str(refused.value)
    path.write_text(json.dumps({"name": "x", "dataset": "fashion-mnist", "models": [], "method": [],
                                "samples": [1], "targets": [{"macs": 0.5}]}))
    with pytest.raises(ValueError, match="unknown keys \\['method'\\]; 'method': did you mean 'methods'\\?"):
        SweepConfig.read(path)


@pytest.mark.parametrize("ceiling, error", [({"epochs": 1, "epoch": 3}, "not \\['epoch'\\]"),
                                            ({"blocks": "l1"}, "'l1' scores channels, not blocks"),
                                            ({"blocks": "block-residul"}, "registered: .*block-residual")])
def test_ceiling_settings_are_checked_by_name(sweep, ceiling, error):
    with pytest.raises((ValueError, KeyError), match=error):
        sweep(["l1"], ceiling=ceiling)


def test_a_sweep_refuses_a_speedup_target_whose_timings_its_side_by_side_jobs_would_decide(sweep):
    with pytest.raises(ValueError, match="a sweep cannot take the target {'speedup': 2.0}"):
        sweep(["l1"], targets=[{"speedup": 2.0}])


@pytest.mark.parametrize("scratch, error", [({"epochs": 1, "gate": []}, "not \\['gate'\\]"),
                                            ({"gates": [{"prize": "channels"}]}, "not \\['prize'\\]"),
                                            ({"gates": ["channels"]}, "not \\['channels'\\]"),
                                            ({"gates": [{"price": "chanels"}]}, "price must be one of .*'chanels'"),
                                            ({"gates": [{"models": ["zoo:resnet20-fmnist"]}]},
                                             "models must be a list of the sweep's models"),
                                            ({"gates": [{"models": "tiny"}]}, "models must be a list")])
def test_scratch_settings_are_checked_by_name(sweep, scratch, error):
    with pytest.raises(ValueError, match=error):
        sweep(["l1"], scratch=scratch)


def test_a_scratch_gate_form_limited_to_some_models_runs_on_those_only():
    from fewprune.bench.sweep import sweep_jobs

    config = SweepConfig(name="s", dataset="fashion-mnist", models=["zoo:resnet20-fmnist", "zoo:resnet56-fmnist"],
                         methods=[], samples=[0], targets=[{"macs": 0.5}, {"macs": 0.7}],
                         scratch={"epochs": 1, "gates": [{"models": ["zoo:resnet20-fmnist"]}, {"price": "channels"}]})
    jobs = {(job.model, json.dumps(job.gates), job.target["macs"]): job for job in sweep_jobs(config)}
    assert set(jobs) == {("zoo:resnet20-fmnist", "{}", 0.5), ("zoo:resnet20-fmnist", "{}", 0.7),
                         ("zoo:resnet20-fmnist", '{"price": "channels"}', 0.5),
                         ("zoo:resnet20-fmnist", '{"price": "channels"}', 0.7),
                         ("zoo:resnet56-fmnist", '{"price": "channels"}', 0.5),
                         ("zoo:resnet56-fmnist", '{"price": "channels"}', 0.7)}
    # the limit is not a change to the gates: the job keeps the key (and so the finished row) of an unlimited one
    assert jobs["zoo:resnet20-fmnist", "{}", 0.5].key \
        == "asca-scratch:zoo:resnet20-fmnist:fashion-mnist:macs=0.5:e1:None"


def test_a_block_count_ceiling_fine_tunes_the_blocks_its_criterion_picks(tiny_fmnist, monkeypatch, tmp_path):
    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    monkeypatch.setattr("fewprune.bench.ceiling.BLOCK_SAMPLES", 20)  # the tiny training split has 60 images
    config = SweepConfig(name="blocks", dataset="fashion-mnist", models=["zoo:resnet20-fmnist"],
                         methods=["block-residual"], samples=[10], targets=[{"macs": 0.5}, {"blocks": 2}],
                         latency=False, ceiling={"epochs": 1, "blocks": "block-residual"},
                         results=str(tmp_path / "r.jsonl"), report=str(tmp_path / "r.md"), source="blocks.yaml")
    run_sweep(config, progress=False, log=lambda *_: None)
    ceilings = {json.dumps(r["target"]): r for r in read_results(config.results) if r["kind"] == "ceiling"}
    width, blocks = ceilings['{"macs": 0.5}'], ceilings['{"blocks": 2}']
    assert width["status"] == blocks["status"] == "ok" and width["structure"] == "l1"
    assert blocks["structure"] == "block-residual" and blocks["structure_samples"] == 20
    assert len(blocks["dropped_blocks"]) == 2 and blocks["key"].endswith("blocks=2:block-residual@20:e1:lr0.01:None")
    assert "*full-data ceiling* (1 ep.; blocks picked by block-residual on 20 images)" in open(config.report).read()


def test_ray_executor_matches_in_process(sweep):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'fewprune[ray]')")
    local = sweep(["l1", "random"], name="local")
    remote = sweep(["l1", "random"], name="remote")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # each Ray task runs on one CPU; float sums depend on the thread count
    try:
        run_sweep(local, progress=False, log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    run_sweep(remote, executor="ray", progress=False, log=lambda *_: None)
    assert not ray.is_initialized()
    pick = lambda cfg: {r["key"]: (r["accuracy"], r["per_class"], r["plan_removed"], r["macs"])
                        for r in read_results(cfg.results) if r["kind"] == "cell"}
    assert pick(local) == pick(remote) and len(pick(local)) == 2


def test_ray_rows_measured_by_other_code_are_not_recorded(sweep, monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'fewprune[ray]')")
    from fewprune import metrics

    config = sweep(["l1", "random"], name="elsewhere")
    monkeypatch.setattr(metrics, "loaded_source", lambda: "0123456789ab")  # this process runs other code than its workers
    said = []
    summary = run_sweep(config, executor="ray", progress=False, log=said.append)
    assert summary["stopped"] and not ray.is_initialized()
    assert not [r for r in read_results(config.results) if r["kind"] == "cell"]
    assert any("a worker ran fewprune source" in line and "0123456789ab: its row is not recorded" in line
               for line in said)


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.parent.glob("benchmarks/*.yaml")), ids=lambda p: p.name)
def test_committed_sweep_configs_resolve(path):
    import fewprune as fp

    config = SweepConfig.read(path)
    for name in config.methods:
        fp.methods.get(name)  # raises with the registered parts if a name is wrong
    cells = config.cells()
    assert (cells or config.scratch) and {c.method for c in cells} == set(config.methods)  # each pairs with a target
    assert f"fewprune bench benchmarks/{path.name}" in path.read_text()  # the regenerating command is stated


def test_the_ceiling_is_a_job_run_once_and_a_failing_one_is_recorded(sweep):
    config = sweep(["l1"], ceiling={"epochs": 1}, targets=[{"macs": 0.4}, {"macs": 0.995}])
    run_sweep(config, progress=False, log=lambda *_: None)
    rows = read_results(config.results)
    ceilings = {r["target"]["macs"]: r for r in rows if r["kind"] == "ceiling"}
    assert ceilings[0.4]["status"] == "ok" and 0 <= ceilings[0.4]["accuracy"] <= 1
    assert abs(ceilings[0.4]["macs_reduction"] - 0.4) <= 0.01
    assert ceilings[0.995]["status"] == "error" and "TargetUnreachable" in ceilings[0.995]["error"]
    assert "full-data ceiling" in open(config.report).read()
    run_sweep(config, progress=False, log=lambda *_: None)  # nothing left to run: no second ceiling row
    assert sum(r["kind"] == "ceiling" for r in read_results(config.results)) == 2


def test_shards_split_a_sweep_and_a_shard_left_alone_helps_with_the_others_families(sweep):
    config = sweep(["l1", "l1+bn", "random"])
    logged = []
    run_sweep(config, progress=False, log=logged.append, shard=(1, 2))
    rows = read_results(config.results)
    # its own family first, then the others' from the far end: nothing is left for shard 0
    assert [r["cell"]["method"] for r in rows if r["kind"] == "cell"] == ["l1+bn", "random", "l1"]
    assert sum("helping with 1 jobs of another shard" in line for line in logged) == 2
    assert any("[3/3]" in line for line in logged)  # the progress total grew with the help
    run_sweep(config, progress=False, log=logged.append, shard=(0, 2))
    rows = read_results(config.results)
    assert sorted(r["cell"]["method"] for r in rows if r["kind"] == "cell") == ["l1", "l1+bn", "random"]
    assert [r["kind"] for r in rows].count("teacher") == 1  # the second shard found the first's teacher
    with pytest.raises(ValueError, match="shard 2/2"):
        run_sweep(config, progress=False, log=lambda *_: None, shard=(2, 2))


def test_seeds_run_one_seed_of_every_setting_now_and_the_others_later(sweep):
    config = sweep(["l1", "random"], seeds=[0, 1], ceiling={"epochs": 1})
    run_sweep(config, progress=False, log=lambda *_: None, seeds=[1])
    rows = read_results(config.results)
    assert sorted((r["cell"]["method"], r["cell"]["seed"]) for r in rows if r["kind"] == "cell") == [
        ("l1", 1), ("random", 1)]
    assert [r["kind"] for r in rows].count("ceiling") == 1  # a training job has no seed: it runs with any
    run_sweep(config, progress=False, log=lambda *_: None)
    cells = [r for r in read_results(config.results) if r["kind"] == "cell"]
    assert sorted((r["cell"]["method"], r["cell"]["seed"]) for r in cells) == [
        ("l1", 0), ("l1", 1), ("random", 0), ("random", 1)]
    with pytest.raises(ValueError, match=r"seed 7 is not in the sweep \(its seeds: 0, 1\)"):
        run_sweep(config, progress=False, log=lambda *_: None, seeds=[7])
    with pytest.raises(ValueError, match="model resnet56 is not in the sweep"):
        run_sweep(config, progress=False, log=lambda *_: None, models=["resnet56"])


def test_methods_run_the_cells_a_comparison_needs_first_and_the_others_later(sweep):
    config = sweep(["l1", "random", "l1+bn"], ceiling={"epochs": 1})
    run_sweep(config, progress=False, log=lambda *_: None, methods=["l1+bn", "random"])
    rows = read_results(config.results)
    assert sorted(r["cell"]["method"] for r in rows if r["kind"] == "cell") == ["l1+bn", "random"]
    assert [r["kind"] for r in rows].count("ceiling") == 1  # a training job has no method: it runs with any
    run_sweep(config, progress=False, log=lambda *_: None)
    assert sorted(r["cell"]["method"] for r in read_results(config.results) if r["kind"] == "cell") == [
        "l1", "l1+bn", "random"]
    with pytest.raises(ValueError, match=r"method l1\+kd is not in the sweep \(its methods: l1, random, l1\+bn\)"):
        run_sweep(config, progress=False, log=lambda *_: None, methods=["l1+kd"])


def test_models_leave_the_other_models_and_their_teachers_for_later(sweep, tmp_path):
    config = sweep(["l1"])
    other = tmp_path / "other.py"
    other.write_text((tmp_path / "tiny.py").read_text())
    config = sweep(["l1"], models=[config.models[0], f"{other}:make"])
    run_sweep(config, progress=False, log=lambda *_: None, models=[f"{other}:make"])
    rows = read_results(config.results)
    assert {r["model"] for r in rows if r["kind"] == "teacher"} == {f"{other}:make"}
    assert {r["cell"]["model"] for r in rows if r["kind"] == "cell"} == {f"{other}:make"}


def test_shards_run_on_two_machines_merge_into_one_sweep_and_wait_for_timing_here(sweep, tmp_path):
    import json
    from dataclasses import replace

    from fewprune.bench.sweep import merge_results

    here = sweep(["l1", "l1+bn", "random"], latency=True)
    # the same sweep on another machine: its own results file, the other half of the families
    elsewhere = replace(here, results=str(tmp_path / "elsewhere" / "tiny.jsonl"), report=str(tmp_path / "e.md"))
    run_sweep(here, progress=False, log=lambda *_: None, shard=(0, 2))
    mine = {r["key"] for r in read_results(here.results) if r["kind"] == "cell"}
    run_sweep(elsewhere, progress=False, log=lambda *_: None, shard=(1, 2))
    theirs = {r["key"]: r for r in read_results(elsewhere.results) if r["kind"] == "cell"}
    assert len(mine) == 3 and set(theirs) == mine  # with nothing claimed there, each machine ran all three
    # keep only what the other machine ran that this one did not, as if they had split the work
    rows = [r for r in read_results(elsewhere.results) if r["kind"] != "cell" or r["cell"]["method"] == "random"]
    Path(elsewhere.results).write_text("".join(json.dumps(r) + "\n" for r in rows))
    with_error = [r for r in read_results(here.results)]
    for r in with_error:  # here, "random" failed: a finished row from elsewhere replaces it
        if r["kind"] == "cell" and r["cell"]["method"] == "random":
            r.update(status="error", error="RuntimeError: a failure here")
    Path(here.results).write_text("".join(json.dumps(r) + "\n" for r in with_error))
    logged = []
    assert merge_results(here, [elsewhere.results], log=logged.append) == {"tiny.jsonl": 1}
    rows = read_results(here.results)
    merged = [r for r in rows if r.get("merged_from")]
    assert len(merged) == 1 and merged[0]["cell"]["method"] == "random" and merged[0]["status"] == "ok"
    assert "latency" not in merged[0] and merged[0]["latency_elsewhere"]  # another machine's timings
    write_report(here)
    report = open(here.report).read()
    assert "1 job ran on another machine and was merged in" in report and "and 0 of 1 have been" in report
    speed_rows = [line for line in report.splitlines() if line.startswith("| random | -40% macs |")]
    assert speed_rows and speed_rows[0].split(" | ")[5] == "–"  # measured speed-up: it waits for a timing here
    timed_here = [line.split(" | ")[5] for line in report.splitlines()
                  if line.startswith(("| l1 | -40% macs |", "| l1+bn | -40% macs |"))]
    assert len(timed_here) == 2 and all(v.endswith("×") for v in timed_here)
    assert merge_results(here, [elsewhere.results], log=logged.append) == {"tiny.jsonl": 0}  # nothing left to take
    run_sweep(here, progress=False, log=logged.append)
    assert not [r for r in read_results(here.results)[len(rows):] if r["kind"] == "cell"]  # nothing ran again


def test_a_merge_leaves_out_rows_of_a_teacher_measured_otherwise_and_refuses_its_own_file(sweep, tmp_path):
    import json
    from dataclasses import replace

    from fewprune.bench.sweep import merge_results

    here = sweep(["l1"])
    elsewhere = replace(here, results=str(tmp_path / "elsewhere" / "tiny.jsonl"), report=str(tmp_path / "e.md"))
    run_sweep(elsewhere, progress=False, log=lambda *_: None)
    rows = read_results(elsewhere.results)
    for r in rows:
        if r["kind"] == "teacher":
            r["accuracy"] = round(r["accuracy"] + 0.01, 6)  # another protocol gave the teacher another accuracy
    Path(elsewhere.results).write_text("".join(json.dumps(r) + "\n" for r in rows))
    logged = []
    assert merge_results(here, [elsewhere.results], log=logged.append) == {"tiny.jsonl": 0}
    assert any("its rows of that teacher are left out" in line for line in logged)
    assert [r["kind"] for r in read_results(here.results)] == ["teacher"]  # measured here; nothing merged
    with pytest.raises(ValueError, match="this sweep's own results file"):
        merge_results(here, [here.results])
    with pytest.raises(FileNotFoundError, match="holds no results"):
        merge_results(here, [tmp_path / "missing.jsonl"])


def test_a_sweep_on_a_device_says_so_in_each_row_and_leaves_the_timing_to_the_cpu(sweep):
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where a GPU is, the GPU path is checked too
    config = sweep(["l1+bn"], latency=True, ceiling={"epochs": 1})
    run_sweep(config, progress=False, log=lambda *_: None, device=device)
    rows = read_results(config.results)
    teacher = next(r for r in rows if r["kind"] == "teacher")
    assert teacher["latency"] and "device" not in teacher  # teachers are measured on the CPU, wherever jobs run
    jobs = [r for r in rows if r["kind"] in ("cell", "ceiling")]
    assert len(jobs) == 2 and all(r["status"] == "ok" for r in jobs)
    if device == "cpu":  # the CPU: as without --device
        assert all(r["latency"] and "device" not in r for r in jobs)
    else:
        assert all(r["device"].startswith("cuda") and not r.get("latency") for r in jobs)
        assert "on cuda" in open(config.report).read()


def test_a_sweep_names_a_missing_gpu_before_any_job(sweep):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: there is nothing missing to name")
    config = sweep(["l1"])
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        run_sweep(config, progress=False, log=lambda *_: None, device="cuda")
    assert not Path(config.results).exists()


def test_a_family_claimed_by_a_live_process_is_left_to_it_and_a_dead_ones_claim_is_taken_over(sweep):
    import subprocess
    import sys

    from fewprune.bench.claims import _start_time, claims_path, family_id, read_claims

    config = sweep(["l1", "l1+bn", "random"])
    keys = {c.method: c.key for c in config.cells()}
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {"host": __import__("socket").gethostname(), "pid": int(finished.stdout), "started": "0"}
    parent = {"host": dead["host"], "pid": os.getppid(), "started": _start_time(os.getppid())}
    claims_path(config.results).parent.mkdir(parents=True, exist_ok=True)
    claims_path(config.results).write_text(
        json.dumps({"family": family_id([keys["l1"]]), "owner": parent}) + "\n"
        + json.dumps({"family": family_id([keys["random"]]), "owner": dead}) + "\n")
    run_sweep(config, progress=False, log=lambda *_: None)
    rows = read_results(config.results)
    assert sorted(r["cell"]["method"] for r in rows if r["kind"] == "cell") == ["l1+bn", "random"]
    holders = {c["family"]: c["owner"]["pid"] for c in read_claims(config.results)}
    assert holders[family_id([keys["l1"]])] == os.getppid()  # the live claim stands
    assert holders[family_id([keys["random"]])] == os.getpid()  # the dead one's was taken over
    assert dead["pid"] not in holders.values()  # and dropped from the file


def test_a_family_whose_claimant_stops_before_finishing_it_is_taken_over_at_the_end(sweep, monkeypatch):
    from fewprune.bench import claims
    from fewprune.bench.claims import claims_path, family_id

    config = sweep(["l1", "l1+bn", "random"])
    l1 = next(c.key for c in config.cells() if c.method == "l1")
    other = {"host": "elsewhere", "pid": 1, "started": None}
    claims_path(config.results).parent.mkdir(parents=True, exist_ok=True)
    claims_path(config.results).write_text(json.dumps({"family": family_id([l1]), "owner": other}) + "\n")
    ran = []
    monkeypatch.setattr(claims, "_alive", lambda owner: owner != other or len(ran) < 2)  # it stops after 2 cells
    original = runner_module.run_cell
    monkeypatch.setattr("fewprune.bench.runner.run_cell", lambda cell, *a: ran.append(cell.method) or original(cell, *a))
    logged = []
    run_sweep(config, progress=False, log=logged.append)
    assert ran == ["l1+bn", "random", "l1"]  # skipped while held, taken over once its holder was gone
    assert any("[3/3]" in line for line in logged)


def test_shards_keep_each_cell_family_together_in_target_order(sweep):
    from fewprune.bench.sweep import shard_families

    config = sweep(["l1", "l1+bn", "random"], targets=[{"macs": 0.3}, {"macs": 0.5}, {"blocks": 1}], seeds=[0, 1])
    cells = config.cells()
    shards = [[c for family in shard_families(cells, i, 2) for c in family] for i in range(2)]
    assert sorted(c.key for shard in shards for c in shard) == sorted(c.key for c in cells)
    for shard in shards:
        for cell in shard:  # every target of a cell's kind runs in the same shard, smaller first
            family = [c for c in shard if (c.method, c.seed, set(c.target)) == (cell.method, cell.seed, set(cell.target))]
            assert len(family) == (2 if "macs" in cell.target else 1)
            assert [c.target.get("macs") for c in family] == sorted(c.target.get("macs") for c in family)


def test_a_sweep_stops_before_the_next_job_when_the_fewprune_source_changed_under_it(sweep, monkeypatch):
    """A process keeps the code it loaded: a job it ran after an edit would be filed under the new code's key."""
    from fewprune.metrics import loaded_source

    config = sweep(["l1", "l1+bn", "random"])
    original = runner_module.run_cell
    on_disk = [loaded_source()]

    def edited_meanwhile(cell, *args):  # the source is edited while the first cell is being measured
        on_disk[0] = "0123456789ab"
        return original(cell, *args)

    monkeypatch.setattr("fewprune.bench.runner.run_cell", edited_meanwhile)
    monkeypatch.setattr("fewprune.bench.sweep.source_digest", lambda: on_disk[0])
    messages = []
    summary = run_sweep(config, progress=False, log=messages.append)
    cells = [r for r in read_results(config.results) if r["kind"] == "cell"]
    assert [r["cell"]["method"] for r in cells] == ["l1"] and summary["stopped"]
    assert cells[0]["versions"]["fewprune_source"] == loaded_source()  # the row names the code that measured it
    assert any(f"it runs {loaded_source()}, the files are 0123456789ab" in m for m in messages)
    assert any("stopped for the new code after 1 of 3 jobs" in m for m in messages)


def test_the_source_digest_follows_the_files(tmp_path):
    from fewprune.metrics import source_digest

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = source_digest(tmp_path)
    assert len(first) == 12 and source_digest(tmp_path) == first
    (tmp_path / "notes.txt").write_text("changed, still not code")
    assert source_digest(tmp_path) == first
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert source_digest(tmp_path) != first
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "sub" / "b.py").rename(tmp_path / "b2.py")  # a file moved is other code too
    assert source_digest(tmp_path) != first


def test_a_larger_target_after_the_method_stopped_short_is_inferred_not_run(sweep, monkeypatch):
    from fewprune.allocation import StoppedShort

    calls = []

    def stops_short(teacher, samples, target=None, **options):
        calls.append(target.value)
        raise StoppedShort("accuracy would fall: stopped at 15.0% channels removed", 0.15)

    monkeypatch.setattr("fewprune.api.compress", stops_short)
    config = sweep(["l1"], targets=[{"channels": 0.2}, {"channels": 0.4}, {"channels": 0.1}])
    run_sweep(config, progress=False, log=lambda *_: None)
    rows = {r["cell"]["target"]["channels"]: r for r in read_results(config.results) if r["kind"] == "cell"}
    assert calls == [0.2, 0.1]  # 0.4 was not run; 0.1 lies below where 0.2 stopped, so it was
    assert rows[0.2]["reached"] == 0.15 and "inferred_from" not in rows[0.2]
    assert rows[0.4]["status"] == "error" and rows[0.4]["inferred_from"] == rows[0.2]["key"]
    assert rows[0.4]["reached"] == 0.15 and "inferred, not run" in rows[0.4]["error"]


def test_rows_another_sweep_measured_are_reused_only_under_the_same_protocol(sweep, monkeypatch):
    first = sweep(["l1"], name="first", ceiling={"epochs": 1})
    run_sweep(first, progress=False, log=lambda *_: None)
    measured = {r["key"]: r for r in read_results(first.results) if r["kind"] in ("ceiling", "cell")}
    monkeypatch.setattr("fewprune.bench.ceiling.run_ceiling", lambda *a, **k: pytest.fail("ceiling recomputed"))
    calls = []
    original = runner_module.run_cell
    monkeypatch.setattr("fewprune.bench.runner.run_cell", lambda cell, *a: calls.append(cell.method) or original(cell, *a))
    second = sweep(["l1", "l1+bn"], name="second", ceiling={"epochs": 1})
    run_sweep(second, progress=False, log=lambda *_: None)
    assert calls == ["l1+bn"]
    reused = [r for r in read_results(second.results) if r.get("reused_from")]
    assert sorted(r["kind"] for r in reused) == ["ceiling", "cell"]
    for r in reused:
        assert r["reused_from"] == "first.jsonl" and r["accuracy"] == measured[r["key"]]["accuracy"]
    # A sweep whose teacher measured differently (other weights, other test split) measures its own.
    for other in (first, second):
        rows = read_results(other.results)
        Path(other.results).write_text("".join(json.dumps({**r, "accuracy": 0.5} if r["kind"] == "teacher" else r)
                                               + "\n" for r in rows))
    third = sweep(["l1"], name="third")
    run_sweep(third, progress=False, log=lambda *_: None)
    assert calls == ["l1+bn", "l1"] and not any(r.get("reused_from") for r in read_results(third.results))


def test_a_label_free_methods_cell_measured_with_labels_shown_counts_for_hidden_labels(sweep, monkeypatch):
    shown = sweep(["l1+bn", "taylor+bn"], name="shown")
    run_sweep(shown, progress=False, log=lambda *_: None)
    measured = {r["cell"]["method"]: r for r in read_results(shown.results) if r["kind"] == "cell"}
    calls = []
    original = runner_module.run_cell
    monkeypatch.setattr("fewprune.bench.runner.run_cell", lambda cell, *a: calls.append(cell) or original(cell, *a))
    hidden = sweep(["l1+bn", "taylor+bn"], name="hidden", labels=False)
    run_sweep(hidden, progress=False, log=lambda *_: None)
    assert [c.method for c in calls] == ["taylor+bn"] and not calls[0].labels  # Taylor's loss reads the labels
    rows = {r["cell"]["method"]: r for r in read_results(hidden.results) if r["kind"] == "cell"}
    twin = rows["l1+bn"]
    assert twin["reused_from"] == "shown.jsonl" and twin["same_as_key"] == measured["l1+bn"]["key"] != twin["key"]
    assert twin["cell"]["labels"] is False and twin["same_as_labels"] is True and "--no-labels" in twin["command"]
    assert twin["accuracy"] == measured["l1+bn"]["accuracy"]
    # ... which is what running it with hidden labels measures
    again = original(next(c for c in hidden.cells() if c.method == "l1+bn"))
    assert again["accuracy"] == twin["accuracy"] and again["per_class"] == twin["per_class"]


def test_a_job_another_sweep_measures_while_this_one_runs_is_reused(sweep, monkeypatch):
    first = sweep(["l1"], name="first")
    run_sweep(first, progress=False, log=lambda *_: None)
    finished = Path(first.results).read_text()
    # The first sweep has only measured its teacher when the second starts ...
    Path(first.results).write_text("".join(line + "\n" for line in finished.splitlines()
                                           if json.loads(line)["kind"] == "teacher"))
    calls = []
    original = runner_module.run_cell

    def run_cell(cell, *args):  # ... and finishes its l1 cell while the second runs l1+bn
        calls.append(cell.method)
        Path(first.results).write_text(finished)
        return original(cell, *args)

    monkeypatch.setattr("fewprune.bench.runner.run_cell", run_cell)
    messages = []
    second = sweep(["l1+bn", "l1"], name="second")
    run_sweep(second, progress=False, log=messages.append)
    assert calls == ["l1+bn"]
    rows = {r["cell"]["method"]: r for r in read_results(second.results) if r["kind"] == "cell"}
    assert rows["l1"]["reused_from"] == "first.jsonl" and "reused_from" not in rows["l1+bn"]
    assert any("measured meanwhile by first.jsonl" in m for m in messages)


def test_a_model_whose_teacher_cannot_load_waits_and_the_other_models_run(sweep, tmp_path):
    config = sweep(["l1"])
    missing = str(tmp_path / "absent.py") + ":make"
    config.models.append(missing)
    messages = []
    run_sweep(config, progress=False, log=messages.append)
    rows = read_results(config.results)
    assert [r["cell"]["model"] for r in rows if r["kind"] == "cell"] == [config.models[0]]
    assert not any(r.get("model") == missing for r in rows)  # nothing recorded: a later run tries it again
    assert any("skipping" in m and "absent.py" in m for m in messages)


def test_latency_is_remeasured_on_the_rebuilt_structures_and_used_by_the_report(sweep):
    from fewprune.bench.relatency import apply_remeasured, remeasure

    config = sweep(["l1", "l1+bn"])
    config.latency = True
    run_sweep(config, progress=False, log=lambda *_: None)
    assert remeasure(config, log=lambda *_: None) == 2
    assert remeasure(config, log=lambda *_: None) == 0  # measured once
    rows = read_results(config.results)
    quiet = [r for r in rows if r["kind"] == "latency"]
    assert len(quiet) == 2 and all(r["student"]["batch64"]["median_ms"] > 0 and "batch1" in r["teacher"]
                                   for r in quiet)
    for r in quiet:  # the reported pair is the round with the median teacher/student ratio
        ratio = r["teacher"]["batch64"]["median_ms"] / r["student"]["batch64"]["median_ms"]
        assert ratio == pytest.approx(sorted(r["speedup_rounds"]["batch64"])[2], rel=1e-3)
    # structures timed by an older protocol are timed again, once
    old = [{**r, "protocol": 1} if r["kind"] == "latency" else r for r in rows]
    Path(config.results).write_text("".join(json.dumps(r) + "\n" for r in old))
    assert remeasure(config, log=lambda *_: None) == 2
    assert remeasure(config, log=lambda *_: None) == 0
    # timed again on request: the newest timings are the ones used
    assert remeasure(config, log=lambda *_: None, again=True) == 2
    rows = read_results(config.results)
    newest = {r["cell"]: r for r in rows if r["kind"] == "latency"}
    assert len([r for r in rows if r["kind"] == "latency"]) == 6
    assert all(r["latency"] == newest[r["key"]]["student"] for r in apply_remeasured(rows) if r["kind"] == "cell")
    from fewprune.bench.sweep import write_report

    write_report(config)
    assert "quiet re-measurement" in open(config.report).read()


def test_asca_from_scratch_runs_as_a_sweep_job_beside_its_same_epoch_ceiling(tiny_fmnist, monkeypatch, tmp_path):
    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    config = SweepConfig(name="scratch", dataset="fashion-mnist", models=["zoo:resnet20-fmnist"], methods=["l1"],
                         samples=[10], targets=[{"macs": 0.5}], latency=False, scratch={"epochs": 1},
                         ceiling={"epochs": 1}, results=str(tmp_path / "r.jsonl"), report=str(tmp_path / "r.md"),
                         source="scratch.yaml")
    run_sweep(config, progress=False, log=lambda *_: None)
    rows = {r["kind"]: r for r in read_results(config.results)}
    assert rows["scratch"]["status"] == "ok" and abs(rows["scratch"]["macs_reduction"] - 0.5) <= 0.01
    assert rows["ceiling"]["status"] == "ok" and rows["cell"]["status"] == "ok"
    assert "*asca-scratch* (1 ep., full data, no teacher)" in open(config.report).read()
    # both training jobs checkpointed every epoch and removed their checkpoints once their rows were measured
    assert (tmp_path / "r.jsonl.partial").is_dir() and not list((tmp_path / "r.jsonl.partial").iterdir())


def test_a_sweep_of_training_jobs_only_reports_and_re_times_them(tiny_fmnist, monkeypatch, tmp_path):
    from fewprune.bench.relatency import apply_remeasured, remeasure, removed_counts
    from fewprune.bench.runner import _load_data, _teacher
    from fewprune.bench.sweep import write_report

    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    monkeypatch.setattr("fewprune.bench.relatency.ROUNDS", 1)  # timing is not what this test checks
    config = SweepConfig(name="scratch", dataset="fashion-mnist", models=["zoo:resnet20-fmnist"], methods=[],
                         samples=[0], targets=[{"macs": 0.5}], ceiling={"epochs": 1}, latency=False,
                         scratch={"epochs": 1, "gates": [{}, {"price": "channels"}]},  # the default and a variant
                         results=str(tmp_path / "r.jsonl"), report=str(tmp_path / "r.md"), source="scratch.yaml")
    run_sweep(config, progress=False, log=lambda *_: None)
    rows = {r.get("gates_schedule", {}).get("price", r["kind"]): r for r in read_results(config.results)}
    assert rows["scratch"]["status"] == rows["ceiling"]["status"] == rows["channels"]["status"] == "ok"
    assert "gates_schedule" not in rows["scratch"] and rows["scratch"]["key"] != rows["channels"]["key"]
    # each training job records its structure; the ceiling's is data-free L1, which a row that predates the
    # record gets computed again, identically
    assert all(sum(rows[kind]["plan_removed"].values()) > 0 for kind in ("scratch", "ceiling"))
    train, _ = _load_data("fashion-mnist", 1)
    older = {k: v for k, v in rows["ceiling"].items() if k != "plan_removed"}
    assert removed_counts(older, _teacher("zoo:resnet20-fmnist", train.info), train[0][0].unsqueeze(0)) \
        == rows["ceiling"]["plan_removed"]
    report = open(config.report).read()
    assert "0 samples" not in report and "3 full-data training jobs (3 measured, 0 failed)" in report
    assert f"| ceiling: l1 structure, fine-tuned 1 ep. | -50% macs | {100 * rows['ceiling']['accuracy']:.2f}" in report
    assert f"| asca-scratch, 1 ep. from scratch | -50% macs | {100 * rows['scratch']['accuracy']:.2f}" in report
    assert (f"| asca-scratch (price=channels), 1 ep. from scratch | -50% macs | "
            f"{100 * rows['channels']['accuracy']:.2f}") in report

    assert remeasure(config, log=lambda *_: None) == 3  # every structure, rebuilt from the teacher and timed
    rows = read_results(config.results)
    quiet = {r["cell"]: r for r in rows if r["kind"] == "latency"}
    assert set(quiet) == {r["key"] for r in rows if r["kind"] in ("ceiling", "scratch")}
    timed = [r for r in apply_remeasured(rows) if r["kind"] in ("ceiling", "scratch")]
    assert all(r["latency_remeasured"] and r["latency"] == quiet[r["key"]]["student"] for r in timed)
    write_report(config)
    report = open(config.report).read()
    assert "Speed-ups of 3 of 3 training jobs come from a quiet re-measurement" in report
    for r in timed:
        speed = r["latency_teacher"]["batch64"]["median_ms"] / r["latency"]["batch64"]["median_ms"]
        assert f"| {speed:.2f}× |" in report


def test_a_sweep_shows_the_matching_cells_of_the_sweep_it_runs_alongside(sweep):
    plain = sweep(["l1", "l1+bn"], name="plain")
    run_sweep(plain, progress=False, log=lambda *_: None)
    rounded = sweep(["l1"], name="rounded", round_to=16, alongside=plain.source)
    summary = run_sweep(rounded, progress=False, log=lambda *_: None)
    report = open(summary["report"]).read()
    # the plain sweep's l1 cell (same model, samples, target, seed) sits under the rounded one; l1+bn is not asked for
    assert "| l1 |" in report and "| l1 (plain) |" in report and "l1+bn" not in report
    plain_accuracy = next(r["accuracy"] for r in read_results(plain.results) if r.get("cell", {}).get("method") == "l1")
    assert f"| l1 (plain) | {100 * plain_accuracy:.2f}" in report
    assert len([r for r in read_results(rounded.results) if r["kind"] == "cell"]) == 1


def test_a_sweep_over_channel_fractions_reports_each_methods_curve_area():
    from fewprune.bench.report import render

    config = SweepConfig(name="x", dataset="fashion-mnist", models=["m"], methods=["l1", "lrp"], samples=[10],
                         targets=[{"channels": 0.3}, {"channels": 0.6}], seeds=[0, 1], source="x.yaml")
    rows = [{"kind": "teacher", "status": "ok", "model": "m", "accuracy": 0.9}]
    for method, seed, fraction, accuracy in [("l1", 0, 0.3, 0.8), ("l1", 0, 0.6, 0.5), ("l1", 1, 0.3, 0.8),
                                             ("l1", 1, 0.6, 0.7), ("lrp", 0, 0.3, 0.85)]:
        rows.append({"kind": "cell", "status": "ok", "accuracy": accuracy, "macs_reduction": fraction,
                     "params_reduction": fraction, "compress_seconds": 1.0,
                     "cell": {"model": "m", "method": method, "samples": 10, "seed": seed,
                              "target": {"channels": fraction}}})
    text = render(config, rows)
    # seed 0: (0.3·(90+80)/2 + 0.3·(80+50)/2) / 0.6 = 75; seed 1: 80. lrp lacks the 60% point: no area.
    assert "| l1 | 77.50 ± 3.54 |" in text and "| lrp | – |" in text


def test_paired_differences_pair_each_seed_with_itself_and_skip_seeds_one_method_lacks():
    from fewprune.bench.report import render

    config = SweepConfig(name="x", dataset="fashion-mnist", models=["m"], methods=["mir", "kd"], samples=[10, 50],
                         targets=[{"macs": 0.5}], seeds=[0, 1, 2], source="x.yaml",
                         compare=[{"methods": ["mir", "kd"], "note": "the paper expects MiR ahead"}])
    rows = []
    for method, samples, accuracies in [("mir", 10, [0.80, 0.90, 0.70]), ("kd", 10, [0.70, 0.95, 0.50]),
                                        ("mir", 50, [0.91, 0.92, 0.93]), ("kd", 50, [0.90, 0.90])]:
        for seed, accuracy in enumerate(accuracies):
            rows.append({"kind": "cell", "status": "ok", "accuracy": accuracy, "macs_reduction": 0.5,
                         "params_reduction": 0.5, "compress_seconds": 1.0,
                         "cell": {"model": "m", "method": method, "samples": samples, "seed": seed,
                                  "target": {"macs": 0.5}}})
    text = render(config, rows)
    # 10 samples: +10, -5, +20 → mean 8.33, std 12.58; 50 samples: seed 2 has no kd row, so +1, +2 only
    assert "| mir − kd | +8.33 ± 12.58 [ahead 2 of 3] | +1.50 ± 0.71 [ahead 2 of 2] |" in text
    assert "- mir − kd: the paper expects MiR ahead" in text


def test_block_dropping_is_compared_with_filter_pruning_at_the_speed_up_each_of_its_cells_measured():
    from fewprune.bench.report import render

    config = SweepConfig(name="x", dataset="fashion-mnist", models=["m"], methods=["block-random", "l1"],
                         samples=[10], targets=[{"macs": 0.2}, {"macs": 0.5}, {"blocks": 2}, {"blocks": 4}],
                         seeds=[0, 1, 2], source="x.yaml",
                         compare=[{"methods": ["block-random", "l1"], "at": "speed-up", "note": "equal latency"}])
    rows = [{"kind": "teacher", "status": "ok", "model": "m", "accuracy": 0.95,
             "latency": {"batch64": {"median_ms": 100.0}}}]
    for method, seed, target, milliseconds, accuracy in [
            ("l1", 0, {"macs": 0.2}, 80.0, 0.93), ("l1", 0, {"macs": 0.5}, 50.0, 0.90),
            ("l1", 1, {"macs": 0.2}, 80.0, 0.92), ("l1", 1, {"macs": 0.5}, 50.0, 0.90),
            ("block-random", 0, {"blocks": 2}, 90.0, 0.94), ("block-random", 1, {"blocks": 2}, 90.0, 0.945),
            ("block-random", 2, {"blocks": 2}, 90.0, 0.945),  # l1 never ran seed 2: not paired
            ("block-random", 0, {"blocks": 4}, 40.0, 0.80), ("block-random", 1, {"blocks": 4}, 40.0, 0.80)]:
        rows.append({"kind": "cell", "status": "ok", "accuracy": accuracy, "macs_reduction": 0.3,
                     "params_reduction": 0.3, "compress_seconds": 1.0, "latency": {"batch64": {"median_ms": milliseconds}},
                     "cell": {"model": "m", "method": method, "samples": 10, "seed": seed, "target": target}})
    text = render(config, rows)
    # 1.11×: between the teacher (1.00×, 95) and l1 at 20% (1.25×; 93 / 92): 94.11 / 93.67, so −0.11 and +0.83
    assert "| block-random − l1 | 2 blocks | +0.36 ± 0.67 at 1.11× [ahead 1 of 2] |" in text
    assert "| block-random − l1 | 4 blocks | – [outside 2] |" in text  # 2.50×: faster than any l1 structure
    assert "- block-random − l1 (at equal speed-up): equal latency" in text
    assert "| block-random − l1 | 4 blocks |" in text and "| block-random − l1 | -20% macs" not in text  # never ran there


@pytest.mark.parametrize("compare, error", [
    ([{"methods": ["l1", "taylor"]}], "not among the sweep's methods"),
    ([{"methods": ["l1"]}], "two different methods"),
    ([["l1", "block-random"]], "each compare entry is"),
    ([{"methods": ["l1", "block-random"]}], "never run at the same target"),
    ([{"methods": ["l1", "block-random"], "at": "latency"}], "at is one of"),
])
def test_comparisons_are_checked_when_the_config_is_read(sweep, compare, error):
    with pytest.raises(ValueError, match=error):
        sweep(["l1", "block-random"], targets=[{"macs": 0.4}, {"blocks": 1}], compare=compare)


def test_methods_that_never_share_a_target_compare_at_equal_speed_up(sweep):
    config = sweep(["l1", "block-random"], targets=[{"macs": 0.4}, {"blocks": 1}], latency=True,
                   compare=[{"methods": ["block-random", "l1"], "at": "speed-up"}])
    assert config.compare[0]["at"] == "speed-up"
    with pytest.raises(ValueError, match="needs the cells timed"):  # the fixture's sweeps are not timed
        sweep(["l1", "block-random"], targets=[{"macs": 0.4}, {"blocks": 1}],
              compare=[{"methods": ["block-random", "l1"], "at": "speed-up"}])


def test_methods_with_equal_figures_share_their_rank():
    from fewprune.bench.report import _rank

    means = [73.0, 10.0, 10.0, 10.001, 91.8]
    assert [_rank(m, means) for m in means] == [2, 3, 3, 3, 1]  # the three at chance tie for third


def test_accuracy_by_speedup_gives_each_targets_median_speedup_and_mean_accuracy():
    from fewprune.bench.plots import accuracy_by_speedup
    from fewprune.bench.report import summarise

    def row(method, target, accuracy, ms, samples=50):
        return {"kind": "cell", "status": "ok", "accuracy": accuracy, "latency": {"batch64": {"median_ms": ms}},
                "cell": {"model": "m", "target": target, "samples": samples, "method": method}}

    teacher = {"latency": {"batch64": {"median_ms": 120.0}}}
    rows = [row("drop", {"blocks": 2}, 0.90, 100.0), row("drop", {"blocks": 2}, 0.92, 60.0),
            row("drop", {"blocks": 2}, 0.94, 80.0), row("drop", {"blocks": 4}, 0.80, 40.0),
            row("drop", {"blocks": 4}, 0.99, 10.0, samples=10), row("filters", {"macs": 0.5}, 0.5, 30.0),
            {**row("drop", {"blocks": 6}, 0.7, 1.0), "latency": {}}]  # not timed: left out
    points = accuracy_by_speedup(summarise(rows), teacher, "m", "drop", 50)
    assert points == [(1.5, pytest.approx(92.0)), (3.0, pytest.approx(80.0))]


def test_status_counts_each_kind_of_job_and_estimates_the_time_left(sweep, monkeypatch):
    from fewprune.bench.claims import family_id, try_claim
    from fewprune.bench.status import status_markdown, sweep_status
    from fewprune.bench.sweep import job_families, sweep_jobs

    run_sweep(sweep(["l1", "nonsense+kd"]), progress=False, log=lambda *_: None)
    finished = sweep(["l1", "nonsense+kd"])
    assert status_markdown(finished, sweep_status(finished)).endswith(  # no time left to estimate
        "1 of 2 jobs done; nothing left to run; 1 failed (--retry-failed runs them again).\n")
    measured = {r["cell"]["method"]: r for r in read_results(sweep(["l1"]).results) if r["kind"] == "cell"}
    # a sweep beside this one measured l1+bn under the same protocol: copied when this one runs, not run again
    beside = sweep(["l1+bn"], name="beside")
    run_sweep(beside, progress=False, log=lambda *_: None)
    config = sweep(["l1", "nonsense+kd", "l1+bn", "random", "l2"], targets=[{"macs": 0.4}])
    random_family = next(f for f in job_families(sweep_jobs(config)) if f[0].method == "random")
    try_claim(config.results, family_id([j.key for j in random_family]))  # this live process "runs" it
    lines = {line.what: line for line in sweep_status(config)}
    counts = {m: (x.done, x.failed, x.reusable, x.running, x.to_run) for m, x in lines.items()}
    assert counts == {"l1": (1, 0, 0, 0, 0), "nonsense+kd": (0, 1, 0, 0, 0), "l1+bn": (0, 0, 1, 0, 0),
                      "random": (0, 0, 0, 1, 0), "l2": (0, 0, 0, 0, 1)}
    # l1 and l1+bn were measured at this sample count: a method not measured is estimated by their mean
    expected = (measured["l1"]["wall_seconds"] + read_results(beside.results)[-1]["wall_seconds"]) / 2
    assert lines["l2"].left_seconds == pytest.approx(expected)
    assert lines["l2"].estimated_from == "other methods at 20 samples"
    text = status_markdown(config, list(lines.values()))
    assert "1 of 5 jobs done" in text and "| l2 | 20 | 0 | 0 | 0 | 0 | 1 | 1 min (≈ other methods at 20 samples) |" in text
    assert "With the 1 process running it now: about 1 min of wall time at best." in text  # this one, claiming


def test_the_wall_time_left_shares_the_jobs_out_but_never_below_the_longest_one():
    from fewprune.bench.status import StatusLine, wall_seconds_left

    lines = [StatusLine("m", "a", 10, to_run=3, seconds_each=100.0, left=3.0),
             StatusLine("m", "b", 10, running=1, seconds_each=500.0, left=0.5),  # a checkpoint: half of it left
             StatusLine("m", "c", 10, to_run=2),  # nothing to estimate it from: not counted
             StatusLine("m", "d", 10, done=4, seconds_each=9000.0)]  # done: nothing left
    assert [wall_seconds_left(lines, n) for n in (1, 2, 4)] == [550.0, 275.0, 250.0]


def test_status_counts_only_the_part_a_checkpointed_training_job_has_left(sweep):
    from fewprune.bench.status import sweep_status
    from fewprune.bench.sweep import sweep_jobs, training_dir
    from fewprune.checkpoints import job_checkpoint, save_checkpoint

    first = sweep(["l1"], name="first", ceiling={"epochs": 3})
    run_sweep(first, progress=False, log=lambda *_: None)  # measures a 3-epoch ceiling: the estimate's base
    config = sweep(["l1"], ceiling={"epochs": 3}, targets=[{"macs": 0.4}, {"macs": 0.5}])
    waiting = next(j for j in sweep_jobs(config) if j.key.startswith("ceiling:") and j.target == {"macs": 0.5})
    save_checkpoint({"run": "x", "progress": [2, 3]}, job_checkpoint(training_dir(config), waiting.key))
    line = next(x for x in sweep_status(config) if x.what == "ceiling")
    assert (line.reusable, line.to_run, line.resumes) == (1, 1, "2/3")  # the 0.4 one was measured beside
    assert line.left == pytest.approx(1 / 3) and line.left_seconds == pytest.approx(line.seconds_each / 3)


def test_status_shows_a_checkpoints_progress_even_with_no_estimate(sweep):
    from fewprune.bench.status import status_markdown, sweep_status
    from fewprune.bench.sweep import sweep_jobs, training_dir
    from fewprune.checkpoints import job_checkpoint, save_checkpoint

    config = sweep(["l1"], ceiling={"epochs": 3})  # no ceiling measured anywhere: nothing to estimate from
    job = next(j for j in sweep_jobs(config) if j.key.startswith("ceiling:"))
    save_checkpoint({"run": "x", "progress": [1, 3]}, job_checkpoint(training_dir(config), job.key))
    text = status_markdown(config, sweep_status(config))
    assert "no ceiling job measured yet; checkpoints at 1/3 steps" in text


def test_a_jobs_time_is_estimated_from_the_nearest_kind_measured():
    from fewprune.bench.status import estimate

    measured = {("m", "a", 10): [10.0, 20.0], ("m", "a", 500): [100.0], ("m", "b", 50): [40.0],
                ("m", "l1+mir", 10): [60.0], ("m", "ceiling", None): [30.0], ("m", "asca-scratch", None): [50.0]}
    assert estimate(measured, "m", "a", 10) == (15.0, "measured")
    assert estimate(measured, "m", "a", 50) == (15.0, "a at 10 samples")  # the nearer count, the smaller on a tie
    assert estimate(measured, "m", "asca+mir", 50) == (60.0, "l1+mir at 10 samples")  # the same recovery
    assert estimate(measured, "m", "l1+cutmix", 10) == (60.0, "l1+mir at 10 samples")  # the same criterion
    measured |= {("m", "l1", 10): [5.0], ("m", "asca+kd", 10): [300.0], ("m", "l1+kd", 10): [90.0]}
    assert estimate(measured, "m", "l1+fskd+mir", 10) == (60.0, "l1+mir at 10 samples")  # most parts in common
    assert estimate(measured, "m", "l1+fskd+kd", 10) == (90.0, "l1+kd at 10 samples")  # then the same criterion
    assert estimate(measured, "m", "l1+cd", 10) == (5.0, "l1 at 10 samples")  # then the fewest other parts
    assert estimate(measured, "m", "block-residual+kd", 10) == (195.0, "asca+kd, l1+kd at 10 samples")  # alike
    assert estimate(measured, "m", "c", 50) == (40.0, "other methods at 50 samples")
    assert estimate(measured, "m", "ceiling", None, epochs=3) == (90.0, "measured")  # measured per epoch
    assert estimate(measured, "m", "asca-scratch (price=channels)", None, epochs=2) == (100.0, "asca-scratch")
    assert estimate(measured, "m", "asca-scratch (lr=0.1)", None) == (50.0, "asca-scratch")  # a variant: its plain form
    assert estimate(measured, "other", "asca-scratch (lr=0.1)", None) == (None, "")
    assert estimate(measured, "other", "a", 10) == (None, "") and estimate(measured, "m", "c", 20) == (None, "")


@pytest.mark.parametrize("timed", [True, False])
def test_a_figure_has_latency_panels_only_when_the_sweep_timed_its_students(tmp_path, timed):
    import struct

    from fewprune.bench.plots import plot

    config = SweepConfig(name="p", dataset="fashion-mnist", models=["m"], methods=["l1"], samples=[10],
                         targets=[{"macs": 0.5}, {"macs": 0.7}], latency=timed)
    latency = (lambda ms: {"batch64": {"median_ms": ms}}) if timed else (lambda ms: None)
    rows = [{"kind": "teacher", "status": "ok", "model": "m", "accuracy": 0.9, "latency": latency(10.0)}]
    rows += [{"kind": "cell", "status": "ok", "cell": {"model": "m", "target": {"macs": t}, "samples": 10,
                                                     "method": "l1"},
              "accuracy": 0.8, "macs_reduction": t, "latency": latency(10.0 * (1 - t))} for t in (0.5, 0.7)]
    path, = plot(config, rows, tmp_path)
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the PNG header's IHDR
    assert round(width / height, 1) == (round(21 / 4.5, 1) if timed else round(10.5 / 4.5, 1))


def test_a_variant_runs_its_method_with_its_settings_and_its_command_line_reproduces_it(sweep, tmp_path, capsys):
    import shlex

    from fewprune.cli import main

    variants = {name: {"method": "l1+kd", "schedule": {"iterations": 4, "lr": 0.01},
                       "options": {"kd.temperature": temperature, "allocation.max_ratio": 0.8}}
                for name, temperature in (("kd-t1", 1.0), ("kd-t8", 8.0))}
    config = sweep(["kd-t1", "kd-t8"], variants=variants)
    cells = config.cells()
    assert [c.recipe.recovery_options["kd"]["temperature"] for c in cells] == [1.0, 8.0]
    assert cells[0].recipe.recovery_options["kd"]["schedule"].iterations == 4
    assert cells[0].recipe.label == "kd-t1"  # what its messages call it
    assert len({c.key for c in cells}) == 2
    run_sweep(config, progress=False, log=lambda *_: None)
    rows = {r["cell"]["method"]: r for r in read_results(config.results) if r["kind"] == "cell"}
    assert all(r["status"] == "ok" for r in rows.values()) and rows["kd-t1"]["cell"]["variant"]["method"] == "l1+kd"
    command = rows["kd-t8"]["command"]
    assert "--method l1+kd --iterations 4 --lr 0.01 --option allocation.max_ratio=0.8 --option kd.temperature=8.0" \
        in command
    out = tmp_path / "again"
    assert main(shlex.split(command.replace("--out OUT", f"--out {out}"))[1:]) == 0  # the same job, by hand
    again = json.loads((out / "report.json").read_text())
    assert again["evaluation"]["student"]["accuracy"] == rows["kd-t8"]["accuracy"]
    assert again["macs_reduction"] == rows["kd-t8"]["macs_reduction"]
    assert "- `kd-t1`: `l1+kd --iterations 4 --lr 0.01 --option allocation.max_ratio=0.8 --option kd.temperature=1.0`" \
        in open(config.report).read()


@pytest.mark.parametrize("variants, methods, error", [
    ({"l1": {"method": "l1+kd"}}, ["l1"], "variant 'l1' is already the name of a method"),
    ({"v": {"method": "l1+kd", "options": {"kd.temprature": 2}}}, ["v"], "variant 'v': .*did you mean 'temperature'"),
    ({"v": {"method": "l1+kd", "schedule": {"momentum": 0.5}}}, ["v"], "a schedule sets iterations, lr"),
    ({"v": {"recipe": "l1+kd"}}, ["v"], "variant 'v' is \\{method: NAME"),
    ({"v": {"method": "l1+kd", "schedule": {"iterations": 0}}}, ["v"], "variant 'v': Schedule: iterations must be"),
    ({"v": {"method": "nonsense+kd"}}, ["v"], "variant 'v': method 'nonsense\\+kd' is not registered"),
    ({"v": {"method": "l1+kd"}}, ["l1"], "variants \\['v'\\] are not among the sweep's methods"),
])
def test_variant_errors_are_named_when_the_config_is_read(sweep, variants, methods, error):
    with pytest.raises(ValueError, match=error):
        sweep(methods, variants=variants)


def test_a_sweep_reads_an_image_folder_as_its_zoo_teacher_takes_its_input(tiny_fmnist, monkeypatch, tmp_path):
    """PNGs exported from (tiny) Fashion-MNIST: the teacher and an L1 student (pruned by weights alone, whatever
    the samples) score on the folder exactly as on the IDX files."""
    from PIL import Image

    from fewprune import data

    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    for split in ("train", "test"):
        dataset = data.load("fashion-mnist", split)
        for i in range(len(dataset)):
            folder = tmp_path / "pngs" / split / str(int(dataset.targets[i]))  # class folders by index
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(dataset.images[i, 0].numpy()).save(folder / f"{i:04d}.png")
    scores = {}
    for name, dataset in (("folder", f"imagefolder:{tmp_path / 'pngs'}"), ("idx", "fashion-mnist")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, "dataset": dataset, "models": ["zoo:resnet20-fmnist"],
                                        "methods": ["l1"], "samples": [10], "targets": [{"macs": 0.3}],
                                        "latency": False}))
        config = SweepConfig.read(path)
        run_sweep(config, progress=False, log=lambda *_: None)
        rows = read_results(config.results)
        assert all(r["status"] == "ok" for r in rows)
        scores[name] = sorted((r["kind"], r["accuracy"], r["test_samples"]) for r in rows)
    assert scores["folder"] == scores["idx"]


def test_figure_names_tell_same_named_model_files_apart_and_keep_the_usual_names_otherwise():
    from fewprune.bench.plots import figure_name

    models = ["zoo:resnet56-fmnist", "/work/a/nets/net.py:make", "/work/b/nets/net.py:make", "/work/c/small.py:build"]
    names = [figure_name(m, models) for m in models]
    assert names == ["zoo-resnet56-fmnist", "a-nets-net.py-make", "b-nets-net.py-make", "small.py-build"]
    assert figure_name("/work/a/nets/net.py:make", models[1:2]) == "net.py-make"  # alone: its file name


def test_the_csv_table_has_one_line_per_job_with_the_reports_figures(sweep, tmp_path, capsys):
    import csv

    from fewprune.bench.report import speedup
    from fewprune.cli import main

    config = sweep(["l1", "nonsense+kd"], latency=True, ceiling={"epochs": 1}, targets=[{"macs": 0.4}])
    run_sweep(config, progress=False, log=lambda *_: None)
    rows = read_results(config.results)
    teacher = next(r for r in rows if r["kind"] == "teacher")
    assert main(["bench", str(config.source), "--csv", str(tmp_path / "table.csv")]) == 0
    assert "table.csv: 3 jobs of tiny" in capsys.readouterr().out
    lines = {line["method"]: line for line in csv.DictReader(open(tmp_path / "table.csv"))}
    assert set(lines) == {"l1", "nonsense+kd", "ceiling (l1)"}
    cell = next(r for r in rows if r["kind"] == "cell" and r["status"] == "ok")
    line = lines["l1"]
    assert (line["kind"], line["samples"], line["target"], line["seed"], line["status"]) == ("cell", "20", "macs=0.4",
                                                                                           "0", "ok")
    assert float(line["accuracy"]) == cell["accuracy"] and float(line["teacher_accuracy"]) == teacher["accuracy"]
    assert float(line["measured_speedup"]) == pytest.approx(speedup(cell, teacher)) and line["speedup_timing"] == "as run"
    assert float(line["mac_speedup"]) == pytest.approx(1 / (1 - cell["macs_reduction"]))
    assert float(line["compress_seconds"]) == cell["compress_seconds"] and line["command"] == cell["command"]
    failed = lines["nonsense+kd"]
    assert failed["status"] == "error" and "nonsense" in failed["error"] and failed["accuracy"] == ""
    ceiling = lines["ceiling (l1)"]
    trained = next(r for r in rows if r["kind"] == "ceiling")
    assert ceiling["kind"] == "ceiling" and ceiling["seed"] == ""
    assert float(ceiling["train_seconds"]) == trained["train_seconds"]
    assert 0 < float(ceiling["params_reduction"]) < 1  # from its parameter count and the teacher's
    # the sweep's own files are never the table, and --csv runs nothing else
    before = open(config.results).read()
    with pytest.raises(SystemExit, match="would overwrite the sweep's own"):
        main(["bench", str(config.source), "--csv", str(config.results)])
    with pytest.raises(SystemExit, match="--csv writes the table"):
        main(["bench", str(config.source), "--csv", str(tmp_path / "t.csv"), "--status"])
    assert open(config.results).read() == before
