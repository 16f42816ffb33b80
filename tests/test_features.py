import torch
from torch import nn

from fewprune.models.features import module_io


class SharedMiddle(nn.Module):
    """``a``, then ``b`` twice (shared weights), then ``c``."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.c(self.b(torch.relu(self.b(self.a(x)))))


def test_module_io_ends_the_forward_after_a_module_that_runs_once_and_gives_what_a_whole_forward_gives():
    model, x = SharedMiddle().eval(), torch.randn(10, 1, 6, 6)
    whole = {}  # each module's last call in a whole forward
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: whole.__setitem__(n, (i[0], o)))
             for n in "abc"]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    calls_of_c = []
    counter = model.c.register_forward_hook(lambda *args: calls_of_c.append(1))
    got_a = [(xs, y) for _, xs, y in module_io(model, ["a"], x, batch_size=4)]
    assert len(calls_of_c) == 1  # the one-image probe only: every batch stopped at `a`
    got_b = [(xs, y) for _, xs, y in module_io(model, ["b"], x, batch_size=4)]
    assert len(calls_of_c) == 1 + 1 + 3  # `b` runs twice per forward: its batches ran whole, to its last call
    counter.remove()
    for got, name in ((got_a, "a"), (got_b, "b")):
        assert torch.equal(torch.cat([xs for xs, _ in got]), whole[name][0])
        assert torch.equal(torch.cat([y for _, y in got]), whole[name][1])
    assert not any(m._forward_hooks for m in model.modules())
