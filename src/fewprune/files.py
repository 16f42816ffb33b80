"""Files written whole or not at all, also when several processes write the same file at once.

Each writer writes a temporary sibling of its own and renames it onto the
file: a reader sees the old file or a new whole one, and two writers (two
sweep shards regenerating one report) never rename each other's temporary
file away: the last whole one wins.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path``, unique to this writer, to write to; renamed onto ``path`` when the block
    ends without error, removed when it raises (or is interrupted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
