import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from fewprune import data, metrics
from fewprune.models import build
from fewprune.models.vit import SmallViT


def conv_macs(cin, cout, k, hout, wout, groups=1):
    return cout * (cin // groups) * k * k * hout * wout


def test_macs_of_a_conv_net_match_the_analytic_count():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )
    expected = conv_macs(3, 8, 3, 16, 16) + conv_macs(8, 8, 3, 8, 8, groups=4) + conv_macs(8, 16, 1, 8, 8) + 16 * 10
    assert metrics.macs(model, torch.randn(1, 3, 16, 16)) == expected
    assert metrics.params(model) == sum(p.numel() for p in model.parameters())


# Which attention kernel a CPU runs depends on the machine (the flash kernel on one, the math path on another):
# both are forced here, so the count is checked whichever this machine would pick.
@pytest.mark.parametrize("backend", [SDPBackend.MATH, SDPBackend.FLASH_ATTENTION], ids=["math", "flash"])
def test_macs_of_a_vit_include_fused_attention(backend):
    dim, depth, heads, mlp, image, patch, classes = 32, 2, 4, 64, 16, 4, 10
    model = SmallViT(classes, 3, image, patch, dim, depth, heads, mlp / dim)
    t = (image // patch) ** 2 + 1
    per_block = t * dim * 3 * dim + t * dim * dim + 2 * t * dim * mlp + 2 * t * t * dim  # qkv, proj, mlp, q·kᵀ and a·v
    expected = depth * per_block + conv_macs(3, dim, patch, image // patch, image // patch) + dim * classes
    with sdpa_kernel(backend):
        assert metrics.macs(model, torch.randn(1, 3, image, image)) == expected


def test_macs_are_per_example_batch_and_leave_mode():
    model = build("resnet20", in_channels=1).train()
    one = metrics.macs(model, torch.randn(1, 1, 28, 28))
    assert metrics.macs(model, torch.randn(4, 1, 28, 28)) == 4 * one
    assert model.training


def test_latency_reports_median_and_spread():
    model = nn.Linear(8, 8)
    result = metrics.latency(model, torch.randn(4, 8), repeats=7)
    assert result["repeats"] == 7 and result["batch_size"] == 4 and result["threads"] >= 1
    assert result["p25_ms"] <= result["median_ms"] <= result["p75_ms"]


class Constant(nn.Module):
    """Always predicts class 1."""

    def forward(self, x):
        return torch.tensor([[0.0, 1.0, 0.0]]).expand(len(x), 3)


def test_accuracy_and_per_class_accuracy():
    labels = torch.tensor([0, 1, 1, 2, 1])
    info = data.DatasetInfo("toy", ("a", "b", "c"), (1, 2, 2), (0.0,), (1.0,))
    ds = data.ImageTensorDataset(torch.zeros(5, 1, 2, 2, dtype=torch.uint8), labels, info)
    result = metrics.evaluate(Constant(), ds, batch_size=2, progress=False)
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["per_class"] == [0.0, 1.0, 0.0] and result["samples"] == 5


def test_thread_counts_read_as_words():
    from fewprune.metrics import threads_text

    assert (threads_text(1), threads_text(2), threads_text("?")) == ("1 thread", "2 threads", "? threads")
    assert threads_text(1, "CPU thread") == "1 CPU thread"
