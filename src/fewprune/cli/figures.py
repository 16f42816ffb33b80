"""``fewprune explain`` and ``fewprune curve``: figures written into an output folder."""

from __future__ import annotations

from pathlib import Path

from .. import data
from ..files import output_folder
from .arguments import fraction_list
from .inputs import fixed_subset, load_model_for, read_dataset


def cmd_explain(args) -> int:
    """``fewprune explain``: concept-mask and/or LRP figures for a few test images, into a new folder."""
    from ..explain import concept_mask_figures, lrp_figures

    if not (args.concept_masks or args.lrp):
        raise ValueError("say what to explain: --concept-masks and/or --lrp")
    out = Path(args.out)
    with output_folder(out, args.force) as staging:
        test = read_dataset(args, "test")
        model = load_model_for(args.model, test.info, args.weights, args.allow_pickle, args.adapt)
        images, labels = data.few_shot(test, n=args.images, seed=args.seed).tensors()
        files, colours = [], {"mean": test.info.mean, "std": test.info.std}
        if args.concept_masks:
            files += concept_mask_figures(model, images.float(), staging, theta=args.theta, **colours)
        if args.lrp:
            files += lrp_figures(model, images.float(), labels, staging, layer=args.layer, **colours)
    print(f"wrote {len(files)} figures to {out}: " + ", ".join(f.name for f in files[-3:]))
    return 0


def cmd_curve(args) -> int:
    """``fewprune curve``: accuracy against the fraction of channels removed, one curve per method, with AUCs."""
    from ..bench.curve import accuracy_curves, write_curves

    out = Path(args.out)
    with output_folder(out, args.force) as staging:
        train = read_dataset(args, "train")
        test = fixed_subset(read_dataset(args, "test"), args.eval_limit)
        few = data.few_shot(train, n=args.samples if args.per_class is None else None, per_class=args.per_class,
                            seed=args.seed)
        teacher = load_model_for(args.model, train.info, args.weights, args.allow_pickle, args.adapt)
        methods = args.methods.split(",")
        result = accuracy_curves(teacher, few, methods, fraction_list(args.fractions), test, seed=args.seed)
        result["command"] = "fewprune " + " ".join(args.argv)
        write_curves(result, staging, f"{args.model}: accuracy vs channels removed, {len(few)} samples, "
                                      f"seed {args.seed}")
    for method, curve in result["curves"].items():
        print(f"{method}: AUC {100 * curve['auc']:.2f} up to {100 * curve['reached']:.0f}%, "
              f"{100 * curve['common_auc']:.2f} over the common range"
              + (f" ({len(curve['failed'])} fractions not reached)" if curve["failed"] else ""))
    print(f"curves written to {out} (curve.md, curve.png, curve.json)")
    return 0
