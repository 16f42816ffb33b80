import json
import os
import shlex
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

import fewprune as fp
from fewprune import plugins
from fewprune.bench import SweepConfig, read_results, run_sweep
from fewprune.cli import main
from fewprune.models import build

PLUGIN = '''
from fewprune.criteria import reduce_slices, register_criterion


@register_criterion("{name}")
def read_strength(model, space, batch):
    """How strongly each channel is read: mean L1 of the weights that consume it."""
    return {{g.id: reduce_slices(model, g, lambda v: v.abs().sum(), roles=("in",)) for g in space.prunable}}
'''


def write_plugin(folder, name):
    path = folder / f"{name}.py"
    path.write_text(PLUGIN.format(name=name))
    return path


def criteria_listed(capsys, argv) -> list[str]:
    assert main(argv + ["methods", "--json"]) == 0
    return [c["name"] for c in json.loads(capsys.readouterr().out)["criteria"]]


def test_a_plugin_file_registers_its_parts_once_for_the_cli(tmp_path, capsys):
    path = write_plugin(tmp_path, "plugin-read-strength")
    assert "plugin-read-strength" in criteria_listed(capsys, ["--plugin", str(path)])
    assert plugins.load(str(path)) is plugins.load(str(path))  # imported once: no second registration
    assert main(["--plugin", str(path), "methods", "--json"]) == 0  # nor from the CLI again


def test_plugins_named_by_the_environment_are_imported(tmp_path, capsys, monkeypatch):
    first, second = (write_plugin(tmp_path, f"plugin-from-environment-{i}") for i in (1, 2))
    monkeypatch.setenv(plugins.ENVIRONMENT, os.pathsep.join([str(first), "", str(second)]))
    listed = criteria_listed(capsys, [])
    assert "plugin-from-environment-1" in listed and "plugin-from-environment-2" in listed


@pytest.mark.parametrize("spec, message", [("missing_plugin.py", "no such file"),
                                           ("fewprune_no_such_module", "No module named")])
def test_a_plugin_that_cannot_be_found_is_a_clear_error(tmp_path, capsys, spec, message):
    assert main(["--plugin", spec, "methods"]) == 2
    err = capsys.readouterr().err
    assert f"plugin {spec}" in err and message in err


def test_a_plugin_that_fails_is_named_with_its_error(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no GPU here')\n")
    assert main(["--plugin", str(broken), "methods"]) == 2
    assert "broken.py failed while importing: RuntimeError: no GPU here" in capsys.readouterr().err


def test_a_sweep_config_imports_its_plugins_relative_to_itself(tiny_fmnist, monkeypatch, tmp_path):
    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    folder = tmp_path / "sweeps"
    folder.mkdir()
    write_plugin(folder, "plugin-in-sweep")
    config = {"name": "mine", "dataset": "fashion-mnist", "models": ["resnet20"], "methods": ["plugin-in-sweep+bn"],
              "samples": [10], "targets": [{"macs": 0.4}], "seeds": [0], "latency": False, "eval_limit": 20,
              "plugins": ["plugin-in-sweep.py"]}
    (folder / "mine.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # the path is read from the config's folder, not the working one
    sweep = SweepConfig.read(folder / "mine.yaml")
    run_sweep(sweep, progress=False, log=lambda *_: None)
    cell = next(r for r in read_results(sweep.results) if r.get("kind") == "cell")
    assert cell["status"] == "ok" and abs(cell["macs_reduction"] - 0.4) <= 0.01
    # the row's command imports the plugin first, so it runs as it stands; the plugins are not part of the key
    plugin = folder / "plugin-in-sweep.py"
    assert cell["command"].startswith(f"fewprune --plugin {plugin} prune --model resnet20 ")
    job = sweep.cells()[0]
    assert job.key == cell["key"] == replace(job, plugins=()).key
    command = shlex.split(cell["command"].replace("--out OUT", f"--out {tmp_path / 'again'}"))
    assert main(command[1:]) == 0
    report = json.loads((tmp_path / "again" / "report.json").read_text())
    assert report["macs_reduction"] == pytest.approx(cell["macs_reduction"])


EXAMPLE = Path(__file__).parents[1] / "examples" / "compare"


def test_the_readmes_plugin_example_runs_as_the_readme_says(capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("```python\n# read_strength.py\n", 1)[1].split("```", 1)[0]
    path = EXAMPLE / "read_strength.py"  # the README's code, as docs/compare-methods.md uses it

    def code(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if line.strip())

    assert code(example) in code(path.read_text())
    assert "read-strength" in criteria_listed(capsys, ["--plugin", str(path)])
    teacher = build("resnet20", num_classes=10, in_channels=1, image_size=28).eval()
    images = torch.randn(8, 1, 28, 28)
    result = fp.compress(teacher, images, method="read-strength+bn", target=fp.Target(macs=0.4), progress=False)
    assert abs(result.report["macs_reduction"] - 0.4) <= 0.01 and result.report["recipe"]["criterion"] == "read-strength"


def test_a_sweep_config_reads_its_model_file_and_image_folder_from_its_own_folder(tmp_path, monkeypatch):
    from fewprune.files import absolute_spec
    from user_files import write_photos_and_net

    folder = tmp_path / "sweeps"
    write_photos_and_net(folder)
    config = {"name": "mine", "dataset": "imagefolder:photos", "models": ["net.py:make", "resnet20"],
              "methods": ["l1+bn"], "samples": [4], "targets": [{"channels": 0.25}], "seeds": [0], "latency": False}
    (folder / "mine.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # neither path is here: both are read from the config's folder
    sweep = SweepConfig.read(folder / "mine.yaml")
    assert sweep.models == [f"{folder / 'net.py'}:make", "resnet20"]  # a registered name stays as it is
    assert sweep.dataset == f"imagefolder:{folder / 'photos'}"
    assert absolute_spec("zoo:resnet56-fmnist", folder) == "zoo:resnet56-fmnist"
    assert absolute_spec("fashion-mnist", folder) == "fashion-mnist"
    run_sweep(sweep, progress=False, log=lambda *_: None, models=["net.py:make"])  # named as the config names it
    cells = [r for r in read_results(sweep.results) if r.get("kind") == "cell"]
    assert [(c["cell"]["model"], c["status"]) for c in cells] == [(sweep.models[0], "ok")]
    # the folder has no test split: every job is judged on one fixed fifth of it, and draws its samples from the rest
    teacher = next(r for r in read_results(sweep.results) if r.get("kind") == "teacher")
    assert cells[0]["test_samples"] == teacher["test_samples"] == 2  # a fifth of 12 images
    assert "held-out part (the folder has no test/ split" in Path(sweep.report).read_text()


def test_the_compare_example_sweep_reads_with_its_plugin_variant_and_comparisons():
    """docs/compare-methods.md runs examples/compare/sweep.yaml: it must stay a valid sweep."""
    config = SweepConfig.read(EXAMPLE / "sweep.yaml")
    cells = config.cells()
    assert len(cells) == 9 and {c.method for c in cells} == {"l1+lsq", "read-strength+lsq", "l1+lsq-1view"}
    variant = next(c for c in cells if c.method == "l1+lsq-1view")
    assert variant.recipe.recovery_options["lsq"]["views"] == 1 and "--option lsq.views=1" in variant.command()
    assert all(c.command().startswith(f"fewprune --plugin {EXAMPLE / 'read_strength.py'} prune ") for c in cells)
    assert [entry["methods"] for entry in config.compare] == [["read-strength+lsq", "l1+lsq"],
                                                                ["l1+lsq", "l1+lsq-1view"]]
