import pickle

import numpy as np
import pytest
import torch

from fewprune import data
from fewprune.data.cifar import read_cifar_pickle


def test_idx_reader_round_trips_gzipped_and_plain_files(tiny_fmnist):
    train = data.load("fashion-mnist", "train", root=tiny_fmnist)
    test = data.load("fashion-mnist", "test", root=tiny_fmnist)
    assert len(train) == 60 and len(test) == 40
    raw = data.read_idx(tiny_fmnist / "t10k-images-idx3-ubyte")
    assert torch.equal(test.images[:, 0], torch.from_numpy(raw))
    x, y = test[3]
    assert x.shape == (1, 28, 28) and y == 3
    expected = (raw[3] / 255.0 - test.info.mean[0]) / test.info.std[0]
    assert torch.allclose(x[0], torch.from_numpy(expected).float(), atol=1e-6)
    assert train.info.num_classes == 10 and train.info.input_shape == (1, 28, 28)


def test_fashion_mnist_root_from_environment(tiny_fmnist, monkeypatch):
    monkeypatch.setenv("FEWPRUNE_FASHION_MNIST", str(tiny_fmnist))
    assert len(data.load("fashion-mnist", "test")) == 40


def test_idx_reader_rejects_truncated_file(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="promises 10"):
        data.read_idx(path)


def test_missing_fashion_mnist_names_the_debian_package(tmp_path):
    with pytest.raises(data.DatasetNotFound, match="dataset-fashion-mnist"):
        data.load("fashion-mnist", "train", root=tmp_path)


def _write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def test_cifar10_reader(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        _write_pickle(tmp_path / f"data_batch_{i}",
                      {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [i % 10] * 4})
    test_images = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    _write_pickle(tmp_path / "test_batch", {b"data": test_images, b"labels": [0, 1, 2]})
    _write_pickle(tmp_path / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    train = data.load("cifar10", "train", root=tmp_path)
    test = data.load("cifar10", "test", root=tmp_path)
    assert len(train) == 20 and len(test) == 3
    assert test.info.classes[2] == "c2" and test.info.input_shape == (3, 32, 32)
    assert torch.equal(test.images[1], torch.from_numpy(test_images[1].reshape(3, 32, 32)))
    assert test.targets.tolist() == [0, 1, 2]


def test_cifar100_reader_uses_fine_labels(tmp_path):
    images = np.zeros((2, 3072), dtype=np.uint8)
    _write_pickle(tmp_path / "train", {"data": images, "fine_labels": [5, 99], "coarse_labels": [0, 1]})
    _write_pickle(tmp_path / "test", {"data": images, "fine_labels": [1, 2], "coarse_labels": [0, 1]})
    _write_pickle(tmp_path / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    train = data.load("cifar100", "train", root=tmp_path)
    assert train.targets.tolist() == [5, 99] and train.info.num_classes == 100


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    _write_pickle(tmp_path / "evil", {b"data": _Evil()})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_cifar_pickle(tmp_path / "evil")


def test_missing_cifar_names_the_folder(tmp_path):
    with pytest.raises(data.DatasetNotFound, match="data_batch_1"):
        data.load("cifar10", "train", root=tmp_path / "nowhere")


def _labelled(n_per_class=20, classes=10):
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    images = torch.randint(0, 256, (len(labels), 1, 8, 8), dtype=torch.uint8)
    info = data.DatasetInfo("toy", tuple(map(str, range(classes))), (1, 8, 8), (0.5,), (0.5,))
    return data.ImageTensorDataset(images, labels, info)


def test_few_shot_per_class_is_balanced_and_deterministic():
    ds = _labelled()
    a = data.few_shot(ds, per_class=3, seed=7)
    b = data.few_shot(ds, per_class=3, seed=7)
    c = data.few_shot(ds, per_class=3, seed=8)
    assert a.indices == b.indices and a.indices != c.indices
    assert torch.bincount(a.targets, minlength=10).tolist() == [3] * 10
    assert len(set(a.indices)) == 30
    x, y = a.tensors()
    assert x.shape == (30, 1, 8, 8) and torch.equal(y, a.targets)
    assert a.indices_hash() == b.indices_hash() != c.indices_hash()


def test_few_shot_n_draws_distinct_samples():
    ds = _labelled()
    subset = data.few_shot(ds, n=50, seed=0)
    assert len(subset) == 50 and len(set(subset.indices)) == 50
    assert subset.indices == data.few_shot(ds, n=50, seed=0).indices
    with pytest.raises(ValueError):
        data.few_shot(ds, n=10, per_class=1)
    with pytest.raises(ValueError, match=r"class '0' \(0\) of toy has only 20 images, fewer than per_class=21"):
        data.few_shot(ds, per_class=21)
    with pytest.raises(ValueError, match=r"cannot draw 201 samples from toy, which has 200 images: ask for 1 to 200"):
        data.few_shot(ds, n=201)


def test_split_off_holds_out_a_fixed_part_and_samples_drawn_from_the_rest_read_through_it():
    ds = _labelled()
    rest, held = data.split_off(ds, 0.2, seed=0)
    assert len(held) == 40 and len(rest) == 160 and not set(held.indices) & set(rest.indices)
    assert held.indices == data.split_off(ds, 0.2, seed=0)[1].indices != data.split_off(ds, 0.2, seed=1)[1].indices
    few = data.few_shot(rest, n=5, seed=3)  # positions in the rest: each image is the dataset's at rest.indices[p]
    x, y = few.tensors()
    expected = ds.batch([rest.indices[p] for p in few.indices])
    assert torch.equal(x, expected[0]) and torch.equal(y, expected[1]) and torch.equal(y, few.targets)
    with pytest.raises(ValueError, match="cannot hold out"):
        data.split_off(ds, 1.0)


def test_imagefolder(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((40, 50, 3), 60 * i, dtype=np.uint8)).save(tmp_path / "train" / cls / f"{i}.png")
    ds = data.load(f"imagefolder:{tmp_path}", "train", image_size=32)
    x, y = ds[3]
    assert len(ds) == 4 and x.shape == (3, 32, 32) and y == 1
    assert ds.info.classes == ("cat", "dog") and ds.targets.tolist() == [0, 0, 1, 1]
    with pytest.raises(data.DatasetNotFound):
        data.load(f"imagefolder:{tmp_path / 'none'}", "train")


def _export_pngs(dataset, root, folder_of):
    """Write each image of a uint8 dataset as a PNG under ``root/<folder_of(label)>/<index>.png``."""
    from PIL import Image

    for i in range(len(dataset)):
        folder = root / folder_of(int(dataset.targets[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(dataset.images[i, 0].numpy()).save(folder / f"{i:04d}.png")


def test_a_zoo_teachers_convention_reads_exported_pngs_exactly_as_its_dataset(tiny_fmnist, tmp_path):
    from pathlib import Path

    from fewprune.models import zoo

    test = data.load("fashion-mnist", "test", root=tiny_fmnist)
    names = test.info.classes
    # folders by name with the slash replaced and case changed, and one by index: all mean the model's class
    _export_pngs(test, tmp_path / "pngs" / "test",
                 lambda label: str(label) if label == 8 else names[label].replace("/", "_").upper())
    convention = zoo.input_convention("resnet20-fmnist")
    folder = data.load(f"imagefolder:{tmp_path / 'pngs'}", "test", **convention)
    order = [int(Path(file).stem) for file, _ in folder.folder.samples]
    assert folder.info.classes == names and folder.info.input_shape == (1, 28, 28)
    assert torch.equal(folder.targets, test.targets[order])
    images = torch.stack([folder[i][0] for i in range(len(folder))])
    torch.testing.assert_close(images, test.batch(order)[0], rtol=0, atol=1e-6)
    # read as RGB with ImageNet's normalisation: "fit" keeps the 28×28 pixels, "imagenet" zooms into the centre
    rgb = {mode: data.load(f"imagefolder:{tmp_path / 'pngs'}", "test", image_size=28, resize=mode, classes=names)[0][0]
           for mode in data.RESIZE_MODES}
    from fewprune.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD

    pixels = rgb["fit"] * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    torch.testing.assert_close(pixels, (images[0] * 0.353 + 0.286).expand(3, -1, -1), rtol=0, atol=1e-5)
    assert rgb["imagenet"].shape == (3, 28, 28) and not torch.allclose(rgb["imagenet"], rgb["fit"], atol=0.1)


def test_class_folders_that_are_none_of_the_models_classes_are_named(tmp_path):
    from PIL import Image

    for name in ("Sneaker", "Sandals", "12"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / name / "0.png")
    classes = ("T-shirt/top", "Trouser", "Sandal", "Sneaker")
    with pytest.raises(ValueError, match=r"'12', 'Sandals' under .* are none of the model's 4 classes \(T-shirt"):
        data.load(f"imagefolder:{tmp_path}", classes=classes)
    (tmp_path / "Sandals").rename(tmp_path / "sneaker")
    (tmp_path / "12").rename(tmp_path / "2")
    with pytest.raises(ValueError, match="Sneaker, sneaker .* name the same class"):
        data.load(f"imagefolder:{tmp_path}", classes=classes)
    (tmp_path / "sneaker").rename(tmp_path / "1")
    (tmp_path / "classes.txt").write_text("\n".join(classes) + "\n")  # a folder can state the model's classes itself
    ds = data.load(f"imagefolder:{tmp_path}")
    assert ds.info.classes == classes and sorted(ds.targets.tolist()) == [1, 2, 3]


def test_an_input_convention_is_checked_and_a_grey_one_reads_colour_files_as_luma(tmp_path):
    from PIL import Image

    for bad, message in (({"channels": 2}, "1 .grey. or 3 .RGB. channels, not 2"),
                         ({"mean": (0.5, 0.5)}, "mean has 2 values for images of 3 channels"),
                         ({"std": 0}, "std must be positive"), ({"resize": "stretch"}, "resize must be one of"),
                         ({"resize": 1.5}, r"or the crop's share of the shorter side \(a number in \(0, 1\]\)"),
                         ({"interpolation": "lanczos"}, "interpolation must be one of bilinear, bicubic")):
        with pytest.raises(ValueError, match=message):
            data.input_convention(**bad)
    assert data.input_convention(channels=1)["mean"] == (round(sum(data.imagefolder.IMAGENET_MEAN) / 3, 3),)
    Image.fromarray(np.full((10, 10, 3), (255, 0, 0), dtype=np.uint8)).save(tmp_path / "red.png")
    grey = data.load(f"imagefolder:{tmp_path}", image_size=10, channels=1, mean=0, std=1, resize="fit")
    assert grey.info.classes == () and grey[0].shape == (1, 10, 10)
    torch.testing.assert_close(grey[0], torch.full((1, 10, 10), 76 / 255))  # ITU-R 601: 0.299 × 255 → 76
    # a 16-bit grey PNG keeps its tones (PIL alone would clip every value above 255 to white)
    (tmp_path / "red.png").unlink()
    Image.fromarray(np.arange(100, dtype=np.uint16).reshape(10, 10) * 600).save(tmp_path / "deep.png")
    deep = data.load(f"imagefolder:{tmp_path}", image_size=10, channels=1, mean=0, std=1, resize="fit")
    expected = torch.round(torch.arange(100, dtype=torch.float32).reshape(1, 10, 10) * 600 / 257) / 255
    torch.testing.assert_close(deep[0], expected)


@pytest.mark.parametrize("spec", ["torchvision:resnet18", "torchvision:convnext_tiny", "torchvision:efficientnet_b3",
                                  "timm:vit_tiny_patch16_224", "timm:resnet18.a1_in1k"])
def test_a_library_models_folder_images_are_its_librarys_own_evaluation_inputs(spec, tmp_path):
    """torchvision's weights transforms and timm's eval transform, applied to the same file, give the tensor the
    folder reads for the model (the resize share, filter and normalisation are taken from the library, offline)."""
    from PIL import Image

    from fewprune.cli.inputs import model_input_convention

    library, name = spec.split(":")
    timm = pytest.importorskip("timm") if library == "timm" else None
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (301, 415, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    convention = model_input_convention(spec)
    folder = data.load(f"imagefolder:{tmp_path}", **convention)
    with Image.open(tmp_path / "a.png") as picture:
        picture = picture.convert("RGB")
        if library == "torchvision":
            from torchvision.models import get_model_weights

            expected = list(get_model_weights(name))[0].transforms()(picture)
        else:
            from timm.data import create_transform, resolve_data_config

            expected = create_transform(**resolve_data_config({}, model=timm.create_model(name, pretrained=False)))(
                picture)
    assert folder[0].shape == expected.shape
    torch.testing.assert_close(folder[0], expected, rtol=0, atol=1e-5)


def test_models_with_no_library_convention_keep_imagenets():
    from fewprune.cli.inputs import model_input_convention

    # a segmentation preset resizes without cropping; a built-in or unknown model has no recorded convention
    for spec in ("torchvision:lraspp_mobilenet_v3_large", "resnet20", "timm:no_such_model", None):
        assert model_input_convention(spec) is None
