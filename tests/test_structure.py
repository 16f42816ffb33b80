import copy
import json

import pytest
import torch
from torch import nn

from fewprune import metrics
from fewprune.models import build
from fewprune.structure import Plan, PruningSpace, find_blocks, masked_copy
from fewprune.structure.graph import dependency_graph
from fewprune.structure.groups import output_layers

ARCHITECTURES = [
    ("resnet20", (1, 28, 28)), ("resnet56", (1, 28, 28)), ("vgg16", (1, 28, 28)),
    ("mobilenetv2", (1, 28, 28)), ("vit", (1, 28, 28)),
    ("torchvision:resnet18", (3, 64, 64)), ("torchvision:mobilenet_v2", (3, 64, 64)),
    ("torchvision:densenet121", (3, 64, 64)),
    ("torchvision:shufflenet_v2_x0_5", (3, 64, 64)),  # traced by islands: see below
]


def random_plan(space: PruningSpace, input_shape, fraction=0.5, seed=0, blocks=()) -> Plan:
    gen = torch.Generator().manual_seed(seed)
    removed = {}
    for g in space.prunable:
        count = min(int(g.size * fraction), g.size - g.min_keep)
        removed[g.id] = sorted(torch.randperm(g.size, generator=gen)[:count].tolist())
    return Plan(input_shape=input_shape, removed=removed, kinds={g.id: g.kind for g in space.groups},
                sizes={g.id: g.size for g in space.groups}, dropped_blocks=list(blocks))


def randomise_bn(model: nn.Module, seed=0):
    """Give BN layers non-trivial statistics so masking mistakes cannot hide behind zeros."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


@pytest.mark.parametrize("spec,shape", ARCHITECTURES)
def test_pruned_model_equals_zero_masked_teacher(spec, shape):
    model = randomise_bn(build(spec, num_classes=10, in_channels=shape[0], image_size=shape[1]).eval())
    x = torch.randn(2, *shape)
    space = PruningSpace(model, x[:1])
    assert space.prunable, f"{spec}: nothing prunable"
    plan = random_plan(space, shape)
    student = plan.apply(copy.deepcopy(model)).eval()
    masked = masked_copy(model, plan, space.groups).eval()
    with torch.no_grad():
        s, m = student(x), masked(x)
    assert torch.allclose(s, m, atol=1e-5, rtol=1e-4), f"{spec}: max diff {(s - m).abs().max()}"
    assert metrics.params(student) < metrics.params(model)
    # The analytic cost model agrees with counting the real student.
    keep = space.keep_counts(plan.removed)
    assert metrics.macs(student, x[:1]) == pytest.approx(space.cost.macs(keep), rel=1e-6)
    assert metrics.params(student) == pytest.approx(space.cost.params(keep), rel=1e-6)


@pytest.mark.parametrize("spec", ["resnet20", "vit"])
def test_a_silencer_gives_each_plan_what_a_masked_copy_gives_and_leaves_the_model(spec):
    from fewprune.structure import Silencer

    model = randomise_bn(build(spec, num_classes=10, in_channels=1, image_size=28).eval())
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    silencer = Silencer(model, space.groups)
    for seed, fraction in [(0, 0.5), (1, 0.2), (0, 0.0), (2, 0.7)]:  # each call starts from the model again
        plan = random_plan(space, (1, 28, 28), fraction=fraction, seed=seed)
        with torch.no_grad():
            assert torch.equal(silencer(plan).eval()(x), masked_copy(model, plan, space.groups).eval()(x))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_vit_heads_are_pruned_whole():
    model = build("vit", num_classes=10, in_channels=1, image_size=28).eval()
    space = PruningSpace(model, torch.randn(1, 1, 28, 28))
    heads = [g for g in space.prunable if g.kind == "heads"]
    mlp = [g for g in space.prunable if g.kind == "channels"]
    assert len(heads) == 6 and all(g.size == 4 for g in heads)
    assert len(mlp) == 6 and all(g.id.endswith("mlp.fc1") for g in mlp)
    plan = random_plan(space, (1, 28, 28))
    student = plan.apply(copy.deepcopy(model))
    assert student.blocks[0].attn.num_heads == 2
    assert student.blocks[0].attn.qkv.out_features == 3 * 2 * 32


class WidthStoringAttention(nn.Module):
    """timm's Attention layout: the all-heads width stored as ``attn_dim`` and read by forward, per-head q/k norms,
    and optionally a gate at the attention's width (which no head slicing can follow)."""

    def __init__(self, dim=32, num_heads=4, gated=False):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.attn_dim = num_heads * self.head_dim
        self.qkv, self.proj = nn.Linear(dim, 3 * self.attn_dim), nn.Linear(self.attn_dim, dim)
        self.q_norm, self.k_norm = nn.LayerNorm(self.head_dim), nn.LayerNorm(self.head_dim)
        self.gate = nn.Linear(dim, self.attn_dim) if gated else None

    def forward(self, x):
        b, t = x.shape[0], x.shape[1]
        q, k, v = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = torch.nn.functional.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        out = out.transpose(1, 2).reshape(b, t, self.attn_dim)
        return self.proj(out * torch.sigmoid(self.gate(x)) if self.gate is not None else out)


class TokenNet(nn.Module):
    def __init__(self, gated=False):
        super().__init__()
        self.embed, self.attn = nn.Linear(12, 32), WidthStoringAttention(gated=gated)
        self.fc1, self.fc2, self.head = nn.Linear(32, 64), nn.Linear(64, 32), nn.Linear(32, 10)

    def forward(self, x):
        tokens = self.embed(x.flatten(2).transpose(1, 2))
        tokens = tokens + self.attn(tokens)
        tokens = tokens + self.fc2(torch.relu(self.fc1(tokens)))
        return self.head(tokens.mean(1))


def test_an_attention_storing_its_width_is_pruned_by_heads_and_the_width_follows():
    model, x = TokenNet().eval(), torch.randn(2, 12, 4, 4)
    space = PruningSpace(model, x[:1])
    heads = next(g for g in space.prunable if g.kind == "heads")
    plan = Plan((12, 4, 4), {heads.id: [1, 2]}, {g.id: g.kind for g in space.groups}, {g.id: g.size for g in space.groups})
    student = plan.apply(copy.deepcopy(model))
    assert (student.attn.num_heads, student.attn.attn_dim, student.attn.head_dim) == (2, 16, 8)
    with torch.no_grad():
        assert torch.allclose(student(x), masked_copy(model, plan, space.groups)(x), atol=1e-5)


def test_an_attention_with_a_layer_at_its_width_is_kept_whole_with_the_reason():
    space = PruningSpace(TokenNet(gated=True).eval(), torch.randn(1, 12, 4, 4))
    assert not any(g.kind == "heads" for g in space.groups)
    qkv = next(g for g in space.groups if any(sl.module == "attn.qkv" and sl.role == "out" for sl in g.slices))
    assert qkv.protected and qkv.reason.endswith("belongs to attention attn, not pruned by heads: gate cannot be "
                                                 "sliced by head")
    assert any(g.id == "fc1" for g in space.prunable)  # the rest of the model still prunes


def test_blocks_are_found_generically():
    resnet = build("resnet20", in_channels=1)
    assert find_blocks(resnet, torch.randn(1, 1, 28, 28)) == [
        "layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer3.1", "layer3.2"]
    mobilenet = build("mobilenetv2", in_channels=1)
    found = find_blocks(mobilenet, torch.randn(1, 1, 28, 28))
    assert found == [f"features.{i}" for i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)]
    assert all(mobilenet.get_submodule(b).use_res_connect for b in found)
    assert len(find_blocks(build("vit", in_channels=1, image_size=28), torch.randn(1, 1, 28, 28))) == 6
    tv = build("torchvision:resnet18")
    assert find_blocks(tv, torch.randn(1, 3, 64, 64)) == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]


def test_dropping_a_zero_branch_block_changes_nothing():
    model = randomise_bn(build("resnet20", in_channels=1)).eval()
    x = torch.randn(2, 1, 28, 28)
    space = PruningSpace(model, x[:1])
    plan = Plan(input_shape=(1, 28, 28), dropped_blocks=["layer2.1"])
    with torch.no_grad():
        model.layer2[1].bn2.weight.zero_()
        model.layer2[1].bn2.bias.zero_()
        expected = model(x)
        got = plan.apply(copy.deepcopy(model))(x)
    assert torch.allclose(expected, got, atol=1e-6)
    assert space.cost.macs({}, ("layer2.1",)) < space.cost.base_macs


def test_plan_json_round_trip_and_replay():
    model = build("resnet20", in_channels=1).eval()
    space = PruningSpace(model, torch.randn(1, 1, 28, 28))
    plan = random_plan(space, (1, 28, 28), blocks=())
    again = Plan.from_json(plan.to_json())
    assert again == plan
    json.loads(plan.to_json())  # plain JSON
    a, b = plan.apply(copy.deepcopy(model)), again.apply(copy.deepcopy(model))
    x = torch.randn(1, 1, 28, 28)
    assert torch.equal(a(x), b(x))
    rows = plan.summary()
    assert rows and all(before > after for _, _, before, after in rows)


def test_frozen_model_is_still_pruned_and_stays_frozen():
    model = build("resnet20", in_channels=1).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    space = PruningSpace(model, torch.randn(1, 1, 28, 28))
    assert len(space.prunable) == 12
    student = random_plan(space, (1, 28, 28)).apply(model)
    assert student.layer1[0].conv1.out_channels == 8
    assert not any(p.requires_grad for p in student.parameters())


def test_protect_features_keeps_the_head_input_width():
    model = build("resnet20", in_channels=1)
    free = PruningSpace(model, torch.randn(1, 1, 28, 28))
    kept = PruningSpace(model, torch.randn(1, 1, 28, 28), protect_features=True)
    assert len(kept.prunable) == len(free.prunable) - 1
    feature_group = next(g for g in kept.groups if g.protected and g.id != "fc")
    assert feature_group.reason == ("fc reads the pre-pooling features (or the head's own channels after them), "
                                    "kept for feature mimicking")
    assert any(s.module == "fc" and s.role == "in" for s in feature_group.slices)


def test_plan_refuses_a_mismatched_model():
    small = build("resnet20", in_channels=1)
    plan = random_plan(PruningSpace(small, torch.randn(1, 1, 28, 28)), (1, 28, 28))
    plan.sizes[next(iter(plan.removed))] += 1
    with pytest.raises(ValueError, match="plan expects"):
        plan.apply(build("resnet20", in_channels=1))


def test_grouped_convolutions_are_protected_with_a_reason():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, groups=4),
                          nn.ReLU(), nn.Conv2d(32, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    space = PruningSpace(model, torch.randn(1, 3, 12, 12))
    reasons = {g.id: g.reason for g in space.groups if g.protected}
    assert "grouped convolution" in reasons["0"] and "grouped convolution" in reasons["3"]
    assert [g.id for g in space.prunable] == ["5"]


def test_eval_mode_gives_every_module_back_its_own_mode_even_after_an_error():
    from fewprune.modes import eval_mode

    model = build("resnet20", num_classes=10, in_channels=1).train()
    for m in model.modules():  # a training model with frozen BN statistics: mixed modes
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    before = {n: m.training for n, m in model.named_modules()}
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("interrupted")
    assert {n: m.training for n, m in model.named_modules()} == before


@pytest.mark.parametrize("spec,head", [("torchvision:squeezenet1_0", "classifier.1"), ("torchvision:resnet18", "fc"),
                                       ("resnet20", "fc"), ("vit", "head")])
def test_the_layer_producing_the_output_is_found_and_protected_whatever_its_type(spec, head):
    # SqueezeNet's classifier is a 1×1 conv followed by ReLU and pooling: "the last Linear" would miss it.
    shape = (3, 64, 64) if spec.startswith("torchvision") else (1, 28, 28)
    model = build(spec, num_classes=10, in_channels=shape[0], image_size=shape[1]).eval()
    x = torch.randn(1, *shape)
    assert output_layers(model, dependency_graph(model, x)) == {head}
    space = PruningSpace(model, x)
    owning = [g for g in space.groups if any(s.module == head and s.role == "out" for s in g.slices)]
    assert owning and all(g.protected for g in owning)
    student = random_plan(space, shape).apply(copy.deepcopy(model)).eval()
    with torch.no_grad():
        assert student(x).shape == (1, 10)


@pytest.mark.parametrize("spec,shape", [("torchvision:densenet121", (3, 64, 64)), ("vgg16", (1, 28, 28)),
                                        ("vit", (1, 28, 28)), ("mobilenetv2", (1, 28, 28))])
def test_cost_model_equals_counts_when_every_group_loses_a_different_share(spec, shape):
    # A DenseNet conv reads the concatenation of many groups: each group's share of its input
    # must be costed on its own (uniform shares hid a bug that assigned the whole input to one group).
    model = build(spec, num_classes=10, in_channels=shape[0], image_size=shape[1]).eval()
    x = torch.randn(1, *shape)
    space = PruningSpace(model, x)
    gen = torch.Generator().manual_seed(1)
    removed = {}
    for g in space.prunable:
        count = min(int(g.size * float(torch.rand(1, generator=gen)) * 0.8), g.size - g.min_keep)
        removed[g.id] = sorted(torch.randperm(g.size, generator=gen)[:count].tolist())
    plan = Plan(input_shape=shape, removed=removed, kinds={g.id: g.kind for g in space.groups},
                sizes={g.id: g.size for g in space.groups})
    student = plan.apply(copy.deepcopy(model))
    keep = space.keep_counts(removed)
    assert metrics.macs(student, x) == pytest.approx(space.cost.macs(keep), rel=1e-9)
    assert metrics.params(student) == pytest.approx(space.cost.params(keep), rel=1e-9)


def test_memory_guard_turns_exhaustion_into_a_clear_error_and_restores_the_limit():
    import resource

    from fewprune.structure.graph import memory_guard

    available = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable:"))
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(MemoryError, match="grouping a test model ran out of memory .*; too many reshapes"):
        with memory_guard("grouping a test model", "too many reshapes"):
            bytearray(int(0.9 * available))  # address space only: the pages are never touched
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    with memory_guard("a small job"):
        assert len(bytearray(1 << 20)) == 1 << 20
    with pytest.raises(MemoryError, match="an island"):  # ``most`` caps it below what is available
        with memory_guard("an island", most=64 << 20):
            bytearray(256 << 20)
    assert resource.getrlimit(resource.RLIMIT_AS) == before


class ShuffleUnit(nn.Module):
    """A ShuffleNet unit between two convs: torch-pruning cannot trace it, and no part has inner channels."""

    def __init__(self):
        super().__init__()
        self.first, self.branch, self.last = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(8, 10, 1)

    def forward(self, x):
        kept, changed = self.first(x).chunk(2, dim=1)
        y = torch.cat([kept, self.branch(changed)], dim=1)
        b, c, h, w = y.shape
        y = y.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)  # the channel shuffle
        return self.last(y).mean((2, 3))


def test_a_model_with_nothing_traceable_to_prune_is_refused_by_name(monkeypatch):
    from torch_pruning.dependency import index_mapping

    from fewprune.structure.graph import UnsupportedModel

    def broken(graph):  # torch-pruning's tracer failing on every part, as it fails on ShuffleNetV2 as a whole
        return 1 // 0

    monkeypatch.setattr(index_mapping, "update_index_mapping", broken)
    with pytest.raises(UnsupportedModel, match="channel dependencies of ShuffleUnit: ZeroDivisionError.* in "):
        PruningSpace(ShuffleUnit().eval(), torch.randn(1, 3, 16, 16))


def test_a_model_torch_pruning_cannot_trace_whole_is_pruned_inside_its_islands():
    # ShuffleNetV2's channel shuffle makes torch-pruning divide by zero; its branches trace on their own.
    model = randomise_bn(build("torchvision:shufflenet_v2_x0_5", num_classes=10).eval())
    before = {n: p.clone() for n, p in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    space = PruningSpace(model, x[:1])
    assert space.islands == [f"stage{s}.{u}" for s, units in ((2, 4), (3, 8), (4, 4)) for u in range(units)]
    # Only each unit's inner width (its second branch's depthwise channels) is prunable.
    assert [g.id for g in space.prunable] == [f"{i}.branch2.3" for i in space.islands]
    assert any("entering or leaving" in g.reason for g in space.groups if g.protected)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    plan = random_plan(space, (3, 64, 64))
    plan.islands = space.islands
    reloaded = Plan.from_json(plan.to_json())
    assert reloaded.islands == space.islands
    fresh = build("torchvision:shufflenet_v2_x0_5", num_classes=10).eval()
    fresh.load_state_dict(before)
    student = reloaded.apply(fresh).eval()
    with torch.no_grad():
        assert torch.allclose(student(x), masked_copy(model, plan, space.groups).eval()(x), atol=1e-5, rtol=1e-4)
    assert Plan.from_dict({k: v for k, v in plan.to_dict().items() if k != "islands"}).islands is None


class ConvThenTokens(nn.Module):
    """A conv stem whose output goes channels-last into a linear layer (Swin's patch embedding and first MLP)."""

    def __init__(self):
        super().__init__()
        self.conv, self.linear = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 6)

    def forward(self, x):
        return self.linear(self.conv(x).permute(0, 2, 3, 1))


def test_island_boundaries_sit_on_the_channel_dimension_each_side_uses():
    from fewprune.structure.islands import Bounded, record_examples

    model = nn.Sequential(ConvThenTokens()).eval()
    examples = record_examples(model, torch.randn(1, 3, 5, 7))
    island = examples["0"]
    assert (island.channel_dim, island.output_channel_dim) == (1, -1)
    bounded = Bounded(model[0], island)
    assert isinstance(bounded.enter, nn.Conv2d) and bounded.enter.in_channels == 3
    assert isinstance(bounded.leave, nn.Linear) and bounded.leave.in_features == 6
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
