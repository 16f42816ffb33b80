"""Devices: a requested device is checked before any work is spent; a compression runs where it is asked to and
leaves the teacher where it was, unchanged.

The parametrised tests run on every device this machine has: the CPU, and a CUDA GPU where one is visible (there
they also check the GPU's result against the CPU's). CI has no GPU; run ``pytest tests/test_devices.py`` on a
machine with one to check the GPU path.
"""

from dataclasses import replace

import pytest
import torch

import fewprune as fp
from fewprune.cli import main
from fewprune.devices import model_device, on_device, resolve_device
from fewprune.models import build
from model_state import same, snapshot

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# every stage that computes on tensors: data-free and data-driven criteria, step-wise and learned allocations,
# block dropping, closed-form and trained recoveries, the mixing augmentations
METHODS = ["l1+kd", "l1+fskd+mir", "l1+cd", "l1+lsq", "taylor+bn", "lrp", "cswap", "asca", "cma+mir-blocks", "cma",
           "cma+cutmix", "cma+mixup", "practise", "block-residual+mir"]


def quick(method: str) -> fp.methods.Method:
    """The method with every training loop cut to a few steps (these tests check where things run)."""
    recipe = fp.methods.with_schedule(method, iterations=3, batch_size=8)
    if recipe.criterion == "asca":
        recipe = replace(recipe, criterion_options={**recipe.criterion_options, "iterations": 4})
    if recipe.criterion == "practise":
        from fewprune.recovery.practise import SCORING_SCHEDULE

        recipe = replace(recipe, criterion_options={"schedule": replace(SCORING_SCHEDULE, iterations=2, batch_size=8)})
    return recipe


def samples(n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_a_requested_device_is_named_and_checked_before_any_work():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="'gpu0' is not a device torch knows"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="fewprune runs on cpu or cuda, not meta"):
        resolve_device("meta")
    if torch.cuda.is_available():
        assert resolve_device("cuda") == torch.device("cuda", torch.cuda.current_device())
        with pytest.raises(ValueError, match=r"only \d+ CUDA GPU\(s\) are visible"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="'cuda': no CUDA GPU is visible to torch"):
            resolve_device("cuda")


def test_a_models_device_is_where_its_parameters_are():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    assert model_device(model) == torch.device("cpu") and on_device(model, torch.device("cpu"))
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # nothing to hold: the CPU
    elsewhere = torch.nn.Linear(2, 2, device="meta")  # a device other than the CPU, on any machine
    assert model_device(elsewhere) == torch.device("meta") and not on_device(elsewhere, torch.device("cpu"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
def test_compress_runs_on_the_device_asked_and_leaves_the_teacher_where_it_was(method, device, monkeypatch):
    from fewprune.recovery import practise

    # PRACTISE divides by each block's measured time: still timed (on the device), but read as one constant, so
    # the clock of a busy machine cannot change which blocks the two runs drop
    timed = practise.block_latency
    monkeypatch.setattr(practise, "block_latency", lambda *args, **kwargs: (timed(*args, **kwargs), 1e-3)[1])
    teacher = build("resnet20", num_classes=10, in_channels=1, image_size=28).eval()
    before = snapshot(teacher)
    x, y = samples()
    target = fp.Target(blocks=2) if fp.methods.get(method).granularity == "blocks" else fp.Target(macs=0.5)
    result = fp.compress(teacher, (x, y), method=quick(method), target=target, progress=False, device=device)
    same(before, snapshot(teacher))
    assert on_device(teacher, torch.device("cpu"))  # a copy moved, not the caller's teacher
    assert model_device(result.student).type == device and result.report["device"].startswith(device)
    with torch.no_grad():
        student_logits = result.student(x.to(device)).cpu()
    assert torch.isfinite(student_logits).all()
    on_cpu = fp.compress(teacher, (x, y), method=quick(method), target=target, progress=False)
    assert on_cpu.report["device"] == "cpu"
    if device == "cpu":  # the default is the teacher's device: the same computation, bit for bit
        assert result.plan.to_dict() == on_cpu.plan.to_dict()
        assert torch.equal(student_logits, on_cpu.student(x))
    else:  # a GPU rounds differently: the same structure, and the student's outputs to float tolerance
        assert result.plan.dropped_blocks == on_cpu.plan.dropped_blocks
        assert fp.metrics.macs(result.student, x[:1]) == pytest.approx(fp.metrics.macs(on_cpu.student, x[:1]), rel=0.02)


@pytest.mark.parametrize("device", DEVICES)
def test_a_student_compressed_on_a_device_saves_and_reloads_on_the_cpu(device, tmp_path):
    teacher = build("resnet20", num_classes=10, in_channels=1, image_size=28).eval()
    x, y = samples()
    result = fp.compress(teacher, (x, y), method=quick("l1+kd"), progress=False, device=device)
    fp.save(result, tmp_path / "out", onnx_input=x[:1])
    student = fp.load(tmp_path / "out", architecture=build("resnet20", num_classes=10, in_channels=1, image_size=28))
    assert on_device(student, torch.device("cpu"))
    with torch.no_grad():
        reloaded, there = student(x), result.student(x.to(device)).cpu()
    # the same weights; a GPU's convolutions round to TF32 by default (torch's cudnn.allow_tf32)
    assert torch.allclose(reloaded, there, atol=1e-5 if device == "cpu" else 2e-2 * float(reloaded.abs().max()))
    measured = fp.metrics.measure(result.student, None, x[:1], latency_batches=(1,))
    assert measured["macs"] == fp.metrics.macs(student, x[:1])
    assert measured["latency"]["batch1"].get("device", "cpu").startswith(device)


def test_prune_eval_and_train_name_a_missing_gpu_and_write_nothing(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: there is nothing missing to name")
    out = tmp_path / "out"
    code = main(["prune", "--model", "resnet20", "--samples", "10", "--device", "cuda", "--out", str(out)])
    assert code == 2 and "no CUDA GPU is visible" in capsys.readouterr().err
    assert not out.exists()
    for argv in (["eval", "--model", "resnet20", "--device", "cuda"],
                 ["train", "resnet20-fmnist", "--out", str(out), "--device", "cuda"]):
        assert main(argv) == 2 and "no CUDA GPU is visible" in capsys.readouterr().err, argv
        assert not out.exists()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec,shape,method", [
    ("vit", (1, 28, 28), "l1+mir"),  # attention heads removed by fewprune's own surgery
    ("torchvision:lraspp_mobilenet_v3_large", (1, 64, 64), "l1+kd"),  # a dense prediction, its frozen decoder
])
def test_heads_and_dense_predictions_compress_on_the_device_too(spec, shape, method, device):
    teacher = build(spec, num_classes=10, in_channels=shape[0], image_size=shape[1]).eval()
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(0))
    target = fp.Target(channels=0.3)
    result = fp.compress(teacher, x, method=quick(method), target=target, progress=False, device=device)
    assert model_device(result.student).type == device and on_device(teacher, torch.device("cpu"))
    if spec == "vit":
        assert any(result.plan.kinds[g] == "heads" for g in result.plan.removed)
    with torch.no_grad():
        out = fp.models.outputs.main_output(result.student(x.to(device)))
    assert torch.isfinite(out).all() and out.shape[0] == 8
    if device == "cpu":
        on_cpu = fp.compress(teacher, x, method=quick(method), target=target, progress=False)
        assert result.plan.to_dict() == on_cpu.plan.to_dict()
