"""Files written whole or not at all, also when several processes write the same file at once.

Each writer writes a temporary sibling of its own and renames it onto the
file: a reader sees the old file or a new whole one, and two writers (two
sweep shards regenerating one report) never rename each other's temporary
file away: the last whole one wins.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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


OUTPUT_MARK = ".fewprune-output"  # in every folder fewprune writes whole, so --force knows what it may replace


def check_replaceable(path: str | Path) -> None:
    """Refuse to replace ``path`` (``--force``) unless it is a folder fewprune wrote (its mark, or a result's
    ``plan.json``) or an empty one: a typo must never delete a user's files or folder."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise ValueError(f"{path} is a file, not an output folder: --force replaces only a folder fewprune wrote; "
                         "choose another --out")
    if (path / OUTPUT_MARK).exists() or (path / "plan.json").is_file() or not any(path.iterdir()):
        return
    raise ValueError(f"{path} holds files fewprune did not write: --force replaces only a folder fewprune wrote "
                     "(a result, or figures), so nothing of yours is deleted; choose another --out")


def check_output(path: str | Path, force: bool, out_flag: str = "--out", force_flag: str = "--force") -> None:
    """Refuse now, before any work, an output folder the command could not write at its end: one that exists
    without ``--force``, one ``--force`` may not replace (:func:`check_replaceable`), or one below a file or in a
    folder this user may not write to (:func:`check_writable`). The flags name, in the message, how the caller
    chooses the output and allows replacing it."""
    if Path(path).exists() and not force:
        raise FileExistsError(f"{path} already exists; choose another {out_flag} or pass {force_flag} to replace it")
    check_replaceable(path)
    check_writable(path)


def mark_output(folder: str | Path) -> None:
    """Mark ``folder`` as fewprune's output (what :func:`check_replaceable` looks for)."""
    (Path(folder) / OUTPUT_MARK).write_text("written by fewprune; `--force` may replace this folder\n")


@contextlib.contextmanager
def output_folder(path: str | Path, force: bool, out_flag: str = "--out", force_flag: str = "--force") -> Iterator[Path]:
    """A marked staging folder beside ``path`` to write a whole output into; when the block ends without error it
    takes ``path``'s place (an old folder is swapped out, then deleted), when it raises (or is interrupted) it is
    removed and ``path`` is as it was. ``path`` is checked first by :func:`check_output` (with the flags)."""
    path = Path(path)
    check_output(path, force, out_flag, force_flag)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:12]}")
    staging.mkdir()
    try:
        mark_output(staging)
        yield staging
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:12]}")
            os.replace(path, old)
            os.replace(staging, path)
            shutil.rmtree(old)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_writable(path: str | Path, flag: str = "--out") -> None:
    """Refuse now, before any work is spent, a ``path`` that could not be written at the end: one below a file, or
    in a folder this process may not write to (``flag`` names the option in the message). Nothing is created."""
    path = Path(path).absolute()
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{flag} {path} cannot be written: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path} cannot be written: this user may not write in {ancestor}")


def absolute_spec(spec: str, base: str | Path | None = None) -> str:
    """A model or dataset spec with its file path made absolute (a relative one read from ``base``, by default
    the working directory): ``path/to/file.py[:factory]`` and ``imagefolder:PATH``; other specs as they are.

    A result records its teacher and dataset this way, so ``--model RESULT`` works from any folder; a sweep config's
    paths, like its plugins', are read from the config's folder.
    """
    base = Path(base) if base is not None else Path.cwd()
    if spec.startswith("imagefolder:"):
        return "imagefolder:" + str((base / spec.removeprefix("imagefolder:")).resolve())
    if spec.endswith(".py") or ".py:" in spec:
        path, colon, factory = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
        return str((base / path).resolve()) + colon + factory
    return spec


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
