"""The shipped teachers: safetensors weights plus a JSON manifest each, under ``models/weights/``.

A manifest records how the teacher was made (recipe, seed, command), what it
scores (accuracy on the full test set, MACs, params) and the sha256 of its
weights, which ``load`` checks before trusting the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..registry import did_you_mean

WEIGHTS_DIR = Path(__file__).parent / "weights"


def _manifest_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.json"


def list() -> list[str]:  # noqa: A001 - the public name the API promises
    """Names of the shipped teachers, e.g. ``resnet56-fmnist``."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


def manifest(name: str) -> dict:
    path = _manifest_path(name)
    if not path.exists():
        raise KeyError(f"no teacher {name!r} in the zoo{did_you_mean(name, list())}; shipped: "
                       f"{', '.join(list()) or 'none'}")
    return json.loads(path.read_text())


def architecture(name: str) -> nn.Module:
    """The teacher's architecture, untrained (what a saved student is rebuilt from)."""
    from . import build

    m = manifest(name)
    return build(m["architecture"], num_classes=m["num_classes"], in_channels=m["in_channels"],
                 image_size=m["image_size"])


def input_convention(name: str) -> dict:
    """How images are made the teacher's input, as :func:`fewprune.data.load` takes it for an ``imagefolder:``
    dataset: the training set's size, channels and normalisation, images scaled to fit (not ImageNet's crop), and
    its class names in output order (class folders are matched to them)."""
    m = manifest(name)
    return {"image_size": m["image_size"], "channels": m["in_channels"], "mean": tuple(m["mean"]),
            "std": tuple(m["std"]), "resize": "fit", "classes": tuple(m["classes"])}


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / manifest(name)["weights"]


def load(name: str) -> nn.Module:
    """The trained teacher in eval mode, after checking its weights against the recorded sha256."""
    from safetensors.torch import load_file

    from .weights import load_state, sha256_of

    m = manifest(name)
    path = WEIGHTS_DIR / m["weights"]
    if not path.exists():
        raise FileNotFoundError(f"teacher {name}: weights file {path} is missing from the installation")
    digest = sha256_of(path)
    if digest != m["sha256"]:
        raise ValueError(f"teacher {name}: {path} has sha256 {digest}, manifest records {m['sha256']}")
    model = architecture(name)
    load_state(model, load_file(str(path)))
    return model.eval()
