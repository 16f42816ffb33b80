"""The ``fewprune`` argument parser: every command, its flags and the function that runs it."""

from __future__ import annotations

import argparse

from .. import data
from ..criteria.asca import PRICES
from .arguments import comma_list, count_or_auto, option_setting, positive, resize_mode, seed_number
from .bench import cmd_bench
from .catalogue import cmd_methods, cmd_zoo
from .check import cmd_check
from .evaluate import cmd_compare, cmd_eval
from .figures import cmd_curve, cmd_explain
from .prune import cmd_demo, cmd_prune
from .train import cmd_train

DESCRIPTION = ("fewprune: compress a trained image model by structured pruning with a few samples (10 to 500 images, "
               "labels optional), and measure what it costs and saves.")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command; each sub-parser names the function that runs it."""
    parser = argparse.ArgumentParser(prog="fewprune", description=DESCRIPTION)
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                        help="import your own parts (criteria, recoveries, methods, models …) before the command, so "
                             "it can name them; repeatable (also $FEWPRUNE_PLUGINS, separated like PATH)")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument("--model", required=True,
                       help="zoo:NAME, a registered name, torchvision:NAME, timm:NAME or path/to/file.py:factory")
        p.add_argument("--weights", help="safetensors file, or a torch checkpoint (loaded with weights_only=True)")
        p.add_argument("--allow-pickle", action="store_true", help="trust and unpickle a non-weights-only checkpoint")
        p.add_argument("--adapt", action="store_true",
                       help="after loading weights, change input channels / classes to fit the dataset")
        p.add_argument("--data", help="fashion-mnist, fashion-mnist-scenes (segmentation), cifar10, cifar100 or "
                                      "imagefolder:PATH (class folders, images/ + masks/, or images alone); "
                                      "default: the dataset of a zoo teacher or pruning result, else fashion-mnist")
        p.add_argument("--data-root", help="folder holding the dataset files (overrides the default location)")
        folder = p.add_argument_group(
            "image folders (--data imagefolder:PATH): how its files become the model's input. Default: the "
            "convention a zoo teacher or pruning result records (a Fashion-MNIST teacher: 28×28 grey, its mean/std, "
            "fit), else ImageNet's (224, RGB, ImageNet mean/std, resize 256 → crop 224)")
        folder.add_argument("--image-size", type=positive(int), metavar="N",
                            help="centre-crop to N×N, the input size the model was trained on")
        folder.add_argument("--image-channels", type=int, choices=[1, 3], help="3: RGB; 1: greyscale")
        folder.add_argument("--image-mean", type=comma_list(float), metavar="M[,M,M]",
                            help="normalisation mean: one value, or one per channel (pixels scaled to 0…1)")
        folder.add_argument("--image-std", type=comma_list(float), metavar="S[,S,S]",
                            help="normalisation std, as --image-mean")
        folder.add_argument("--image-resize", type=resize_mode, metavar="imagenet|fit|F",
                            help="imagenet: shorter side to N·256/224, then the centre crop; fit: shorter side to N; "
                                 "a number F in (0, 1]: shorter side to N/F (timm's crop_pct)")
        folder.add_argument("--image-interpolation", choices=list(data.INTERPOLATIONS), help="the resizing filter")

    def device_arg(p, what: str):
        p.add_argument("--device", metavar="cpu|cuda|cuda:N|auto",
                       help=f"{what} (default cpu; auto: a CUDA GPU if one is visible). A GPU gives the CPU's "
                            "figures to float tolerance, not bit for bit; latency is then the GPU's")

    p = sub.add_parser("prune", help="compress a model with a few samples and compare it with its teacher")
    model_args(p)
    device_arg(p, "where the compression runs, and the teacher and student are evaluated and timed")
    p.add_argument("--samples", type=int, default=50, help="number of training images to use (default 50)")
    p.add_argument("--per-class", type=int, help="instead of --samples: this many images of every class")
    p.add_argument("--method", default="l1+kd", help="a registered method or criterion[@allocation][+recovery]")
    for k, help_text in (("macs", "fraction of MACs to remove"), ("params", "fraction of parameters to remove"),
                         ("channels", "fraction of each group's channels to remove")):
        p.add_argument(f"--{k}", type=float, help=help_text)
    p.add_argument("--speed-up", type=float, dest="speedup", metavar="S",
                   help="instead of --macs: a student S times faster than the teacher, timed here (batch 64, the "
                        "threads torch uses): the least MAC fraction whose timings reach S, found by timing a few "
                        "candidate structures (the report lists them). Timings scatter, so it lands near S; best on a "
                        "quiet machine")
    p.add_argument("--blocks", type=count_or_auto, metavar="N|auto",
                   help="number of residual blocks to drop: alone for block-level methods; with --macs/--params/"
                        "--speed-up a "
                        "channel method drops these blocks (picked by its block criterion), then prunes channels to "
                        "the target; 'auto': the fewest blocks with which the target can be met")
    p.add_argument("--seed", type=seed_number, default=0)
    p.add_argument("--no-labels", action="store_true", help="compress without reading the samples' labels")
    p.add_argument("--round-to", metavar="N|auto",
                   help="keep channel widths above N a multiple of N, so CPU kernels turn removed MACs into saved "
                        "time; 'auto': this CPU's channel block (16 with AVX-512, 8 with AVX2)")
    p.add_argument("--min-width", metavar="N|auto",
                   help="prune no channel group below N channels (narrower groups not at all): padded CPU kernels "
                        "run narrower layers no faster; 'auto': this CPU's channel block")
    recovery = p.add_argument_group("recovery schedule (default: each recovery's own, e.g. MiR 800 iterations of "
                                    "64 images at lr 0.02)")
    recovery.add_argument("--iterations", type=positive(int), help="training iterations of each training recovery")
    recovery.add_argument("--lr", type=positive(float), help="its peak learning rate")
    recovery.add_argument("--batch-size", type=positive(int), help="its mini-batch size (also BN recalibration's)")
    recovery.add_argument("--decay", choices=["cosine", "step"],
                          help="learning-rate decay: cosine to 0, or ×0.1 at 40%% of the iterations (MiR's authors)")
    p.add_argument("--eval-limit", type=int, help="evaluate on a fixed subset of this many test images")
    p.add_argument("--onnx", action="store_true",
                   help="also export student.onnx (checked with onnxruntime), and time teacher and student under "
                        "onnxruntime (CPU, the same threads) beside torch")
    p.add_argument("--protect", action="append", default=[], metavar="LAYER",
                   help="keep this layer's output width as it is (repeatable; the classifier always is)")
    p.add_argument("--option", action="append", default=[], type=option_setting, metavar="PART.NAME=VALUE",
                   help="set an option of the method's criterion, allocation or a recovery step (repeatable), e.g. "
                        "allocation.max_ratio=0.95, mir.recalibrate=false, allocation.bounds=[0.1,0.7]; the VALUE "
                        "is read as YAML; the report records it")
    p.add_argument("--dry-run", action="store_true",
                   help="decide the plan and time it (the widths, MACs, params and measured speed-up of the "
                        "structure), then project the recovery's time from a short run of it (each training step "
                        "8 iterations); nothing is saved (--out not needed)")
    p.add_argument("--out", help="output folder (plan, weights, reports)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("bench", help="run a sweep config (resumable) and write its report and plots")
    p.add_argument("config", help="sweep YAML (see benchmarks/)")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from existing results")
    p.add_argument("--csv", metavar="PATH",
                   help="run nothing: write every job's figures (accuracy, reductions, the report's measured "
                        "speed-up, seed, samples, command) as one CSV table, fractions as fractions")
    p.add_argument("--status", action="store_true",
                   help="run nothing: list the jobs done, failed, reusable from the sweeps beside it, running and left, "
                        "with the CPU time left estimated from jobs already measured")
    p.add_argument("--remeasure-latency", action="store_true",
                   help="time every finished job's structure again, back to back with its teacher, on a quiet "
                        "machine; the report's speed-ups then use these timings")
    p.add_argument("--again", action="store_true",
                   help="with --remeasure-latency: time cells already re-timed again too (the new timings replace "
                        "ones taken while the machine was not quiet)")
    p.add_argument("--threads", type=int, help="torch threads for in-process cells")
    p.add_argument("--shard", metavar="I/N", help="run every N-th family of jobs from the I-th (0-based), then help "
                   "with the others' unstarted ones: start N processes with 0/N … N-1/N to share one sweep and its "
                   "results file on one machine")
    p.add_argument("--seeds", type=comma_list(int), metavar="S[,S…]",
                   help="run only the jobs of these seeds this time (e.g. 0: one seed of every setting first); "
                        "training jobs have no seed and run anyway; the report covers every finished row")
    p.add_argument("--models", type=comma_list(str), metavar="M[,M…]",
                   help="run only the jobs of these models (as the config names them) this time")
    p.add_argument("--methods", type=comma_list(str), metavar="M[,M…]",
                   help="run only the cells of these methods (or variants, as the config names them) this time, "
                        "e.g. those a comparison needs first (with --status: what those cells have left)")
    p.add_argument("--device", metavar="cpu|cuda|cuda:N|auto",
                   help="compress and train the jobs there (default cpu); on a GPU nothing is timed: the speed-ups "
                        "come from --remeasure-latency on the CPU, and teachers are measured on the CPU")
    p.add_argument("--merge", nargs="+", metavar="RESULTS.jsonl",
                   help="copy in the jobs this sweep lacks that these results files of the same sweep finished "
                        "(e.g. its shards run on other machines), if they measured the same teachers to the same "
                        "accuracy; their speed-ups wait for --remeasure-latency here")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("methods", help="the registered methods and the parts that compose others; with a name, "
                                       "the options that method's parts take")
    p.add_argument("method", nargs="?", help="a method (registered or composed): list what --option can set")
    p.add_argument("--json", action="store_true", help="print them as JSON")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("eval", help="accuracy, MACs, params and latency of a model")
    model_args(p)
    device_arg(p, "where the model is evaluated and timed")
    p.add_argument("--split", default="test", help="the dataset split to evaluate on (default test)")
    p.add_argument("--limit", "--eval-limit", type=int,  # --eval-limit as in prune and curve
                   help="evaluate on a fixed random subset of this many images")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--onnx", action="store_true", help="also time the model under onnxruntime (exported to a "
                                                        "temporary file; CPU, the same threads)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", help="saved results (prune --out folders) side by side: method, target, samples, "
                                       "scores, MACs, params, speed-up and time, as each recorded them")
    p.add_argument("results", nargs="+", metavar="RESULT", help="folders written by fewprune prune")
    p.add_argument("--out", help="also write the table as markdown to this file")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="train a zoo teacher from its recipe (resumable)")
    p.add_argument("recipe", help="e.g. resnet56-fmnist")
    p.add_argument("--out", help="run folder (checkpoint, weights, manifest); default runs/train/RECIPE")
    p.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    p.add_argument("--install", action="store_true", help="copy the result into the package's zoo")
    device_arg(p, "where the teacher trains (not --asca)")
    p.add_argument("--asca", metavar="KIND=FRACTION",
                   help="ASCA from scratch: learn gates and weights together towards this target (e.g. macs=0.5), "
                        "then remove the closed channels; no fine-tuning")
    p.add_argument("--gate-price", choices=PRICES, default=PRICES[0],
                   help="with --asca: what the gates' cost term charges a channel: its share of the target's cost "
                        "(the default), or the same for every channel (keeps the residual streams from collapsing "
                        "when learning from scratch; see benchmarks/asca-scratch.md)")
    p.add_argument("--force", action="store_true", help="with --asca: replace an existing --out folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("zoo", help="the shipped teachers")
    p.add_argument("action", choices=["list", "report"], nargs="?", default="list")
    p.add_argument("--out", help="for report: write the markdown here")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("explain", help="render the evidence behind a pruning decision as PNG figures")
    model_args(p)
    p.add_argument("--concept-masks", action="store_true",
                   help="each block's input/output concept masks and their divergence (CMa)")
    p.add_argument("--lrp", action="store_true",
                   help="per-image LRP heatmaps and the most/least relevant channels of --layer")
    p.add_argument("--layer", help="for --lrp: the layer whose channels to rank (default: the last convolution)")
    p.add_argument("--images", type=int, default=4, help="test images to show (default 4)")
    p.add_argument("--theta", type=float, default=0.2, help="concept-mask top ratio θ (default 0.2)")
    p.add_argument("--seed", type=seed_number, default=0)
    p.add_argument("--out", required=True, help="output folder for the PNGs")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("curve", help="accuracy vs fraction of channels removed per method, with each curve's AUC")
    model_args(p)
    p.add_argument("--methods", default="l1,taylor,lrp", help="comma-separated methods (default l1,taylor,lrp)")
    p.add_argument("--fractions", default="0:0.9:0.1", help="start:stop:step (inclusive) or a list (default 0:0.9:0.1)")
    p.add_argument("--samples", type=int, default=100, help="training images to use (default 100)")
    p.add_argument("--per-class", type=int, help="instead of --samples: this many images of every class")
    p.add_argument("--seed", type=seed_number, default=0)
    p.add_argument("--eval-limit", type=int, help="evaluate on a fixed subset of this many test images")
    p.add_argument("--out", required=True, help="output folder (curve.md, curve.png, curve.json)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_curve)

    p = sub.add_parser("check", help="prune a model (random weights), check pruned == masked teacher, MACs and "
                                      "save → load; --torchvision: every torchvision classifier, as a report")
    p.add_argument("models", nargs="*", help="model specs (with --torchvision: torchvision names to limit to)")
    p.add_argument("--torchvision", action="store_true", help="check torchvision's classifiers (resumable)")
    p.add_argument("--methods", action="store_true",
                   help="run every method on every model family (or the models named) with training cut short: "
                        "ok, refused with a reason, or failed (resumable)")
    p.add_argument("--method", action="append", help="with --methods: only this method (repeatable)")
    p.add_argument("--input-shape", help="C,H,W of the random input (default 3,224,224; with --methods 1,28,28)")
    p.add_argument("--macs", type=float, default=0.3, help="fraction of MACs L1 removes (default 0.3)")
    p.add_argument("--results", help="with --torchvision / --methods: JSON lines kept between runs "
                                     "(default benchmarks/results/torchvision.jsonl / methods.jsonl)")
    p.add_argument("--out", help="write the markdown report here")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --torchvision / --methods: check what did not pass again")
    p.add_argument("--recheck", action="store_true",
                   help="with --torchvision: check the named models again even if they passed")
    p.add_argument("--report-only", action="store_true",
                   help="with --torchvision / --methods: only rewrite --out from the results")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo", help="the embedded default job: halve a shipped teacher's MACs with 50 samples "
                                     "(cma+mir-blocks, blocks dropped as needed, CPU-aligned widths)")
    p.add_argument("--teacher", help="zoo name (default resnet56-fmnist)")
    p.add_argument("--eval-limit", type=int, help="evaluate on this many test images")
    p.add_argument("--out", default="runs/demo", help="output folder (replaced on every run)")
    device_arg(p, "where the demo compresses, evaluates and times")
    p.set_defaults(func=cmd_demo)
    return parser
