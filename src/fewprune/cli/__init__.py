"""The ``fewprune`` command line: prune, bench, eval, compare, train, zoo, methods, explain, curve, check, demo.

One module per command (or pair of related commands); ``inputs`` reads models and datasets, ``outputs`` shows and
writes results, ``arguments`` parses flag values and ``parser`` declares every command and flag.
"""

from __future__ import annotations

import sys

from .. import data
from .inputs import default_dataset
from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: the process's arguments); return its exit status. Bad input
    (a missing dataset, an unknown name, an output that exists) is reported in one line with status 2, Ctrl-C with
    130, and nothing half-written is left."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if hasattr(args, "data") and args.data is None:
        args.data, recorded_root = default_dataset(getattr(args, "model", None))
        if recorded_root and getattr(args, "data_root", "unset") is None:
            args.data_root = recorded_root
            print(f"fewprune: note: reading {args.data} from {recorded_root}, as {args.model} was "
                  "(--data-root changes it)", file=sys.stderr)
    from .. import plugins

    try:
        plugins.from_environment()
        plugins.load_all(args.plugin)
        return args.func(args)
    except (data.DatasetNotFound, FileNotFoundError, FileExistsError, KeyError, ValueError, FloatingPointError,
            plugins.PluginError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"fewprune: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fewprune: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
