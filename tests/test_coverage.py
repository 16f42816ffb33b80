import pytest

import fewprune as fp
from fewprune.bench.coverage import check_model, coverage_markdown
from fewprune.models import build


def test_a_supported_model_passes_every_check_and_its_figures_are_consistent():
    row = check_model("resnet20", (1, 28, 28), macs=0.3)
    assert row["status"] == "ok", row
    assert row["macs_after"] < row["macs_before"] and row["params_after"] < row["params_before"]
    assert abs(row["macs_reduction"] - 0.3) <= 0.01
    assert abs(1 - row["macs_after"] / row["macs_before"] - row["macs_reduction"]) < 1e-9
    assert row["max_logit_difference"] < 1e-4 and 0 < row["pruned_groups"] <= row["groups"]


def test_the_walk_through_model_of_ones_own_passes_the_check():
    """docs/your-model.md starts from examples/your-model/net.py: a plain-PyTorch file fewprune builds by path."""
    from pathlib import Path

    net = Path(__file__).resolve().parents[1] / "examples" / "your-model" / "net.py"
    row = check_model(f"{net}:build", (1, 28, 28), macs=0.3)
    assert row["status"] == "ok", row
    assert row["pruned_groups"] > 0 and row["max_logit_difference"] < 1e-4


def test_a_failure_is_recorded_with_its_stage_and_reported():
    bad = check_model("torchvision:no_such_net", (3, 32, 32))
    assert bad["status"] == "fail" and bad["stage"] == "build" and "no_such_net" in bad["error"]
    good = check_model("resnet20", (1, 28, 28))
    text = coverage_markdown([good, bad], "fewprune check --torchvision", unchecked=["vit_b_16"])
    assert "**1 of 2 models** pass" in text and "fails at build" in text and "fewprune check --torchvision" in text
    assert "Not checked yet (1): vit_b_16." in text


def test_the_latest_check_of_a_model_is_the_one_that_counts():
    from fewprune.bench.coverage import latest_rows

    rows = [{"model": "a", "status": "fail"}, {"model": "b", "status": "ok"}, {"model": "a", "status": "ok"}]
    assert latest_rows(rows) == [{"model": "a", "status": "ok"}, {"model": "b", "status": "ok"}]


def test_check_cli_resumes_reports_and_exits_non_zero_on_a_failure(tmp_path, capsys):
    from fewprune.cli import main

    results, report = tmp_path / "tv.jsonl", tmp_path / "tv.md"
    argv = ["check", "--torchvision", "squeezenet1_0", "no_such_net", "--input-shape", "3,64,64",
            "--results", str(results), "--out", str(report)]
    assert main(argv) == 1  # one model fails to build
    assert "1 of 2 models" in capsys.readouterr().out
    first = results.read_text()
    assert len(first.splitlines()) == 2 and "**1 of 2 models** pass" in report.read_text()
    assert main(argv) == 1  # resumed: nothing checked again
    assert results.read_text() == first
    report.unlink()
    assert main([*argv, "--report-only"]) == 1 and results.read_text() == first
    text = report.read_text()
    assert "fails at build" in text and "--report-only" not in text
    assert main(["check", "--torchvision", "squeezenet1_0", "--recheck", "--input-shape", "3,64,64",
                 "--results", str(results)]) == 0  # checked again although it passed
    assert len(results.read_text().splitlines()) == 3


def test_check_of_a_model_that_takes_other_inputs_points_to_input_shape(tmp_path, capsys):
    from fewprune.cli import main

    source = tmp_path / "grey_net.py"  # a user's file: grey images in
    source.write_text("from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), "
                      "nn.Conv2d(32, 32, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 3))\n")
    assert main(["check", f"{source}:build"]) == 1  # 3×224×224 by default
    out = capsys.readouterr().out
    assert "does not run on the samples" in out and "random 3×224×224 images" in out and "--input-shape C,H,W" in out
    assert main(["check", f"{source}:build", "--input-shape", "1,16,16"]) == 0
    assert "--input-shape" not in capsys.readouterr().out


def test_zero_initialised_layers_are_randomised_so_the_comparison_can_fail():
    import torch
    from torch import nn

    from fewprune.bench.coverage import randomise_untrained

    head = nn.Linear(8, 3)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)  # as torchvision's ViT heads are: every input gives the same logits
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), head)
    x = torch.randn(2, 4)
    assert torch.equal(model(x)[0], model(x)[1])
    randomise_untrained(model)
    with torch.no_grad():
        assert not torch.equal(model(x)[0], model(x)[1])
    assert model[0].weight.abs().sum() > 0 and head.weight.std() > 0


def test_a_teacher_whose_outputs_ignore_the_input_fails_the_check(monkeypatch):
    import fewprune.bench.coverage as coverage

    monkeypatch.setattr(coverage, "randomise_untrained", lambda model, seed=0: _constant_head(model))
    row = check_model("vit", (1, 28, 28), macs=0.3)
    assert row["status"] == "fail" and row["stage"] == "pruned == masked" and "proves nothing" in row["error"]


def _constant_head(model):
    import torch

    with torch.no_grad():
        model.head.weight.zero_()  # the built-in vit's classifier
    return model


def test_method_coverage_tells_runs_refusals_and_failures_apart(tmp_path):
    import torch

    from fewprune.bench.method_coverage import check_methods, deliberate_refusal, method_coverage_markdown, quick

    results = tmp_path / "methods.jsonl"
    rows = check_methods(results, ["resnet20", "vgg16"], ["l1", "cma"], log=lambda *_: None)
    status = {(r["model"], r["method"]): r["status"] for r in rows}
    assert status == {("resnet20", "l1"): "ok", ("resnet20", "cma"): "ok",
                      ("vgg16", "l1"): "ok", ("vgg16", "cma"): "refused"}
    assert "no shape-preserving residual block" in next(r["error"] for r in rows if r["status"] == "refused")
    assert check_methods(results, ["resnet20", "vgg16"], ["l1", "cma"], log=lambda *_: 1 / 0) == rows  # resumed
    composed = quick("l1+fskd+mir", iterations=3)  # an unregistered composition, every loop cut short
    assert composed.recovery == "fskd+mir" and composed.recovery_options["mir"]["schedule"].iterations == 3
    assert quick("asca", iterations=3).criterion_options == {"iterations": 3}  # not its **schedule keywords
    assert quick("practise", iterations=3).criterion_options == {"iterations": 3}  # its scoring, otherwise its own
    report = method_coverage_markdown(rows, "fewprune check --methods")
    assert "**3 of 4 pairs run**, 1 are refused" in report and "refused [1]" in report and "Partial" not in report
    assert "**Partial: 2 pairs not checked yet**" in method_coverage_markdown(rows, "fewprune check", unchecked=2)
    with pytest.raises(ValueError) as torch_error:  # a ValueError torch raises is a failure, not a refusal
        torch.optim.SGD([], lr=0.1)
    assert not deliberate_refusal(torch_error.value)
    with pytest.raises(ValueError, match="block-level method") as refusal:
        fp.compress(build("resnet20", num_classes=10, in_channels=1, image_size=28), torch.randn(3, 1, 28, 28),
                    method="l1", target=fp.Target(blocks=1), progress=False)
    assert deliberate_refusal(refusal.value)


def test_method_coverage_takes_the_input_shape_a_model_needs_and_the_report_names_it(tmp_path):
    from fewprune.bench.method_coverage import check_methods, method_coverage_markdown
    from fewprune.cli import main

    results = tmp_path / "methods.jsonl"
    # torchvision's VGG halves its input five times: 28×28 cannot run, 3×32×32 can
    small, = check_methods(results, ["torchvision:vgg11"], ["l1"], log=lambda *_: None)
    assert small["status"] == "failed" and "too small" in small["error"]
    rows = check_methods(results, ["torchvision:vgg11"], ["l1"], retry=True, log=lambda *_: None,
                         input_shape=(3, 32, 32))
    assert [(r["status"], r["input_shape"]) for r in rows] == [("ok", [3, 32, 32])]
    rows += check_methods(results, ["resnet20"], ["l1"], log=lambda *_: None)  # the built-ins' 1×28×28
    report = method_coverage_markdown(rows, "fewprune check --methods")
    assert "| vgg11 (tv), 3×32×32 | resnet20, 1×28×28 |" in report and "each column names it" in report
    with pytest.raises(SystemExit, match="want C,H,W"):
        main(["check", "--methods", "--input-shape", "3,32", "--results", str(results), "resnet20"])


@pytest.mark.parametrize("name, size", [("test_vit", 160), ("test_convnext", 64), ("test_efficientnet", 64),
                                        ("test_resnet", 64)])
def test_timm_models_prune_match_their_masked_teacher_and_reload(name, size):
    pytest.importorskip("timm")  # a dev dependency: CI has it
    row = check_model(f"timm:{name}", (3, size, size), macs=0.3)  # (the ViT's heads are coarse below its 160 px)
    assert row["status"] == "ok", row.get("error")
    assert row["pruned_groups"] > 0 and abs(1 - row["macs_after"] / row["macs_before"] - 0.3) <= 0.01


def test_an_unknown_timm_model_is_named_with_close_ones():
    pytest.importorskip("timm")
    from fewprune.models import build

    with pytest.raises(KeyError, match="timm has no model 'vit_tinyy'.*vit_"):
        build("timm:vit_tinyy")


def test_a_target_fewprune_refuses_with_its_reason_is_reported_as_a_refusal_not_a_failure():
    refused = check_model("resnet20", (1, 28, 28), macs=0.999)  # beyond keeping one unit per group
    assert refused["status"] == "refused" and refused["stage"] == "compress" and "TargetUnreachable" in refused["error"]
    text = coverage_markdown([check_model("resnet20", (1, 28, 28)), refused], "fewprune check resnet20",
                             what="the models named")
    assert "**1 of 2 models** pass" in text and "1 are refused with the reason" in text
    assert "refused at compress: TargetUnreachable" in text and "fails at" not in text
