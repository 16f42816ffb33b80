"""fewprune: structured pruning of trained image models with only a few samples."""

__version__ = "0.1.0"

from . import data, metrics, models  # noqa: E402
from .models import zoo  # noqa: E402

__all__ = ["__version__", "data", "metrics", "models", "zoo"]
