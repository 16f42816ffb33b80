"""Argument types of the command line: each parses one flag's text or refuses it with the form wanted."""

from __future__ import annotations

import argparse

from .. import data


def positive(kind, or_zero: bool = False):
    """An argparse type: a number of ``kind`` above zero (``or_zero``: zero too)."""
    def parse(text: str):
        value = kind(text)
        if value < 0 or (value == 0 and not or_zero):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if or_zero else 'above 0'}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error
    return parse


seed_number = positive(int, or_zero=True)  # torch and numpy refuse negative seeds


def comma_list(kind):
    """An argparse type: comma-separated values of ``kind``."""
    def parse(text: str) -> list:
        return [kind(part) for part in text.split(",") if part.strip()]

    parse.__name__ = kind.__name__
    return parse


def resize_mode(text: str) -> str | float:
    """``--image-resize``: imagenet, fit, or the crop's share of the shorter side in (0, 1]."""
    if text in data.RESIZE_MODES:
        return text
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(f"must be {' or '.join(data.RESIZE_MODES)} or a number in (0, 1], not {text}")
    return share


def shard_spec(text: str | None) -> tuple[int, int] | None:
    """``--shard I/N`` as (I, N); None when not given."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise SystemExit(f"fewprune: error: --shard wants I/N (e.g. 0/2), not {text!r}") from None
    return index, count


def option_setting(text: str) -> tuple[str, object]:
    """``--option PART.NAME=VALUE`` → ``("PART.NAME", value)``, the value read as YAML (0.95, false, [0.1, 0.7])."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(f"{text!r}: write PART.NAME=VALUE, e.g. allocation.max_ratio=0.95")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not YAML ({err})") from None


def fraction_list(text: str) -> list[float]:
    """``0:0.9:0.1`` (start:stop:step, inclusive) or ``0,0.3,0.5``."""
    if ":" in text:
        start, stop, step = (float(v) for v in text.split(":"))
        count = round((stop - start) / step)
        return [round(start + i * step, 6) for i in range(count + 1)]
    return [float(v) for v in text.split(",")]


def input_shape(text: str) -> tuple[int, int, int]:
    """``C,H,W`` as a tuple of three positive ints; anything else is refused with the form wanted."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise SystemExit(f"--input-shape {text!r}: want C,H,W, e.g. 3,224,224")
    return shape


def count_or_auto(text: str) -> int | str:
    """``--blocks``: a count, or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or 'auto', not {text!r}") from None
