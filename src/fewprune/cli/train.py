"""``fewprune train``: a zoo teacher from its recipe, or ASCA's gates and weights from scratch."""

from __future__ import annotations

from pathlib import Path

from .. import data, metrics
from ..files import check_output, check_writable
from ..models import zoo
from .outputs import write_json_atomic


def cmd_train(args) -> int:
    """``fewprune train RECIPE``: train a zoo teacher (resumable), or with ``--asca`` learn gates and weights
    from scratch."""
    from ..models.recipes import train_teacher

    if args.asca:
        if args.device not in (None, "cpu"):
            raise ValueError("--device is for teacher training; train --asca (gates and weights from scratch) runs "
                             "on the CPU")
        return _train_asca(args)
    out = Path(args.out or f"runs/train/{args.recipe}")
    check_writable(out)
    manifest = train_teacher(args.recipe, out, epochs=args.epochs, device=args.device)
    if args.install:
        import shutil

        target = zoo.WEIGHTS_DIR
        shutil.copy2(out / manifest["weights"], target / manifest["weights"])
        write_json_atomic(target / f"{args.recipe}.json", manifest)
        print(f"installed {args.recipe} into {target}")
    return 0


def _train_asca(args) -> int:
    """``fewprune train RECIPE --asca macs=0.5``: ASCA from scratch, saved like a ``fewprune prune`` result."""
    from .. import result_files
    from ..allocation import Target
    from ..models.recipes import recipes, train_asca_scratch

    kind, _, value = args.asca.partition("=")
    if kind not in ("macs", "params", "channels") or not value:
        raise ValueError(f"--asca takes macs=F, params=F or channels=F (a fraction to remove), not {args.asca!r}")
    target = Target(**{kind: float(value)})
    out = Path(args.out or f"runs/asca-scratch/{args.recipe}-{kind}{value}")
    check_output(out, args.force)
    checkpoint = out.with_name(out.name + ".partial.pt")  # hours of training survive an interruption
    result = train_asca_scratch(args.recipe, target, epochs=args.epochs, checkpoint=checkpoint,
                                gates={"price": args.gate_price} if args.gate_price != "target" else None)
    test = data.load(recipes.get(args.recipe).dataset, "test")
    example = test.batch([0])[0]
    result.report["evaluation"] = {"student": metrics.measure(result.student, test, example), "split": "test"}
    result.report["command"] = "fewprune " + " ".join(args.argv)
    result.report["teacher_model"] = {"spec": recipes.get(args.recipe).architecture, "adapt": False,  # see cmd_prune
                                      "input": test.info.input_convention()}
    result_files.save(result, out, force=args.force)
    checkpoint.unlink(missing_ok=True)
    e = result.report["evaluation"]["student"]
    print(f"asca-scratch {args.recipe}: test accuracy {100 * e['accuracy']:.2f}%, "
          f"{100 * result.report['macs_reduction']:.1f}% MACs removed; saved to {out}")
    return 0
