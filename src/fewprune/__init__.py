"""fewprune: structured pruning of trained image models with only a few samples."""

__version__ = "0.1.0"

from . import data, methods, metrics, models  # noqa: E402
from .allocation import Target, TargetUnreachable  # noqa: E402
from .api import compress  # noqa: E402
from .models import zoo  # noqa: E402
from .result_files import Result, export_onnx, load, save  # noqa: E402

__all__ = [
    "Result", "Target", "TargetUnreachable", "__version__", "compress", "data", "export_onnx", "load", "methods",
    "metrics", "models", "save", "zoo",
]
