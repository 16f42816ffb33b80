import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from fewprune import models
from fewprune.checkpoints import checkpoint_progress
from fewprune.models import build, capture, feature_layer

BUILTINS = models.models.names()


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_builtin_forwards_and_exposes_pre_pooling_features(name, shape):
    model = build(name, num_classes=7, in_channels=shape[0], image_size=shape[1]).eval()
    x = torch.randn(2, *shape)
    layer = feature_layer(model)
    with capture(model, layer) as out, torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 7)
    features = out[layer]
    assert features.shape[0] == 2 and features.ndim in (3, 4)
    if features.ndim == 4:  # CNN: spatial map whose channel width feeds the head
        head_in = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].in_features
        assert features.shape[1] == head_in
    # The hooks are gone after the context.
    assert all(not m._forward_hooks for m in model.modules())


def test_builtins_cover_the_issue_list():
    assert {"resnet20", "resnet56", "vgg16", "mobilenetv2", "vit"} <= set(BUILTINS)


@pytest.mark.parametrize("name,expected", [("resnet18", "layer4"), ("mobilenet_v2", "features"),
                                           ("vit_b_16", "encoder"), ("densenet121", "features")])
def test_torchvision_models_know_their_features(name, expected):
    model = build(f"torchvision:{name}", num_classes=10)
    assert feature_layer(model) == expected
    assert type(model).__module__.startswith("torchvision")


def test_feature_layer_found_by_tracing_an_unknown_model():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    assert feature_layer(model, torch.randn(1, 3, 16, 16)) == "2"
    with pytest.raises(ValueError, match="feature_layer"):
        feature_layer(model)


def test_torchvision_with_grey_input_channels():
    model = build("torchvision:resnet18", num_classes=10, in_channels=1).eval()
    assert model.conv1.in_channels == 1
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 10)


def test_user_file_factory_and_safetensors_weights(tmp_path):
    source = tmp_path / "mynet.py"
    source.write_text(
        "import torch.nn as nn\n"
        "def make(num_classes=10):\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))\n"
    )
    reference = build(f"{source}:make", num_classes=5)
    save_file(reference.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = build(f"{source}:make", num_classes=5, weights=str(tmp_path / "w.safetensors"))
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(reference(x), loaded(x))


def test_a_model_file_imports_the_modules_beside_it_as_a_script_would(tmp_path):
    import sys

    (tmp_path / "garment_layers.py").write_text(
        "import torch.nn as nn\nclass Net(nn.Sequential):\n    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))\n")
    (tmp_path / "garment_weights.py").write_text("def fill(model):\n    return model\n")
    source = tmp_path / "net.py"  # a user's entry file: its model's code lives beside it
    source.write_text("from garment_layers import Net\n\ndef build():\n"
                      "    from garment_weights import fill  # imported when called\n    return fill(Net())\n")
    path_before = list(sys.path)
    with pytest.raises(ValueError, match="name the function that builds the model, as path/to/file.py:factory"):
        build(str(source))
    model = build(f"{source}:build")
    assert [type(m).__name__ for m in model][:1] == ["Conv2d"] and model(torch.randn(1, 1, 8, 8)).shape == (1, 3)
    assert sys.path == path_before  # the file's folder was on the path only meanwhile


def test_torch_checkpoints_load_weights_only_and_pickles_need_opt_in(tmp_path):
    reference = build("resnet20", num_classes=10, in_channels=1)
    torch.save({"state_dict": reference.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    loaded = build("resnet20", num_classes=10, in_channels=1, weights=str(tmp_path / "ckpt.pt"))
    x = torch.randn(1, 1, 28, 28)
    assert torch.equal(reference.eval()(x), loaded.eval()(x))
    torch.save(reference, tmp_path / "whole.pt")  # a pickled module, not plain weights
    with pytest.raises(ValueError, match="allow pickles"):
        build("resnet20", num_classes=10, in_channels=1, weights=str(tmp_path / "whole.pt"))
    trusted = build("resnet20", num_classes=10, in_channels=1, weights=str(tmp_path / "whole.pt"), allow_pickle=True)
    assert torch.equal(reference(x), trusted.eval()(x))


def test_mismatched_weights_name_the_keys(tmp_path):
    save_file(build("resnet20", in_channels=1).state_dict(), str(tmp_path / "r20.safetensors"))
    with pytest.raises(ValueError, match="do not fit"):
        build("resnet56", in_channels=1, weights=str(tmp_path / "r20.safetensors"))


def test_adapt_changes_stem_and_head_after_loading(tmp_path):
    source = build("resnet20", num_classes=10, in_channels=3)
    save_file(source.state_dict(), str(tmp_path / "rgb.safetensors"))
    adapted = build("resnet20", num_classes=4, in_channels=1, weights=str(tmp_path / "rgb.safetensors"), adapt=True)
    assert adapted.conv1.in_channels == 1 and adapted.fc.out_features == 4
    assert torch.equal(adapted.layer2[0].conv1.weight, source.layer2[0].conv1.weight)
    # A grey image fed to the averaged stem equals the grey image repeated over RGB in the original stem.
    grey = torch.randn(1, 1, 16, 16)
    assert torch.allclose(adapted.conv1(grey), source.conv1(grey.repeat(1, 3, 1, 1)), atol=1e-5)


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(KeyError, match="resnet56"):
        build("resnet57")


def test_weights_reload_into_a_module_that_checks_its_state_version(tmp_path):
    # torchvision's MNASNet refuses a state dict without its version metadata, which safetensors files do not keep.
    from fewprune.bench.coverage import check_model

    model = build("torchvision:mnasnet0_5", num_classes=10).eval()
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    fresh = build("torchvision:mnasnet0_5", num_classes=10, weights=str(tmp_path / "w.safetensors")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))
    row = check_model("torchvision:mnasnet0_5", (3, 64, 64))  # prune, save and load it back
    assert row["status"] == "ok", row


class _Interrupted(Exception):
    pass


def test_training_resumes_from_its_epoch_checkpoint_to_the_uninterrupted_result(tiny_fmnist, tmp_path):
    from fewprune import data
    from fewprune.models.recipes import Recipe, fit

    train = data.load("fashion-mnist", "train", root=tiny_fmnist)
    recipe = Recipe("resnet20", "fashion-mnist", epochs=3, batch_size=16, lr=0.05, warmup_epochs=0.5, bf16=False)

    def fresh():
        torch.manual_seed(0)
        return build("resnet20", num_classes=10, in_channels=1)

    whole = fresh()
    fit(whole, train, recipe, log=lambda *_: None)
    stopped, calls = fresh(), [0]

    def interrupt(*_):  # in the third epoch (three steps an epoch): the checkpoint holds two
        calls[0] += 1
        if calls[0] == 8:
            raise _Interrupted

    handle = stopped.register_forward_pre_hook(interrupt)
    with pytest.raises(_Interrupted):
        fit(stopped, train, recipe, tmp_path / "run.pt", log=lambda *_: None)
    handle.remove()
    assert torch.load(tmp_path / "run.pt", weights_only=True)["epoch"] == 2
    assert checkpoint_progress(tmp_path / "run.pt") == (2, 3)
    messages = []
    resumed = fresh()
    fit(resumed, train, recipe, tmp_path / "run.pt", log=messages.append)
    assert messages[0].startswith("resuming model from epoch 2")
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in whole.state_dict().items())
    with pytest.raises(ValueError, match="checkpoint of another run"):  # other settings do not resume it
        fit(fresh(), train, Recipe("resnet20", "fashion-mnist", epochs=4, batch_size=16, bf16=False),
            tmp_path / "run.pt", log=lambda *_: None)
