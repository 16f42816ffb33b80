"""The row-wise memo of a frozen teacher's outputs: same values, fewer forward passes."""

import torch
from torch import nn

from fewprune.models.features import outputs_of
from fewprune.models.memo import RowMemo


class CountingNet(nn.Module):
    """A small eval-mode conv net that counts the rows it has computed."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4, 3)
        self.rows = 0
        self.eval()

    def forward(self, x):
        self.rows += len(x)
        return self.head(self.features(x).mean((2, 3)))


def test_memo_matches_the_function_and_computes_each_row_once():
    net = CountingNet()
    x = torch.randn(6, 1, 8, 8)
    memo = RowMemo(net)
    first = memo(x)
    torch.testing.assert_close(first, net(x), rtol=0, atol=1e-6)
    net.rows = 0
    again = memo(x[[5, 0, 3]])
    assert net.rows == 0
    assert torch.equal(again, first[[5, 0, 3]])
    assert memo.stats()["hits"] == 3 and memo.stats()["misses"] == 6


def test_a_row_repeated_within_a_batch_is_computed_once():
    net = CountingNet()
    x = torch.randn(2, 1, 8, 8)
    memo = RowMemo(net)
    out = memo(x[[0, 1, 0, 0]])
    assert net.rows == 2
    assert torch.equal(out[0], out[2]) and torch.equal(out[0], out[3])


def test_dict_outputs_are_memoised_per_name():
    net = CountingNet()
    x = torch.randn(4, 1, 8, 8)
    memo = RowMemo(outputs_of(net, "features", "head"))
    out = memo(x)
    with torch.no_grad():
        expected = outputs_of(net, "features", "head")(x)
    assert set(out) == {"features", "head"}
    for name in out:
        torch.testing.assert_close(out[name], expected[name], rtol=0, atol=1e-6)
    net.rows = 0
    assert torch.equal(memo(x[1:3])["features"], out["features"][1:3]) and net.rows == 0


def test_past_its_budget_the_memo_computes_new_rows_every_time():
    net = CountingNet()
    x = torch.randn(3, 1, 8, 8)
    memo = RowMemo(net, max_bytes=0)
    torch.testing.assert_close(memo(x), net(x), rtol=0, atol=1e-6)
    net.rows = 0
    memo(x)
    assert net.rows == 3 and memo.stored_bytes == 0


def test_disabled_memo_calls_the_function_without_gradients():
    net = CountingNet()
    x = torch.randn(3, 1, 8, 8)
    memo = RowMemo(net, enabled=False)
    out = memo(x)
    memo(x)
    assert net.rows == 6 and not out.requires_grad
    assert memo.stats() == {"enabled": False, "hits": 0, "misses": 6, "stored_bytes": 0}
