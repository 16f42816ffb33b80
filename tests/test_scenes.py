"""Fashion-MNIST scenes (the segmentation task fewprune composes itself), training on label masks, and sweeps
that rank by mean IoU."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import fashion_mnist_available
from fewprune import data
from fewprune.augment.basic import random_crop_flip_with_masks
from fewprune.bench import SweepConfig
from fewprune.data.scenes import INK, SCENES_MEAN, SCENES_STD, compose_scenes
from fewprune.models.recipes import Recipe, fit


def garments(*labels: int) -> tuple[np.ndarray, np.ndarray]:
    """One 4×4 garment per label: ink (200) on its left half, faint noise (INK) on its right half."""
    images = np.zeros((len(labels), 4, 4), dtype=np.uint8)
    images[:, :, :2] = 200
    images[:, :, 2:] = INK
    return images, np.array(labels)


def test_a_scene_labels_each_inked_pixel_with_its_garment_and_the_rest_background():
    images, labels = garments(3)
    canvas, mask = compose_scenes(images, labels, size=6, garments=1, rng=np.random.default_rng(0))
    assert canvas.shape == mask.shape == (1, 6, 6)
    assert ((canvas == 200) == (mask == 4)).all()  # class 3 → label 4; label 0 is the background
    assert mask.sum() == 8 * 4 and (canvas[mask == 0] == 0).all()  # the faint half is not drawn


def test_a_later_garment_hides_what_it_covers_and_only_that():
    images, labels = garments(0, 1)
    images[1, :, :2] = 90  # the second garment is darker, so the picture shows which one is on top
    canvas, mask = compose_scenes(images, labels, size=4, garments=2, rng=np.random.default_rng(0))
    # both at the only place there is: the second covers the first's ink exactly
    assert (mask[0][:, :2] == 2).all() and (canvas[0][:, :2] == 90).all()
    assert (mask[0][:, 2:] == 0).all()


def test_scenes_use_each_image_once_and_the_same_seed_gives_the_same_scenes():
    rng = np.random.default_rng(5)
    images = rng.integers(INK + 1, 256, size=(7, 4, 4), dtype=np.uint8)  # all ink
    labels = np.arange(7)
    first = compose_scenes(images, labels, 8, 3, np.random.default_rng(1))
    again = compose_scenes(images, labels, 8, 3, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len(first[0]) == 2  # 7 images, 3 a scene: 2 scenes, one image left over
    shown = set(np.unique(first[1])) - {0}
    assert len(shown) >= 2  # garments of different images show (the last drawn is always whole)
    with pytest.raises(ValueError, match="cannot hold"):
        compose_scenes(images, labels, 3, 1, np.random.default_rng(0))


def test_the_scenes_dataset_loads_from_the_fashion_mnist_files(tiny_fmnist, monkeypatch):
    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    train = data.load("fashion-mnist-scenes", "train")
    assert len(train) == 20 and train.images.shape == (20, 1, 64, 64)  # 60 images, 3 a scene
    assert train.info.task == "segmentation" and train.info.num_classes == 11
    x, y = train.batch([0, 1])
    assert y.dtype == torch.long and y.shape == (2, 64, 64) and int(y.max()) <= 10
    image, mask = train[0]
    assert image.shape == (1, 64, 64) and torch.equal(mask, y[0])
    assert len(data.load("fashion-mnist-scenes", "test")) == 13  # 40 test images
    assert train.targets.dtype == torch.uint8  # masks stay small in memory
    with pytest.raises(ValueError, match="one class per image"):
        data.few_shot(train, per_class=1)
    assert len(data.few_shot(train, n=5, seed=0)) == 5


@pytest.mark.skipif(not fashion_mnist_available(), reason="Debian's dataset-fashion-mnist is not installed")
def test_the_recorded_normalisation_is_that_of_the_training_scenes():
    pixels = data.load("fashion-mnist-scenes", "train").images.float() / 255
    assert pixels.mean().item() == pytest.approx(SCENES_MEAN[0], abs=1e-3)
    assert pixels.std().item() == pytest.approx(SCENES_STD[0], abs=1e-3)


def test_masks_move_with_their_images():
    images = torch.randint(0, 256, (16, 1, 12, 12), dtype=torch.uint8)
    masks = (images[:, 0] > 128).to(torch.uint8) * 7
    moved, moved_masks = random_crop_flip_with_masks(images, masks, 3, torch.Generator().manual_seed(0))
    assert moved.shape == images.shape and moved_masks.dtype == masks.dtype
    assert torch.equal(moved_masks, (moved[:, 0] > 128).to(torch.uint8) * 7)  # still the same pixels
    assert not torch.equal(moved, images)  # and they did move


class TinySegmenter(nn.Module):
    """Per-pixel class scores from two convs, returned as torchvision's segmentation models do."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.classifier = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        return {"out": self.classifier(self.body(x))}


def test_training_on_label_masks_learns_them_and_leaves_ignored_pixels_out():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    masks = (images[:, 0] > 128).to(torch.uint8) + 1  # class 2 where bright, 1 where dark
    masks[:, 0, 0] = 255  # "ignore": a label out of the model's range must not break the loss
    info = data.DatasetInfo("toy", ("background", "dark", "bright"), (1, 8, 8), (0.5,), (0.25,), task="segmentation")
    toy = data.ImageTensorDataset(images, masks, info)
    model = TinySegmenter()
    fit(model, toy, Recipe("", "toy", epochs=8, batch_size=16, lr=0.1, crop_padding=0, bf16=False), log=lambda *_: None)
    from fewprune.metrics import evaluate

    result = evaluate(model, toy, progress=False)
    assert result["accuracy"] > 0.95 and result["mean_iou"] > 0.9


def test_a_segmentation_sweep_ranks_by_mean_iou(tmp_path):
    from fewprune.bench.report import render

    config = SweepConfig(name="x", dataset="fashion-mnist-scenes", models=["m"], methods=["a", "b"], samples=[10],
                         targets=[{"macs": 0.5}], seeds=[0], source="x.yaml", metric="mean_iou")
    rows = [{"kind": "teacher", "status": "ok", "model": "m", "accuracy": 0.95, "mean_iou": 0.80}]
    for method, accuracy, iou in [("a", 0.90, 0.60), ("b", 0.85, 0.70)]:  # b: lower pixel accuracy, higher IoU
        rows.append({"kind": "cell", "status": "ok", "accuracy": accuracy, "mean_iou": iou, "macs_reduction": 0.5,
                     "params_reduction": 0.5, "compress_seconds": 1.0,
                     "cell": {"model": "m", "method": method, "samples": 10, "seed": 0, "target": {"macs": 0.5}}})
    text = render(config, rows)
    assert "Test mean IoU (%)" in text and "mean IoU on the full test split" in text
    assert "| *teacher* | 80.00 | |" in text
    assert "| a | 60.00 (-20.00) #2 | 2.0 |" in text and "| b | 70.00 (-10.00) #1 | 1.0 |" in text
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndataset: d\nmodels: [m]\nmethods: [l1]\nsamples: [1]\ntargets: [{macs: 0.5}]\n"
                    "metric: iou\n")
    with pytest.raises(ValueError, match="metric is one of accuracy, mean_iou"):
        SweepConfig.read(path)


def test_the_segmentation_recipe_trains_a_teacher_whose_manifest_records_its_mean_iou(tiny_fmnist, monkeypatch,
                                                                                      tmp_path):
    from fewprune.models.recipes import train_teacher

    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    manifest = train_teacher("lraspp-fmnist-scenes", tmp_path, epochs=1, log=lambda *_: None)
    assert manifest["architecture"] == "torchvision:lraspp_mobilenet_v3_large" and manifest["num_classes"] == 11
    assert manifest["image_size"] == 64 and manifest["in_channels"] == 1
    assert 0 <= manifest["mean_iou"] <= 1 and 0 <= manifest["test_accuracy"] <= 1
    assert (tmp_path / "lraspp-fmnist-scenes.safetensors").is_file()
