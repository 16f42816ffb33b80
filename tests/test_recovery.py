import copy

import pytest
import torch

import fewprune as fp
from fewprune.criteria import Batch
from fewprune.models import build
from fewprune.models.features import modules_after
from fewprune.recovery import Schedule, recoveries


def model_and_batch(name="resnet20", n=16):
    model = build(name, num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(n, 1, 28, 28)
    return model, Batch(x, torch.randint(0, 10, (n,)), model)


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "vit"])
def test_mir_on_a_student_identical_to_the_teacher_changes_nothing(name):
    teacher, batch = model_and_batch(name)
    student = copy.deepcopy(teacher)
    stats = recoveries.get("mir")(student, teacher, batch,
                                  schedule=Schedule(iterations=5, batch_size=8, weight_decay=0.0, bn="frozen"),
                                  progress=False)
    assert stats["first_loss"] == 0 and stats["last_loss"] == 0
    for (k, a), b in zip(teacher.state_dict().items(), student.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("name,head", [("resnet20", ["fc"]), ("vgg16", ["classifier"]), ("vit", ["head"]),
                                       ("mobilenetv2", ["classifier.1"])])
def test_mir_never_updates_the_frozen_head(name, head):
    teacher, batch = model_and_batch(name)
    assert modules_after(teacher, fp.models.feature_layer(teacher), batch.images) == head
    result = fp.compress(teacher, (batch.images, batch.labels), target=fp.Target(macs=0.3),
                         method=fp.methods.Method("l1", recovery="mir", protect_features=True,
                                                  recovery_options={"schedule": Schedule(iterations=4, batch_size=8)}),
                         progress=False)
    student_head = result.student.get_submodule(head[0])
    teacher_head = teacher.get_submodule(head[0])
    assert torch.equal(student_head.weight, teacher_head.weight) and torch.equal(student_head.bias, teacher_head.bias)
    assert all(p.requires_grad for p in result.student.parameters())  # flags restored
    assert result.report["recovery"]["first_loss"] > 0  # something was learned elsewhere


def test_mir_methods_keep_the_feature_width():
    teacher, batch = model_and_batch()
    assert fp.methods.get("l1+mir").protect_features and fp.methods.get("taylor@global+mir").protect_features
    result = fp.compress(teacher, (batch.images, batch.labels), method="l1", target=fp.Target(macs=0.5),
                         progress=False)
    assert result.student.fc.in_features < 64  # plain L1 may narrow the features...
    from dataclasses import replace

    mir = replace(fp.methods.get("l1+mir"), recovery_options={"schedule": Schedule(iterations=2, batch_size=8)})
    kept = fp.compress(teacher, (batch.images, batch.labels), method=mir, target=fp.Target(macs=0.5), progress=False)
    assert kept.student.fc.in_features == 64  # ...MiR keeps them


def test_bn_recalibration_only_touches_running_statistics():
    teacher, batch = model_and_batch()
    student = copy.deepcopy(teacher)
    recoveries.get("bn")(student, teacher, batch, progress=False)
    for (k, a), b in zip(teacher.state_dict().items(), student.state_dict().values(), strict=True):
        if "running" in k or "num_batches" in k:
            continue
        assert torch.equal(a, b), k
    assert not torch.equal(teacher.bn1.running_mean, student.bn1.running_mean)
    # The new statistics are those of the samples the first (un-augmented) pass saw.
    with torch.no_grad():
        stem = teacher.conv1(batch.images)
    assert torch.allclose(student.bn1.running_mean, stem.mean((0, 2, 3)), atol=0.05)
