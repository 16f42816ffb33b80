"""How the command line reads its inputs: models from specs or saved results, datasets with their input
convention, and the images a result is judged on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import data, models
from ..files import absolute_spec
from ..models import external, zoo


def load_model_for(spec: str, info: data.DatasetInfo, weights: str | None = None, allow_pickle: bool = False,
                   adapt: bool = False):
    """A model from a CLI spec, shaped for the dataset described by ``info``.

    A folder written by ``fewprune prune`` is a spec too: its student, rebuilt
    from the architecture its report names, its plan and its weights.
    """
    if (Path(spec) / "plan.json").is_file():
        if weights:
            raise ValueError(f"{spec} is a pruning result with its own weights; --weights does not apply to it")
        return _saved_student(Path(spec), info)
    model = models.build(spec, num_classes=info.num_classes or None, in_channels=info.input_shape[0],
                         image_size=info.input_shape[1], weights=weights, allow_pickle=allow_pickle, adapt=adapt)
    if weights is None and not spec.startswith("zoo:") and not (spec.endswith(".py") or ".py:" in spec):
        # an architecture name alone builds it untrained: a forgotten --weights would otherwise pass unnoticed
        print(f"fewprune: note: {spec} has random weights (no --weights given, and fewprune downloads nothing); "
              "pass --weights FILE to use a trained model", file=sys.stderr)
    return model.eval()


def _saved_student(directory: Path, info: data.DatasetInfo):
    """The student of a ``fewprune prune`` result folder, rebuilt on the architecture its report names."""
    from .. import result_files

    architecture = result_files.recorded_architecture(directory, num_classes=info.num_classes or None,
                                                      in_channels=info.input_shape[0], image_size=info.input_shape[1])
    return result_files.load(directory, architecture)


def fixed_subset(dataset, limit: int | None):
    """A fixed (seed 0) subset of ``limit`` images of ``dataset``; all of it without a limit."""
    if limit is None or limit >= len(dataset):
        return dataset
    return data.few_shot(dataset, n=limit, seed=0)


# the image-folder flags, by the name of the input-convention key each sets (data.input_convention)
IMAGE_FLAGS = {"image_size": "--image-size", "channels": "--image-channels", "mean": "--image-mean",
               "std": "--image-std", "resize": "--image-resize", "interpolation": "--image-interpolation"}


def read_dataset(args, split: str):
    """``--data`` (from ``--data-root``) at ``split``. An ``imagefolder:`` dataset's images are read as the model
    reads its input (the convention a zoo teacher or a pruning result records, changed by the ``--image-*``
    flags), and its class folders are matched to the model's class names where these are known."""
    given = {key: getattr(args, flag[2:].replace("-", "_"), None) for key, flag in IMAGE_FLAGS.items()}
    given = {key: value for key, value in given.items() if value is not None}
    if not args.data.startswith("imagefolder:"):
        if given:
            flag = IMAGE_FLAGS[next(iter(given))]
            raise ValueError(f"{flag} sets how the images of an imagefolder: dataset are read; {args.data} has its "
                             "own size and normalisation")
        return data.load(args.data, split, root=args.data_root)
    model = getattr(args, "model", None)
    recorded = model_input_convention(model) or {}
    options = {**recorded, **given}
    dataset = data.load(args.data, split, **options)  # a folder that is not there is named first, with no note
    if set(IMAGE_FLAGS) - set(given) and not getattr(args, "convention_noted", False):
        args.convention_noted = True  # once, though the train and test splits are both read
        c = data.input_convention(**{key: value for key, value in options.items() if key in IMAGE_FLAGS})
        whose = (f"as {model} takes its input" if recorded else
                 f"with ImageNet models' settings where no --image-* flag is given ({model} records no input "
                 "convention)")
        print(f"fewprune: note: reading {args.data[len('imagefolder:'):]} {whose}: "
              f"{c['channels']} channel{'s' if c['channels'] > 1 else ''}, {c['image_size']}×{c['image_size']}, "
              f"mean {', '.join(f'{v:g}' for v in c['mean'])}, std {', '.join(f'{v:g}' for v in c['std'])}, "
              f"resize {c['resize'] if isinstance(c['resize'], str) else format(c['resize'], '.4g')}, "
              f"{c['interpolation']} (the --image-* flags change it)", file=sys.stderr)
    return dataset


def model_input_convention(model: str | None) -> dict | None:
    """How ``model`` reads an image folder (:func:`fewprune.data.input_convention`'s keywords): a zoo teacher's
    (from its manifest), a torchvision or timm model's (how its library evaluates its weights), a model file's
    (its ``INPUT_CONVENTION``, if it declares one), a pruning result's (its report records the one its teacher
    was pruned with, else its teacher's); None for other models (ImageNet's convention applies)."""
    if not model:
        return None
    if model.startswith("zoo:") and model[4:] in zoo.list():
        return zoo.input_convention(model[4:])
    if model.startswith("torchvision:"):
        return external.torchvision_input_convention(model.removeprefix("torchvision:"))
    if model.startswith("timm:"):
        return external.timm_input_convention(model.removeprefix("timm:"))
    if ".py:" in model or model.endswith(".py"):
        return external.file_input_convention(model)
    report = Path(model) / "report.json"
    if report.is_file():
        teacher = json.loads(report.read_text()).get("teacher_model") or {}
        return teacher.get("input") or (model_input_convention(teacher["spec"]) if teacher.get("spec") else None)
    return None


def held_out_images(name: str, dataset, drawn: set[int], seed: int):
    """The images of ``dataset`` not among the ``drawn`` samples (for a dataset with no test split); refused with
    the reason when none is left."""
    held_out = [i for i in range(len(dataset)) if i not in drawn]
    if not held_out:
        raise ValueError(f"{name} has no test split and every image is among the samples: nothing is left to "
                         "evaluate on (add a test/ folder or draw fewer samples)")
    return data.FewShot(dataset, held_out, seed)


def evaluation_set(args, train, few) -> tuple[object, str]:
    """The images the result is judged on, and how to name them: the test split, or, where the dataset has
    none (a folder with no test/ folder), its images that are not among the few samples."""
    test = read_dataset(args, "test")
    if not test.info.extra.get("same_images_every_split"):
        return test, "test"
    return held_out_images(args.data, train, set(few.indices), few.seed), "held-out (the images not drawn as samples)"


def without_result_samples(args, dataset) -> tuple[object, str]:
    """``dataset`` and its split's name; for a pruning result judged on the folder it was compressed from, when that
    folder has no test split: its images not among the result's samples, named "held-out" (as prune judged it)."""
    few_file = Path(args.model) / "few_shot.json"
    if not dataset.info.extra.get("same_images_every_split") or not few_file.is_file():
        return dataset, args.split
    few = json.loads(few_file.read_text())
    drawn = set(few.get("indices", []))
    same_folder = absolute_spec(few.get("dataset") or "") == absolute_spec(args.data)
    if not same_folder or not drawn or max(drawn) >= len(dataset):
        return dataset, args.split
    print(f"fewprune: note: {args.data} has no test split; the {len(drawn)} images {args.model} was compressed with "
          "are left out", file=sys.stderr)
    return held_out_images(args.data, dataset, drawn, few.get("seed", 0)), "held-out"


def default_dataset(model: str | None) -> tuple[str, str | None]:
    """The dataset a model spec comes with: a zoo teacher's (its manifest names it), a pruning result's (the one
    its report was evaluated on, with the ``--data-root`` it was read from, if one was given; for a result saved
    from Python, the one its samples were drawn from, if fewprune can read it); else fashion-mnist."""
    if model and model.startswith("zoo:") and model[4:] in zoo.list():
        return zoo.manifest(model[4:])["dataset"], None
    report = Path(model or "") / "report.json"
    if model and report.is_file():
        recorded = json.loads(report.read_text())
        evaluation = recorded.get("evaluation", {})
        if evaluation.get("dataset"):
            return evaluation["dataset"], evaluation.get("data_root")
        drawn = (recorded.get("samples") or {}).get("dataset", "")
        if drawn.startswith("imagefolder:") or drawn in data.datasets.names():
            return drawn, None
    return "fashion-mnist", None
