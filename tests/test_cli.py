import json

import pytest
import torch
from safetensors.torch import save_file

import fewprune as fp
from fewprune.cli import main
from fewprune.models import build


@pytest.fixture
def env(tiny_fmnist, monkeypatch, tmp_path):
    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    weights = tmp_path / "teacher.safetensors"
    save_file(build("resnet20", num_classes=10, in_channels=1).state_dict(), str(weights))
    return tmp_path, weights


def test_prune_writes_a_reloadable_result_and_refuses_to_overwrite(env, capsys):
    tmp, weights = env
    out = tmp / "run"
    argv = ["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "20", "--method", "l1+bn",
            "--macs", "0.5", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "student" in printed and "latency batch 64" in printed
    report = json.loads((out / "report.json").read_text())
    assert abs(report["macs_reduction"] - 0.5) <= 0.01
    assert report["evaluation"]["student"]["samples"] == 40
    assert report["command"].startswith("fewprune prune")
    # per class, largest drop first, as the report's evaluation measured them
    evaluation = report["evaluation"]
    assert evaluation["classes"] == list(fp.data.load("fashion-mnist", "test").info.classes)
    table = (out / "report.md").read_text().split("Per class (test accuracy, %), largest drop first:")[1]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:11]
    changes = [float(row[3].rstrip(" |")) for row in rows]
    assert len(rows) == 10 and changes == sorted(changes)
    name, teacher_acc, student_acc = rows[0][0][2:], float(rows[0][1]), float(rows[0][2])
    index = evaluation["classes"].index(name)
    assert teacher_acc == round(100 * evaluation["teacher"]["per_class"][index], 2)
    assert student_acc == round(100 * evaluation["student"]["per_class"][index], 2)
    few = json.loads((out / "few_shot.json").read_text())
    assert len(few["indices"]) == 20 and few["dataset"] == "fashion-mnist"
    student = fp.load(out, architecture=build("resnet20", num_classes=10, in_channels=1))
    assert fp.metrics.macs(student, torch.zeros(1, 1, 28, 28)) == report["student"]["macs"]

    before = (out / "student.safetensors").read_bytes()
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "student.safetensors").read_bytes() == before
    assert main(argv + ["--force", "--seed", "1"]) == 0


def test_prune_onnx_exports_the_student_and_times_both_models_under_onnxruntime(env, capsys):
    tmp, weights = env
    out = tmp / "run"
    assert main(["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "20", "--method", "l1",
                 "--macs", "0.5", "--onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime batch 64" in printed and "(onnxruntime " in printed
    evaluation = json.loads((out / "report.json").read_text())["evaluation"]
    for who in ("teacher", "student"):
        timed = evaluation[who]["onnxruntime"]
        assert set(timed) == {"batch1", "batch64"} and all(t["median_ms"] > 0 for t in timed.values())
        assert timed["batch64"]["batch_size"] == 64 and timed["batch64"]["threads"] == torch.get_num_threads()
    assert (out / "student.onnx").is_file() and not list(out.glob("teacher*"))  # the teacher's copy was temporary


def test_prune_on_a_folder_of_unlabelled_images_judges_the_student_against_the_teacher_on_the_rest(
        tmp_path, capsys, untimed):
    import numpy as np
    from PIL import Image


    images = tmp_path / "photos"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images / f"{i:02d}.png")
    (images / "notes.txt").write_text("not an image")
    model_file = tmp_path / "net.py"
    model_file.write_text(
        "import torch.nn as nn\n"
        "def make(num_classes=7, in_channels=3):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 32, 3, stride=4), nn.BatchNorm2d(32), nn.ReLU(),\n"
        "                         nn.Conv2d(32, 32, 3, stride=4), nn.BatchNorm2d(32), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))\n")
    out = tmp_path / "run"
    assert main(["prune", "--model", f"{model_file}:make", "--data", f"imagefolder:{images}", "--samples", "4",
                 "--method", "taylor+bn", "--macs", "0.4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no labels" in printed and "top-1 agreement with the teacher" in printed
    report = json.loads((out / "report.json").read_text())
    evaluation = report["evaluation"]
    assert evaluation["split"].startswith("held-out") and evaluation["teacher"]["agreement"] == 1.0
    assert evaluation["student"]["samples"] == 6 and 0 <= evaluation["student"]["agreement"] <= 1
    assert report["samples"]["labelled"] is False and "student top-1 agreement with the teacher" in (
        out / "report.md").read_text()
    few = json.loads((out / "few_shot.json").read_text())
    assert len(few["indices"]) == 4 and few["labelled"] is False
    # the architecture's own class count: images without labels say nothing of it
    student = fp.load(out, architecture=lambda: build(f"{model_file}:make", num_classes=None))
    assert student(torch.zeros(1, 3, 224, 224)).shape == (1, 7)
    assert main(["eval", "--model", f"{model_file}:make", "--data", f"imagefolder:{images}"]) == 2
    assert "has no labels" in capsys.readouterr().err


def test_compare_puts_saved_results_side_by_side_as_they_recorded_them(env, capsys, untimed):
    tmp, weights = env
    common = ["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "10", "--method", "l1+bn"]
    assert main([*common, "--macs", "0.5", "--out", str(tmp / "half")]) == 0
    assert main([*common, "--macs", "0.7", "--eval-limit", "20", "--out", str(tmp / "most")]) == 0
    capsys.readouterr()
    out = tmp / "compare.md"
    assert main(["compare", str(tmp / "half"), str(tmp / "most"), "--out", str(out)]) == 0
    table = out.read_text()
    for name in ("half", "most"):
        report = json.loads((tmp / name / "report.json").read_text())
        student, teacher = report["evaluation"]["student"], report["evaluation"]["teacher"]
        row = next(line for line in table.splitlines() if line.startswith(f"| {tmp / name} |"))
        assert f"| {100 * student['accuracy']:.2f} |" in row and f"| {100 * teacher['accuracy']:.2f} |" in row
        assert f"| {100 * report['macs_reduction']:.1f}% |" in row and f", {student['samples']} images)" in row
    assert "evaluated on different images" in table  # 40 test images against 20
    assert "evaluated on different images" in capsys.readouterr().out
    assert main(["compare", str(tmp)]) == 2 and "is not a fewprune result" in capsys.readouterr().err
    # a result whose teacher was not evaluated (train --asca trains from scratch): its teacher columns stay empty
    report = json.loads((tmp / "half" / "report.json").read_text())
    del report["evaluation"]["teacher"]
    (tmp / "half" / "report.json").write_text(json.dumps(report))
    assert main(["compare", str(tmp / "half"), "--out", str(out)]) == 0
    assert "| – | " in out.read_text() and "2.00× / –" in out.read_text()


def test_an_output_below_a_file_is_refused_before_any_work(env, capsys, monkeypatch):
    from fewprune import api

    tmp, weights = env
    (tmp / "notes.txt").write_text("a file")
    monkeypatch.setattr(api, "compress", lambda *a, **k: pytest.fail("work was spent before the output was checked"))
    # --force replaces a folder fewprune wrote, not one of the user's
    (tmp / "mine").mkdir()
    (tmp / "mine" / "data.csv").write_text("1,2")
    assert main(["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "10", "--macs", "0.5",
                 "--out", str(tmp / "mine"), "--force"]) == 2
    assert "holds files fewprune did not write" in capsys.readouterr().err
    assert (tmp / "mine" / "data.csv").read_text() == "1,2"
    assert main(["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "10", "--macs", "0.5",
                 "--out", str(tmp / "notes.txt" / "run")]) == 2
    assert "notes.txt is a file, not a folder" in capsys.readouterr().err
    assert main(["eval", "--model", "resnet20", "--weights", str(weights), "--json",
                 str(tmp / "notes.txt" / "eval.json")]) == 2
    assert "--json" in capsys.readouterr().err and (tmp / "notes.txt").read_text() == "a file"


def test_a_result_made_with_relative_paths_evaluates_from_any_folder(tmp_path, tiny_fmnist, monkeypatch, capsys,
                                                                      untimed):
    """A result records its model file and dataset as absolute paths (and the --data-root it was read from), so
    `eval --model RESULT` finds them, and leaves its samples out, wherever it is run."""
    from fewprune.files import absolute_spec
    from user_files import write_photos_and_net

    work = tmp_path / "work"
    write_photos_and_net(work)
    monkeypatch.chdir(work)
    assert main(["prune", "--model", "net.py:make", "--data", "imagefolder:photos", "--image-size", "16",
                 "--samples", "4", "--method", "l1", "--channels", "0.25", "--out", "run"]) == 0
    report = json.loads((work / "run" / "report.json").read_text())
    assert report["teacher_model"]["spec"] == f"{work / 'net.py'}:make"
    assert report["evaluation"]["dataset"] == f"imagefolder:{work / 'photos'}" == absolute_spec("imagefolder:photos/")
    assert json.loads((work / "run" / "few_shot.json").read_text())["dataset"] == f"imagefolder:{work / 'photos'}"
    assert report["working_directory"] == str(work) and "--data imagefolder:photos" in report["command"]
    judged = report["evaluation"]["student"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    for data in ([], ["--data", "imagefolder:../work/photos"]):  # the recorded dataset, or the same one named anew
        assert main(["eval", "--model", "../work/run", *data, "--quiet", "--json", "eval.json"]) == 0
        evaluated = json.loads((elsewhere / "eval.json").read_text())
        assert (evaluated["split"], evaluated["samples"], evaluated["accuracy"]) == ("held-out", 8, judged["accuracy"])
        assert judged["samples"] == 8 and "the 4 images" in capsys.readouterr().err
    # in Python too, the result names its architecture: fp.load needs no architecture for it
    x = torch.randn(2, 3, 16, 16)
    given = fp.load("../work/run", architecture=lambda: build(f"{work / 'net.py'}:make", num_classes=2))
    assert torch.equal(fp.load("../work/run")(x), given(x))
    (work / "run" / "report.json").unlink()
    with pytest.raises(ValueError, match="pass the architecture"):
        fp.load("../work/run")
    # a built-in dataset read from --data-root: the result reads it from there again unless told otherwise
    monkeypatch.delenv("FEWPRUNE_FASHION_MNIST", raising=False)
    monkeypatch.chdir(tiny_fmnist)
    assert main(["prune", "--model", "resnet20", "--data", "fashion-mnist", "--data-root", ".", "--samples", "10",
                 "--method", "l1", "--macs", "0.3", "--out", str(tmp_path / "idx")]) == 0
    assert json.loads((tmp_path / "idx" / "report.json").read_text())["evaluation"]["data_root"] == str(tiny_fmnist)
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["eval", "--model", str(tmp_path / "idx"), "--quiet", "--json", "idx.json"]) == 0
    assert json.loads((elsewhere / "idx.json").read_text())["samples"] == 40  # the tiny set's test split
    assert f"reading fashion-mnist from {tiny_fmnist}" in capsys.readouterr().err


def test_image_size_sizes_an_image_folder_for_the_model_and_is_refused_for_other_data(tmp_path, capsys, untimed):
    import numpy as np
    from PIL import Image

    images = tmp_path / "photos"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images / f"{i:02d}.png")
    out = tmp_path / "run"
    assert main(["prune", "--model", "resnet20", "--data", f"imagefolder:{images}", "--image-size", "32",
                 "--samples", "4", "--method", "l1", "--macs", "0.5", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["teacher"]["macs"] == fp.metrics.macs(build("resnet20", in_channels=3, image_size=32),
                                                        torch.zeros(1, 3, 32, 32))
    assert main(["eval", "--model", "resnet20", "--data", "fashion-mnist", "--image-size", "32"]) == 2
    assert "--image-size sets how the images of an imagefolder: dataset are read" in capsys.readouterr().err


def test_a_zoo_teacher_and_its_result_read_an_image_folder_as_their_own_dataset(env, capsys, untimed):
    """PNGs exported from (tiny) Fashion-MNIST, class folders by name: the teacher's convention (1 channel, 28×28,
    its normalisation, its class order) is taken from the zoo, then from the result, and scores as the IDX files."""
    from PIL import Image

    tmp, _ = env
    for split in ("train", "test"):
        dataset = fp.data.load("fashion-mnist", split)
        for i in range(len(dataset)):
            folder = tmp / "pngs" / split / dataset.info.classes[int(dataset.targets[i])].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(dataset.images[i, 0].numpy()).save(folder / f"{i:04d}.png")
    # l1 without recovery prunes by weights alone, so both runs give one student whatever samples they draw
    accuracy = {}
    for name, data_spec in (("folder", f"imagefolder:{tmp / 'pngs'}"), ("idx", "fashion-mnist")):
        assert main(["prune", "--model", "zoo:resnet20-fmnist", "--data", data_spec, "--samples", "10", "--method",
                     "l1", "--macs", "0.3", "--out", str(tmp / name)]) == 0
        report = json.loads((tmp / name / "report.json").read_text())
        accuracy[name] = {who: report["evaluation"][who]["accuracy"] for who in ("teacher", "student")}
    assert accuracy["folder"] == accuracy["idx"]
    printed = capsys.readouterr()
    assert "note: reading" in printed.err
    # every latency reads 1 ms here: a speed-up of 1.00× for 1.43× fewer MACs points to the flags that help
    assert ("the measured speed-up is 0.70 of the MAC reduction here: --round-to auto --min-width auto "
            "--blocks auto usually bring") in printed.out
    recorded = json.loads((tmp / "folder" / "report.json").read_text())["teacher_model"]["input"]
    assert recorded == {**fp.models.zoo.input_convention("resnet20-fmnist"), "mean": [0.286], "std": [0.353],
                        "interpolation": "bilinear",
                        "classes": list(fp.models.zoo.manifest("resnet20-fmnist")["classes"])}
    assert main(["eval", "--model", str(tmp / "folder"), "--data", f"imagefolder:{tmp / 'pngs'}", "--split", "test",
                 "--quiet"]) == 0
    assert f"{100 * accuracy['idx']['student']:.2f}%" in capsys.readouterr().out
    # a folder with no test/ split is judged on the images not drawn, and the tables say so
    assert main(["prune", "--model", "zoo:resnet20-fmnist", "--data", f"imagefolder:{tmp / 'pngs' / 'train'}",
                 "--samples", "10", "--method", "l1", "--macs", "0.3", "--out", str(tmp / "held")]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    assert "- student held-out accuracy" in (tmp / "held" / "report.md").read_text()
    # eval of that result on the same folder leaves its samples out too, and gets prune's figure
    assert main(["eval", "--model", str(tmp / "held"), "--data", f"imagefolder:{tmp / 'pngs' / 'train'}", "--quiet",
                 "--json", str(tmp / "held.json")]) == 0
    judged = json.loads((tmp / "held" / "report.json").read_text())["evaluation"]["student"]
    evaluated = json.loads((tmp / "held.json").read_text())
    assert (evaluated["split"], evaluated["samples"], evaluated["accuracy"]) == ("held-out", judged["samples"],
                                                                                judged["accuracy"])
    assert "the 10 images" in capsys.readouterr().err
    # the flags still win: read as RGB, the 1-channel teacher is refused with the reason
    assert main(["eval", "--model", "zoo:resnet20-fmnist", "--data", f"imagefolder:{tmp / 'pngs'}",
                 "--image-channels", "3", "--quiet"]) == 2
    assert "zoo:resnet20-fmnist does not run on imagefolder:" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a share of the shorter side is in (0, 1]
        main(["eval", "--model", "zoo:resnet20-fmnist", "--data", f"imagefolder:{tmp / 'pngs'}", "--image-resize", "2"])
    assert "--image-resize: must be imagenet or fit or a number in (0, 1], not 2" in capsys.readouterr().err


def test_a_model_file_reads_images_as_it_declares_else_as_imagenet_models_do_and_says_so(tmp_path, capsys):
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "pngs" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(torch.randint(0, 256, (28, 28), dtype=torch.uint8).numpy()).save(
                tmp_path / "pngs" / label / f"{i}.png")
    source = tmp_path / "grey_net.py"  # a user's model of grey 28×28 images: nothing records how it reads them
    source.write_text("from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Conv2d(1, 8, 3), "
                      "nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))\n")
    assert main(["eval", "--model", f"{source}:build", "--data", f"imagefolder:{tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err
    assert "nowhere does not exist" in err and "note" not in err  # the missing folder alone is named
    data = ["--data", f"imagefolder:{tmp_path / 'pngs'}"]
    assert main(["eval", "--model", f"{source}:build", *data, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "with ImageNet models' settings where no --image-* flag is given" in err
    assert "3 channels, 224×224" in err and "does not run on" in err
    assert main(["eval", "--model", f"{source}:build", *data, "--image-size", "28", "--image-channels", "1",
                 "--quiet"]) == 0
    assert "1 channel, 28×28, mean 0.449" in capsys.readouterr().err  # the flags given, ImageNet's (grey) for the rest
    flags = ["--image-size", "28", "--image-channels", "1", "--image-mean", "0.5", "--image-std", "0.5",
             "--image-resize", "fit", "--image-interpolation", "bilinear"]
    assert main(["eval", "--model", f"{source}:build", *data, *flags, "--quiet"]) == 0
    assert "note: reading" not in capsys.readouterr().err  # every setting given: nothing to say
    # ... or the model's file says how it reads images, for every command and sweep that reads a folder for it
    declared = tmp_path / "declared_net.py"
    declared.write_text(source.read_text() + 'INPUT_CONVENTION = {"image_size": 28, "channels": 1, "mean": 0.5, '
                                              '"std": 0.25, "resize": "fit"}\n')
    assert main(["eval", "--model", f"{declared}:build", *data, "--quiet"]) == 0
    assert f"as {declared}:build takes its input: 1 channel, 28×28, mean 0.5, std 0.25, resize fit" \
        in capsys.readouterr().err
    from fewprune.bench.runner import _load_data

    train, _ = _load_data(f"imagefolder:{tmp_path / 'pngs'}", None, f"{declared}:build")
    assert train[0][0].shape == (1, 28, 28) and train.info.mean == (0.5,)
    # a result saved from Python with its architecture reads, by default, the folder its samples came from
    images = fp.data.load(f"imagefolder:{tmp_path / 'pngs'}", **fp.models.external.file_input_convention(
        f"{declared}:build"))
    result = fp.compress(fp.models.build(f"{declared}:build"), fp.data.few_shot(images, n=4, seed=0), method="l1",
                         target=fp.Target(channels=0.25), progress=False)
    fp.save(result, tmp_path / "saved", architecture=f"{declared}:build")
    assert main(["eval", "--model", str(tmp_path / "saved"), "--quiet"]) == 0
    assert f"reading {tmp_path / 'pngs'} as {tmp_path / 'saved'} takes its input: 1 channel, 28×28, mean 0.5" \
        in capsys.readouterr().err
    for wrong, error in (('{"channels": 2}', "INPUT_CONVENTION: an image folder's images are read with 1 (grey) or 3 "
                                             "(RGB) channels, not 2"),
                         ('{"size": 28}', "INPUT_CONVENTION has unknown settings ['size']; it takes image_size, ")):
        declared.write_text(source.read_text() + f"INPUT_CONVENTION = {wrong}\n")
        assert main(["eval", "--model", f"{declared}:build", *data, "--quiet"]) == 2
        assert f"{declared}: {error}" in capsys.readouterr().err


def test_the_speed_up_hint_names_only_the_flags_not_given_and_only_when_time_lags_the_macs():
    from types import SimpleNamespace

    from fewprune.cli.prune import _speed_up_hint

    def rows(teacher_ms, student_ms):
        return {"teacher": {"macs": 100, "latency": {"batch64": {"median_ms": teacher_ms}}},
                "student": {"macs": 50, "latency": {"batch64": {"median_ms": student_ms}}}}

    plain, aligned = SimpleNamespace(round_to=None, min_width=None), SimpleNamespace(round_to="auto", min_width=16)
    half = fp.Target(macs=0.5)
    assert "0.60 of the MAC reduction here: --round-to auto --min-width auto --blocks auto" in \
        _speed_up_hint(rows(120, 100), plain, half)  # 1.2× for 2× fewer MACs
    assert _speed_up_hint(rows(120, 100), aligned, half).count("--") == 1  # only --blocks auto is left to try
    assert _speed_up_hint(rows(120, 100), aligned, fp.Target(macs=0.5, blocks="auto")) is None  # nothing to add
    assert _speed_up_hint(rows(170, 100), plain, half) is None  # 1.7×: 0.85 of the MAC reduction
    assert _speed_up_hint(rows(120, 100), plain, fp.Target(blocks=2)) is None  # dropping blocks: no widths to align


def test_a_dry_run_shows_the_plan_its_speed_up_and_its_recovery_time_projected_without_saving(env, capsys, monkeypatch):
    from fewprune import metrics
    from fewprune.recovery import mir

    tmp, weights = env
    before = sorted(p.name for p in tmp.iterdir())
    monkeypatch.setattr(metrics, "latency", lambda model, x: {"median_ms": float(metrics.macs(model, x[:1])) / 1e6,
                                                              "p25_ms": 0.0, "p75_ms": 0.0, "threads": 1})
    trained = []
    train_student = mir.train_student
    monkeypatch.setattr(mir, "train_student",  # MiR trains through it: count its steps
                        lambda *a, **k: trained.append(a[3].iterations) or train_student(*a, **k))
    argv = ["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "10", "--method", "l1+mir",
            "--macs", "0.5", "--dry-run"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "plan of l1+mir" in printed and "layer1.0.conv1" in printed and "the structure alone" in printed
    assert "2.0" in printed.split("MAC speed-up / measured speed-up (b64)")[1].split("×")[0]  # MACs halved
    assert "nothing was saved" in printed and sorted(p.name for p in tmp.iterdir()) == before
    # what the recovery would cost: run 8 steps here, projected to its 800 (10 samples: mini-batches of 10)
    assert trained == [8] and "each training step run 8 iterations here" in printed
    assert "mir: 800 steps of 10 images, " in printed and " s each, " in printed and " min" in printed
    assert main([*argv[:-1], "--iterations", "40", "--dry-run"]) == 0
    assert "mir: 40 steps of 10 images" in capsys.readouterr().out and trained[-1] == 8
    assert main([*argv[:8], "l1+lsq", *argv[9:]]) == 0
    assert "lsq: " in capsys.readouterr().out.split("closed form, run in full")[0]  # nothing to cut short
    assert main(argv[:-1]) == 2 and "--out" in capsys.readouterr().err
    # its errors name the method as typed (the preview runs it without its recovery)
    assert main([*argv[:-3], "--blocks", "2", "--dry-run"]) == 2
    assert "method 'l1+mir' prunes channels; a blocks= target" in capsys.readouterr().err


def test_an_architecture_without_weights_is_said_to_have_random_weights(env, capsys):
    tmp, weights = env
    assert main(["eval", "--model", "resnet20", "--limit", "8", "--quiet"]) == 0
    assert "resnet20 has random weights (no --weights given" in capsys.readouterr().err
    assert main(["eval", "--model", "resnet20", "--weights", str(weights), "--eval-limit", "8", "--quiet"]) == 0
    assert "random weights" not in capsys.readouterr().err


def test_a_negative_seed_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["prune", "--model", "resnet20", "--seed", "-1", "--dry-run"])
    assert "argument --seed: must be 0 or more, not -1" in capsys.readouterr().err


def test_missing_dataset_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tmp_path / "empty"))
    code = main(["prune", "--model", "resnet20", "--macs", "0.5", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_eval_writes_json(env, capsys):
    tmp, weights = env
    assert main(["eval", "--model", "resnet20", "--weights", str(weights), "--json", str(tmp / "e.json")]) == 0
    result = json.loads((tmp / "e.json").read_text())
    assert result["samples"] == 40 and result["macs"] == fp.metrics.macs(build("resnet20", in_channels=1),
                                                                          torch.zeros(1, 1, 28, 28))
    assert set(result["latency"]) == {"batch1", "batch64"} and "onnxruntime" not in result
    assert main(["eval", "--model", "resnet20", "--weights", str(weights), "--onnx", "--json", str(tmp / "e.json")]) == 0
    timed = json.loads((tmp / "e.json").read_text())["onnxruntime"]
    assert timed["batch64"]["batch_size"] == 64 and timed["batch1"]["median_ms"] > 0
    assert "onnxruntime batch 64" in capsys.readouterr().out and not list(tmp.glob("*.onnx"))


def test_unknown_method_lists_the_parts(env, capsys):
    tmp, weights = env
    code = main(["prune", "--model", "resnet20", "--method", "l7+kd", "--out", str(tmp / "y")])
    assert code == 2 and "registered" in capsys.readouterr().err
    assert main(["prune", "--model", "resnet20", "--method", "l1+mirr", "--out", str(tmp / "y")]) == 2
    assert "unknown recovery 'mirr'; did you mean 'mir'?; registered:" in capsys.readouterr().err


def test_explain_concept_masks_writes_one_figure_per_block(env, capsys):
    tmp, weights = env
    out = tmp / "masks"
    argv = ["explain", "--concept-masks", "--model", "resnet20", "--weights", str(weights), "--images", "2",
            "--out", str(out)]
    assert main(argv) == 0
    blocks = fp.structure.find_blocks(build("resnet20", num_classes=10, in_channels=1), torch.randn(1, 1, 28, 28))
    names = sorted(p.name for p in out.iterdir() if p.name != ".fewprune-output")
    assert names == sorted([f"concept-masks-{b.replace('.', '_')}.png" for b in blocks]
                           + ["concept-mask-divergence.png"])
    assert all((out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    assert main(argv) == 2 and "--force" in capsys.readouterr().err
    assert not [p for p in tmp.iterdir() if p.name.startswith(".masks")]  # no staging folder left behind


def test_explain_lrp_writes_heatmaps_and_channel_ranking(env):
    tmp, weights = env
    out = tmp / "lrp"
    assert main(["explain", "--lrp", "--layer", "layer3.2.conv2", "--model", "resnet20", "--weights", str(weights),
                 "--images", "3", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".fewprune-output", "lrp-channels-layer3_2_conv2.png",
                                                     "lrp-heatmaps.png"]
    assert main(["explain", "--lrp", "--layer", "nope", "--model", "resnet20", "--weights", str(weights),
                 "--out", str(tmp / "bad")]) == 2
    assert not (tmp / "bad").exists()


def test_explain_draws_colour_images_in_their_colours(tmp_path):
    import numpy as np
    from PIL import Image

    from fewprune.explain import picture

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    folder = fp.data.load(f"imagefolder:{photos}", image_size=32, resize="fit")
    with Image.open(photos / "0.png") as original:
        pixels = np.asarray(original, dtype=np.float32) / 255
    shown, cmap = picture(folder[0], folder.info.mean, folder.info.std)  # un-normalised: the file's own pixels
    assert cmap is None and shown.shape == (32, 32, 3) and np.abs(shown - pixels).max() < 1e-5
    grey, cmap = picture(torch.ones(1, 5, 5))
    assert cmap == "gray" and grey.shape == (5, 5)
    out = tmp_path / "figures"
    assert main(["explain", "--concept-masks", "--lrp", "--model", "resnet20", "--data", f"imagefolder:{photos}",
                 "--image-size", "32", "--images", "2", "--out", str(out)]) == 0
    assert (out / "lrp-heatmaps.png").stat().st_size > 0 and (out / "concept-mask-divergence.png").is_file()


def test_curve_writes_accuracy_per_fraction_and_auc(env, capsys):
    tmp, weights = env
    out = tmp / "curve"
    argv = ["curve", "--model", "resnet20", "--weights", str(weights), "--methods", "l1,random", "--fractions",
            "0:0.4:0.2", "--samples", "10", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "curve.json").read_text())
    assert result["fractions"] == [0.0, 0.2, 0.4]
    for method in ("l1", "random"):
        points = result["curves"][method]["points"]
        assert [p["fraction"] for p in points] == [0.0, 0.2, 0.4]
        assert points[0]["accuracy"] == result["teacher_accuracy"]
        expected = (0.2 * (points[0]["accuracy"] + points[1]["accuracy"]) / 2
                    + 0.2 * (points[1]["accuracy"] + points[2]["accuracy"]) / 2) / 0.4
        assert result["curves"][method]["auc"] == pytest.approx(expected)
        assert result["curves"][method]["common_auc"] == pytest.approx(expected)  # both reached 40%
    assert "| l1 |" in (out / "curve.md").read_text() and (out / "curve.png").stat().st_size > 0
    assert main(argv) == 2 and "--force" in capsys.readouterr().err


def test_a_pruning_result_folder_is_a_model_for_eval(env, capsys):
    tmp, weights = env
    out = tmp / "run"
    assert main(["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "20", "--method", "l1+bn",
                 "--macs", "0.5", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["teacher_model"] == {"spec": "resnet20", "adapt": False, "input": {  # how it read its images
        "image_size": 28, "channels": 1, "mean": [0.286], "std": [0.353], "resize": "fit", "interpolation": "bilinear",
        "classes": list(fp.data.load("fashion-mnist", "test").info.classes)}}
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--json", str(tmp / "eval.json"), "--quiet"]) == 0
    evaluated = json.loads((tmp / "eval.json").read_text())
    assert evaluated["accuracy"] == report["evaluation"]["student"]["accuracy"]
    assert evaluated["macs"] == report["student"]["macs"]
    # pruning a result again is refused before any work, with the reason
    assert main(["prune", "--model", str(out), "--macs", "0.3", "--out", str(tmp / "again")]) == 2
    assert "pruning it again is not supported" in capsys.readouterr().err and not (tmp / "again").exists()
    report.pop("teacher_model")  # a folder that does not name its architecture says how to load it
    (out / "report.json").write_text(json.dumps(report))
    assert main(["eval", "--model", str(out)]) == 2
    assert "fewprune.load(directory, architecture=...)" in capsys.readouterr().err


def test_prune_takes_the_recovery_schedule_and_records_it(env):
    tmp, weights = env
    out = tmp / "run"
    assert main(["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "20", "--method",
                 "l1+fskd+mir", "--macs", "0.5", "--iterations", "3", "--lr", "0.01", "--batch-size", "8",
                 "--decay", "step", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["recovery_schedule"] == {"iterations": 3, "lr": 0.01, "batch_size": 8, "decay": "step"}
    mir = report["recovery"]["mir"]
    assert mir["iterations"] == 3 and mir["schedule"]["lr"] == 0.01 and mir["schedule"]["batch_size"] == 8
    assert mir["schedule"]["decay"] == "step"


def test_prune_sets_part_options_and_records_them(env, capsys):
    tmp, weights = env
    out = tmp / "run"
    assert main(["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "20", "--method", "l1+bn",
                 "--macs", "0.97", "--option", "allocation.max_ratio=0.99", "--option", "bn.batch_size=8",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["options"] == {"allocation.max_ratio": 0.99, "bn.batch_size": 8}
    assert report["recipe"]["recovery_options"]["bn"] == {"batch_size": 8}
    assert report["macs_reduction"] == pytest.approx(0.97, abs=0.01)
    with pytest.raises(SystemExit):
        main(["prune", "--model", "resnet20", "--option", "max_ratio", "--dry-run"])
    assert "write PART.NAME=VALUE" in capsys.readouterr().err


def test_prune_drops_blocks_and_prunes_channels_to_one_target_with_aligned_widths(env):
    tmp, weights = env
    out = tmp / "hybrid"
    assert main(["prune", "--model", "resnet20", "--weights", str(weights), "--samples", "20", "--method", "l1",
                 "--macs", "0.5", "--blocks", "2", "--min-width", "16", "--round-to", "16", "--eval-limit", "40",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == {"macs": 0.5, "blocks": 2} and report["min_width"] == 16
    assert abs(report["macs_reduction"] - 0.5) <= 0.01
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["dropped_blocks"]) == 2
    assert all(plan["sizes"][g] - len(r) >= 16 for g, r in plan["removed"].items() if r)
    student = fp.load(out, architecture=build("resnet20", num_classes=10, in_channels=1))
    assert fp.metrics.macs(student, torch.zeros(1, 1, 28, 28)) == report["student"]["macs"]


def test_bench_rejects_a_malformed_shard(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text("name: s\ndataset: fashion-mnist\nmodels: [resnet20]\nmethods: [l1]\nsamples: [5]\n"
                      "targets: [{macs: 0.5}]\n")
    with pytest.raises(SystemExit, match="--shard wants I/N"):
        main(["bench", str(config), "--shard", "half"])
    assert not (tmp_path / "results").exists()  # nothing ran


def test_bench_names_a_seed_the_sweep_lacks_and_refuses_a_filter_with_report_only(tmp_path, capsys):
    config = tmp_path / "s.yaml"
    config.write_text("name: s\ndataset: fashion-mnist\nmodels: [resnet20]\nmethods: [l1]\nsamples: [5]\n"
                      "targets: [{macs: 0.5}]\nseeds: [0, 1]\n")
    assert main(["bench", str(config), "--seeds", "0,4"]) == 2
    assert "seed 4 is not in the sweep (its seeds: 0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="cover the whole sweep"):
        main(["bench", str(config), "--methods", "l1", "--report-only"])
    with pytest.raises(SystemExit, match="cover the whole sweep"):
        main(["bench", str(config), "--seeds", "0", "--remeasure-latency"])
    assert main(["bench", str(config), "--status", "--seeds", "4"]) == 2
    assert "seed 4 is not in the sweep" in capsys.readouterr().err
    assert main(["bench", str(config), "--methods", "l1+kd"]) == 2
    assert "method l1+kd is not in the sweep (its methods: l1)" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--merge copies finished jobs in and writes the report; it goes alone"):
        main(["bench", str(config), "--merge", str(tmp_path / "other.jsonl"), "--seeds", "0"])
    assert not (tmp_path / "results").exists()  # nothing ran


def test_bench_status_lists_the_jobs_left_and_runs_nothing(tmp_path, capsys):
    config = tmp_path / "s.yaml"
    config.write_text("name: s\ndataset: fashion-mnist\nmodels: [resnet20]\nmethods: [l1, l1+bn]\nsamples: [5, 10]\n"
                      "targets: [{macs: 0.5}]\n")
    assert main(["bench", str(config), "--status"]) == 0
    out = capsys.readouterr().out
    assert "| resnet20 | l1+bn | 10 | 0 | 0 | 0 | 0 | 1 | no job on this model measured yet |" in out
    assert "0 of 4 jobs done" in out and not (tmp_path / "results").exists()  # nothing ran
    # with a filter: only the jobs a run with it would run
    assert main(["bench", str(config), "--status", "--methods", "l1+bn", "--models", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "# s: status of the jobs --models resnet20 --methods l1+bn chooses" in out
    assert "| resnet20 | l1+bn | 5 |" in out and "| resnet20 | l1 |" not in out and "0 of 2 jobs done" in out


def test_methods_lists_every_registered_method_and_part(capsys):
    from fewprune import methods
    from fewprune.recovery import recoveries

    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in rows["methods"]] == methods.names()
    cma = next(m for m in rows["methods"] if m["name"] == "cma")
    assert cma["recipe"] == "cma@de+mir+cmamix" and not cma["reads_labels"] and cma["granularity"] == "channels"
    assert [r["name"] for r in rows["recoveries"]] == recoveries.names()
    assert all(r["description"] for kind in ("criteria", "allocations", "recoveries", "augmentations")
               for r in rows[kind])
    assert {r["name"]: r["granularity"] for r in rows["criteria"]}["practise"] == "blocks"
    assert main(["methods"]) == 0
    assert "cma+mir-blocks" in capsys.readouterr().out


def test_methods_with_a_name_lists_the_options_its_parts_take(capsys):
    assert main(["methods", "cma", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["recipe"]["allocation"] == "de" and set(listed["options"]) == {"criterion", "allocation", "mir"}
    assert listed["options"]["allocation"]["outside"] == "as-needed" and listed["options"]["criterion"]["theta"] == 0.2
    assert listed["options"]["allocation"]["max_ratio"] == 0.9
    assert main(["methods", "l1+kd"]) == 0
    printed = capsys.readouterr().out
    assert "kd.temperature" in printed and "allocation.max_ratio" in printed and "--iterations" in printed


def test_an_unknown_method_points_to_the_list_of_methods(tmp_path, capsys):
    assert main(["prune", "--model", "resnet20", "--samples", "10", "--method", "l1+nonsense", "--macs", "0.5",
                 "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "unknown recovery 'nonsense'" in err and "fewprune methods" in err
    assert not (tmp_path / "out").exists()


def test_zoo_list_written_to_a_pipe_keeps_every_name_whole(capsys, monkeypatch):
    from fewprune import zoo

    monkeypatch.delenv("COLUMNS", raising=False)  # captured output is not a terminal: no 80-column cut
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in zoo.list():
        assert f" {name} " in out and f" {zoo.manifest(name)['architecture']} " in out
    assert " 1×28×28 " in out and " 1×64×64 " in out  # the input each reads (an image folder's too)


def test_zoo_report_lists_every_teacher_against_its_accuracy_target(tmp_path, monkeypatch):
    from fewprune import metrics, zoo
    from fewprune.models.recipes import ACCURACY_TARGETS

    # Timing is not measured here: each round times every teacher at batch 1 and 64, and round r reports
    # by_round[r] ms, so each row must give the median round, 3.00, and the range 1.00–5.00.
    by_round, calls = [1.0, 3.0, 2.0, 5.0, 4.0], iter(range(10**6))
    per_round = 2 * len(zoo.list())
    monkeypatch.setattr(metrics, "latency", lambda model, x, **_: {"median_ms": by_round[next(calls) // per_round]})
    out = tmp_path / "ZOO.md"
    assert main(["zoo", "report", "--out", str(out)]) == 0
    text = out.read_text()
    assert "the median of 5 rounds" in text
    assert "fewprune zoo report --out benchmarks/ZOO.md" in text
    for name in zoo.list():
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert "| 3.00 [1.00–5.00] | 3.00 [1.00–5.00] |" in row  # batch 1, then batch 64
        manifest = zoo.manifest(name)
        if "mean_iou" in manifest:  # a segmentation teacher: pixel accuracy, then its mean IoU
            assert f"(pixels; mean IoU {100 * manifest['mean_iou']:.2f}%)" in row
        target = ACCURACY_TARGETS.get(name)
        if target is None:  # trained with no target set beforehand
            assert row.split(" | ")[2] == "–"
            continue
        verdict = "(met)" if manifest.get("mean_iou", manifest["test_accuracy"]) >= target else "short**"
        assert f"{100 * target:.1f}% " in row and verdict in row


def test_train_asca_saves_a_reloadable_student_leaves_no_checkpoint_and_refuses_to_overwrite(env, capsys):
    tmp, _ = env
    out = tmp / "asca"
    argv = ["train", "resnet20-fmnist", "--asca", "macs=0.5", "--epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    assert "MACs removed; saved to" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert abs(report["macs_reduction"] - 0.5) <= 0.01 and report["evaluation"]["student"]["samples"] == 40
    assert not (tmp / "asca.partial.pt").exists()  # the per-epoch checkpoint goes once the result is saved
    student = fp.load(out, architecture=build("resnet20", num_classes=10, in_channels=1))
    assert fp.metrics.macs(student, torch.zeros(1, 1, 28, 28)) == report["student"]["macs"]
    assert main(["eval", "--model", str(out), "--json", str(tmp / "eval.json"), "--quiet"]) == 0  # a model spec too
    assert json.loads((tmp / "eval.json").read_text())["accuracy"] == report["evaluation"]["student"]["accuracy"]
    before = (out / "student.safetensors").read_bytes()
    assert main(argv) == 2 and "--force" in capsys.readouterr().err
    assert (out / "student.safetensors").read_bytes() == before


def test_a_model_spec_brings_its_own_dataset_when_none_is_named(tmp_path, monkeypatch):
    from fewprune.cli.inputs import default_dataset
    from fewprune.models import zoo

    real = zoo.manifest
    monkeypatch.setattr(zoo, "list", lambda: ["resnet20-fmnist", "segmenter"])
    monkeypatch.setattr(zoo, "manifest", lambda name: {"dataset": "fashion-mnist-scenes"} if name == "segmenter"
                        else real(name))
    assert default_dataset("zoo:segmenter") == ("fashion-mnist-scenes", None)
    assert default_dataset("zoo:resnet20-fmnist") == ("fashion-mnist", None)
    result = tmp_path / "run"
    result.mkdir()
    (result / "report.json").write_text(json.dumps({"evaluation": {"dataset": "imagefolder:/data/roads"}}))
    assert default_dataset(str(result)) == ("imagefolder:/data/roads", None)
    (result / "report.json").write_text(json.dumps({"evaluation": {"dataset": "cifar10", "data_root": "/data/c"}}))
    assert default_dataset(str(result)) == ("cifar10", "/data/c")
    assert default_dataset("torchvision:resnet18") == default_dataset(None) == ("fashion-mnist", None)


def test_python_dash_m_fewprune_is_the_command_line():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "fewprune", "methods", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert {m["name"] for m in json.loads(done.stdout)["methods"]} >= {"l1+kd", "cma", "practise"}


def test_demo_is_the_embedded_default_job_and_passes_on_its_options(monkeypatch):
    from fewprune import cli

    ran = []
    monkeypatch.setattr(cli, "main", lambda argv: ran.append(argv) or 0)  # the prune it would run, not run
    args = cli.build_parser().parse_args(["demo", "--eval-limit", "100", "--device", "cpu"])
    assert args.func(args) == 0
    [argv] = ran
    assert argv[:3] == ["prune", "--model", "zoo:resnet56-fmnist"] and "--force" in argv
    value = lambda flag: argv[argv.index(flag) + 1]  # noqa: E731
    assert value("--method") == "cma+mir-blocks" and value("--samples") == "50" and value("--macs") == "0.5"
    assert value("--blocks") == "auto" and value("--eval-limit") == "100" and value("--device") == "cpu"


def test_held_out_images_are_those_not_drawn_and_none_left_is_refused(tiny_fmnist, monkeypatch):
    from fewprune.cli.inputs import held_out_images

    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    dataset = fp.data.load("fashion-mnist", "test")
    kept = held_out_images("fashion-mnist", dataset, set(range(1, len(dataset))), seed=0)
    assert len(kept) == 1 and torch.equal(kept[0][0], dataset[0][0])
    with pytest.raises(ValueError, match="fashion-mnist has no test split and every image is among the samples"):
        held_out_images("fashion-mnist", dataset, set(range(len(dataset))), seed=0)
