"""Progress bars (rich) that stay quiet when asked or when output is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], total: int | None = None, description: str = "", enabled: bool = True) -> Iterator[T]:
    """Iterate ``items`` with a transient rich progress bar on stderr (only on a terminal)."""
    if not enabled or not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def progress_note(message: str, enabled: bool = True) -> None:
    """One line of progress on stderr, under the same rule as :func:`progress_bar` (only on a terminal)."""
    if enabled and sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)
