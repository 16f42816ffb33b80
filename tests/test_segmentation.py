"""Dense prediction (torchvision's segmentation models): they prune, equal their zero-masked teacher, reload, and
recover label-free; methods that need one class score per image refuse them with the reason."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import fewprune as fp
from fewprune.bench.coverage import check_model
from fewprune.criteria.asca import distillation_per_sample
from fewprune.metrics import evaluate, mean_iou
from fewprune.models import build
from fewprune.models.features import feature_layer, head_inputs, modules_after
from fewprune.models.outputs import all_outputs, main_output
from fewprune.recovery.baselines import kd_loss
from fewprune.structure.graph import UnsupportedModel

SEGMENTER = "torchvision:lraspp_mobilenet_v3_large"


@pytest.mark.parametrize("name", [SEGMENTER, "torchvision:deeplabv3_mobilenet_v3_large"])
def test_a_segmentation_model_prunes_equals_its_masked_teacher_and_reloads(name):
    row = check_model(name, input_shape=(3, 64, 64), macs=0.3)
    assert row["status"] == "ok", row
    assert row["macs_after"] < 0.75 * row["macs_before"]


def test_a_forward_output_is_read_as_its_prediction():
    scores = torch.randn(2, 3, 4, 4)
    assert main_output(scores) is scores
    assert main_output({"aux": torch.zeros(1), "out": scores}) is scores  # torchvision's key, wherever it is
    assert main_output((scores, torch.zeros(1))) is scores
    assert [t.shape for t in all_outputs({"out": scores, "aux": [scores[:1], scores[:, :1]]})] \
        == [scores.shape, scores[:1].shape, scores[:, :1].shape]
    with pytest.raises(TypeError, match="no prediction tensor"):
        main_output({})


def test_distillation_averages_a_dense_prediction_over_its_pixels_and_is_unchanged_for_classifiers():
    student, teacher = torch.randn(2, 5, 3, 4), torch.randn(2, 5, 3, 4)
    per_pixel = lambda s, t: s.permute(0, 2, 3, 1).reshape(-1, 5)  # noqa: E731 — each pixel a row of class scores
    expected = F.kl_div(F.log_softmax(per_pixel(student, 0) / 4, 1), F.log_softmax(per_pixel(teacher, 0) / 4, 1),
                        reduction="batchmean", log_target=True) * 16
    assert torch.allclose(kd_loss(student, teacher, 4.0), expected)
    s, t = torch.randn(8, 10), torch.randn(8, 10)  # per image: what it always was, to the bit
    assert torch.equal(kd_loss(s, t, 4.0), F.kl_div(F.log_softmax(s / 4, 1), F.log_softmax(t / 4, 1),
                                                   reduction="batchmean", log_target=True) * 16)
    per_image = distillation_per_sample(student, teacher)
    assert per_image.shape == (2,) and torch.allclose(per_image.mean(), expected, rtol=1e-5)


def test_pixel_accuracy_and_mean_iou_against_label_masks_ignore_out_of_range_labels():
    class Constant(torch.nn.Module):  # predicts class 1 on the left half of every image, class 0 elsewhere
        def forward(self, x):
            scores = torch.zeros(len(x), 3, 2, 4)
            scores[:, 1, :, :2] = 1.0
            scores[:, 0, :, 2:] = 1.0
            return {"out": scores}

    masks = torch.tensor([[[1, 1, 0, 2], [1, 0, 0, 255]]])  # one image; 255 = unlabelled pixel
    result = evaluate(Constant(), TensorDataset(torch.zeros(1, 3, 2, 4), masks), progress=False, num_classes=3)
    # 7 labelled pixels, 5 right; IoU class 0: 2 / 4, class 1: 3 / 4, class 2: 0 / 1
    assert result["accuracy"] == pytest.approx(5 / 7, abs=1e-6) and result["samples"] == 1
    assert result["mean_iou"] == pytest.approx((2 / 4 + 3 / 4 + 0) / 3, abs=1e-6)
    assert mean_iou(torch.tensor([0, 1]), torch.tensor([0, 1]), 4) == 1.0  # absent classes do not count


@pytest.mark.parametrize("method", ["lrp", "cswap"])
def test_a_method_reading_one_class_score_per_image_refuses_a_dense_prediction(method):
    model = build(SEGMENTER, num_classes=4).eval()
    with pytest.raises(UnsupportedModel, match="predicts \\(4, 64, 64\\) per image"):
        fp.compress(model, torch.randn(4, 3, 64, 64), method=method, target=fp.Target(macs=0.2), progress=False)


@pytest.mark.parametrize("method", ["l1+kd", "l1+mir", "taylor+kd"])
def test_a_segmentation_model_recovers_label_free_and_mir_keeps_its_decoder(method):
    teacher = build(SEGMENTER, num_classes=4).eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x = torch.randn(6, 3, 64, 64)
    result = fp.compress(teacher, x, method=fp.methods.with_schedule(method, iterations=3, batch_size=4),
                         target=fp.Target(macs=0.3), seed=0, progress=False)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # the teacher is untouched
    student = result.student.eval()
    with torch.no_grad():
        out = main_output(student(x))
    assert out.shape == (6, 4, 64, 64) and torch.isfinite(out).all()
    if method == "l1+mir":  # mimicking the backbone's output with the teacher's decoder, kept whole and frozen
        layer = feature_layer(teacher, x[:1])
        assert layer == "backbone.16"
        head = modules_after(teacher, layer, x[:1])
        assert head and all(torch.equal(student.get_submodule(n).weight, teacher.get_submodule(n).weight)
                            for n in head)
        recovery = result.report["recovery"]["mir"]
        assert recovery["feature_layer"] == "backbone.16" and recovery["head_inputs"] == ["backbone.4"]


@pytest.mark.parametrize("name, reads", [(SEGMENTER, ["backbone.4"]), ("torchvision:deeplabv3_mobilenet_v3_large", []),
                                         ("torchvision:mobilenet_v3_small", []), ("resnet20", [])])
def test_the_layers_a_head_reads_besides_the_features_are_a_decoders_skip_connections(name, reads):
    model = build(name, num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64)
    assert head_inputs(model, feature_layer(model, x), x) == reads


class Skip(torch.nn.Module):
    """Two branches from the image; the head reads the deep one (the features) and the shallow one (a skip)."""

    feature_layer = "deep"

    def __init__(self):
        super().__init__()
        self.shallow = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.deep = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
        self.head_deep, self.head_shallow = torch.nn.Conv2d(4, 2, 1), torch.nn.Conv2d(4, 2, 1)

    def forward(self, x):
        skip = self.shallow(x)  # the skip runs first, as a backbone's early stage does
        return {"out": self.head_deep(self.deep(x)) + self.head_shallow(skip)}


def test_mir_mimics_what_the_frozen_head_reads_through_a_skip_connection_too():
    from fewprune.recovery.mir import mimicked_layers, mimicking

    teacher = Skip().eval()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.shallow.weight.mul_(2)  # only the skip differs: the features alone would not show it
    x = torch.randn(2, 3, 8, 8)
    assert mimicked_layers(teacher, x[:1]) == ["deep", "shallow"]
    with mimicking(student, teacher, "deep") as features_alone, torch.no_grad():
        assert features_alone(x).item() == 0.0
    with mimicking(student, teacher, mimicked_layers(teacher, x[:1])) as everything_read, torch.no_grad():
        assert everything_read(x).item() > 0


def test_agreement_on_a_dense_prediction_is_per_pixel_and_tables_say_so():
    from rich.console import Console

    from fewprune.cli.outputs import metrics_table
    from fewprune.metrics import agreement, predict

    model = build(SEGMENTER, num_classes=3).eval()
    images = TensorDataset(torch.randn(3, 3, 64, 64))  # images alone: batches are 1-tuples
    reference, _ = predict(model, images, progress=False)
    assert reference.shape == (3, 64, 64)
    same = agreement(model, images, reference, progress=False)
    assert same == {"agreement": 1.0, "samples": 3, "per_pixel": True}
    flipped = reference.clone()
    flipped[0, :32] = (flipped[0, :32] + 1) % 3  # a quarter of one image's pixels (one in 6 of all) disagree
    assert agreement(model, images, flipped, progress=False)["agreement"] == pytest.approx(5 / 6, abs=1e-6)
    timing = {"batch64": {"median_ms": 2.0, "p25_ms": 1.0, "p75_ms": 3.0, "threads": 1}}
    rows = {"teacher": {**same, "macs": 1e6, "params": 1e5, "latency": timing}}
    console = Console(record=True, width=200)
    console.print(metrics_table(rows))
    assert "agreement with the teacher, per pixel" in console.export_text()
    rows = {"teacher": {"accuracy": 0.5, "mean_iou": 0.25, "samples": 3, "macs": 1e6, "params": 1e5, "latency": timing}}
    console.print(metrics_table(rows))
    text = console.export_text()
    assert "pixel accuracy" in text and "mean IoU" in text and "25.00%" in text


def test_labels_that_do_not_fit_the_prediction_are_refused_with_the_form_wanted():
    segmenter = build(SEGMENTER, num_classes=4).eval()
    x = torch.randn(4, 3, 64, 64)
    with pytest.raises(ValueError, match="predicts \\(4, 64, 64\\) per image: give a 64×64 label mask per image"):
        fp.compress(segmenter, (x, torch.arange(4)), method="taylor+kd", target=fp.Target(macs=0.2), progress=False)
    classifier = build("resnet20", num_classes=10, in_channels=1).eval()
    with pytest.raises(ValueError, match="give one class per image"):
        fp.compress(classifier, (torch.randn(4, 1, 28, 28), torch.zeros(4, 28, 28, dtype=torch.long)),
                    method="l1", target=fp.Target(macs=0.2), progress=False)


@pytest.mark.parametrize("method", ["taylor+kd", "l1+fskd+mir", "lrp"])
def test_the_method_check_gives_a_dense_model_label_masks_and_compares_every_output(method):
    from fewprune.bench.method_coverage import check_method

    row = check_method(SEGMENTER, method, input_shape=(3, 64, 64), samples=6)
    assert row["status"] == ("refused" if method == "lrp" else "ok"), row.get("error")


def _segmentation_folder(root, count=6, size=(40, 30), mask_mode="P"):
    """``root/images/NN.png`` with ``root/masks/NN.png``: classes 0 | 1 | 2 in vertical thirds, the top row 255."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    w, h = size
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:, w // 3:] = 1
    mask[:, 2 * w // 3:] = 2
    mask[0] = 255
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{i:02d}.png")
        picture = Image.fromarray(mask, mode="L")
        (picture.convert(mask_mode) if mask_mode != "L" else picture).save(root / "masks" / f"{i:02d}.png")
    return mask


def test_a_folder_of_images_and_masks_is_a_segmentation_set(tmp_path):
    from fewprune import data

    _segmentation_folder(tmp_path / "set")
    (tmp_path / "set" / "masks" / "spare.png").write_bytes((tmp_path / "set" / "masks" / "00.png").read_bytes())
    (tmp_path / "set" / "classes.txt").write_text("background\nleft\nright\n")
    dataset = data.load(f"imagefolder:{tmp_path / 'set'}", "train", image_size=24)
    assert len(dataset) == 6 and dataset.info.task == "segmentation" and dataset.info.num_classes == 3
    image, mask = dataset[0]
    assert image.shape == (3, 24, 24) and mask.shape == (24, 24) and mask.dtype == torch.long
    assert set(mask.unique().tolist()) <= {0, 1, 2, 255}  # resized by nearest neighbour: no class in between
    assert dataset.info.classes == ("background", "left", "right")
    assert {0, 1, 2} <= set(mask.unique().tolist())
    images, masks = data.few_shot(dataset, n=3, seed=0).tensors()
    assert images.shape == (3, 3, 24, 24) and masks.shape == (3, 24, 24)
    (tmp_path / "set" / "masks" / "03.png").unlink()
    with pytest.raises(fp.data.DatasetNotFound, match="1 images in .* have no mask of the same name.*03.png"):
        data.load(f"imagefolder:{tmp_path / 'set'}", "train")


def test_a_colour_mask_is_refused_with_what_a_mask_must_be(tmp_path):
    from fewprune import data

    _segmentation_folder(tmp_path / "set", count=2, mask_mode="RGB")
    with pytest.raises(ValueError, match="masks/00.png is a RGB image; a mask holds one class index per pixel"):
        data.load(f"imagefolder:{tmp_path / 'set'}", "train", image_size=24)


def test_prune_on_a_segmentation_folder_reports_pixel_accuracy_and_mean_iou(tmp_path, capsys, untimed):
    import json

    from fewprune.cli import main

    root = tmp_path / "set"
    _segmentation_folder(root / "train", count=8)
    _segmentation_folder(root / "test", count=4)
    model_file = tmp_path / "net.py"
    model_file.write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, num_classes):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),\n"
        "                                  nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())\n"
        "        self.classifier = nn.Conv2d(16, num_classes, 1)\n"
        "    def forward(self, x):\n"
        "        return {'out': self.classifier(self.body(x))}\n"
        "def make(num_classes=3, in_channels=3):\n"
        "    return Net(num_classes or 3)\n")
    out = tmp_path / "run"
    assert main(["prune", "--model", f"{model_file}:make", "--data", f"imagefolder:{root}", "--samples", "4",
                 "--method", "l1+bn", "--channels", "0.25", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pixel accuracy" in printed and "mean IoU" in printed
    evaluation = json.loads((out / "report.json").read_text())["evaluation"]
    assert evaluation["split"] == "test"
    for model in ("teacher", "student"):
        assert 0 <= evaluation[model]["mean_iou"] <= 1 and len(evaluation[model]["per_class"]) == 3
