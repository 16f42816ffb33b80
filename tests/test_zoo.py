import math

import pytest
import torch

from fewprune import data, metrics, zoo
from fewprune.models.weights import sha256_of

TEACHERS = zoo.list()


def test_the_zoo_ships_teachers():
    assert "resnet20-fmnist" in TEACHERS


@pytest.mark.parametrize("name", TEACHERS)
def test_weights_match_their_recorded_hash_and_manifest(name):
    manifest = zoo.manifest(name)
    assert sha256_of(zoo.weights_path(name)) == manifest["sha256"]
    model = zoo.load(name)
    assert not model.training
    x = torch.zeros(1, manifest["in_channels"], manifest["image_size"], manifest["image_size"])
    assert metrics.macs(model, x) == manifest["macs"]
    assert metrics.params(model) == manifest["params"]
    fresh = zoo.architecture(name)
    assert type(fresh) is type(model)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True))


@pytest.mark.parametrize("name", TEACHERS)
def test_accuracy_on_500_real_test_images_agrees_with_the_manifest(name):
    manifest = zoo.manifest(name)
    test = data.load(manifest["dataset"], "test")
    # the input convention an image folder is read with is the training set's
    convention = zoo.input_convention(name)
    assert (convention["channels"], convention["image_size"], convention["image_size"]) == test.info.input_shape
    assert (convention["mean"], convention["std"], convention["classes"]) == (test.info.mean, test.info.std,
                                                                               test.info.classes)
    subset = data.few_shot(test, n=500, seed=123)
    accuracy = metrics.evaluate(zoo.load(name), subset, progress=False)["accuracy"]
    p = manifest["test_accuracy"]
    sigma = math.sqrt(p * (1 - p) / 500)
    assert abs(accuracy - p) <= 4 * sigma + 1e-9, f"{accuracy:.4f} vs manifest {p:.4f} (σ {sigma:.4f})"


def test_a_tampered_weights_file_is_refused(tmp_path, monkeypatch):
    import json
    import shutil

    name = TEACHERS[0]
    fake = tmp_path / "weights"
    fake.mkdir()
    manifest = zoo.manifest(name)
    shutil.copy(zoo.weights_path(name), fake / manifest["weights"])
    (fake / f"{name}.json").write_text(json.dumps(manifest))
    with open(fake / manifest["weights"], "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", fake)
    with pytest.raises(ValueError, match="sha256"):
        zoo.load(name)


def test_a_mistyped_name_gets_the_closest_one():
    from fewprune.models import build

    with pytest.raises(KeyError, match="no teacher 'resnet56-fmnst' in the zoo; did you mean 'resnet56-fmnist'\\?"):
        zoo.load("resnet56-fmnst")
    with pytest.raises(KeyError, match="model 'resnet181'; did you mean 'resnet18'\\?"):
        build("torchvision:resnet181")
    with pytest.raises(KeyError, match="unknown model 'resnet65'; did you mean 'resnet56'\\?"):
        build("resnet65")
    with pytest.raises(KeyError, match="unknown model 'xyzzy'; registered:"):  # nothing close: no guess
        build("xyzzy")
