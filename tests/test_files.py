"""Atomic writes: whole files or none, also with several processes writing one file (two sweep shards
regenerating one report)."""

import subprocess
import sys

import pytest

from fewprune.files import atomic_path, write_text_atomic

WRITER = """
import sys
from fewprune.files import write_text_atomic
path, mark = sys.argv[1], sys.argv[2]
for i in range(300):
    write_text_atomic(path, mark * 20000 + "\\n")
"""


def test_processes_writing_one_file_at_once_never_fail_and_leave_one_whole_file(tmp_path):
    target = tmp_path / "report.md"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), mark], stderr=subprocess.PIPE, text=True)
               for mark in "ab"]
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    assert target.read_text() in ("a" * 20000 + "\n", "b" * 20000 + "\n")
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temporary file left behind


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "state.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_an_output_that_could_not_be_written_is_refused_before_any_work_and_nothing_is_created(tmp_path):
    import os

    from fewprune.files import check_writable

    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(ValueError, match=r"--out .*notes.txt/run cannot be written: .*notes.txt is a file, not a folder"):
        check_writable(tmp_path / "notes.txt" / "run")
    check_writable(tmp_path / "new" / "deeper" / "run")  # folders still to be made are fine
    assert not (tmp_path / "new").exists()
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="may not write in"):
            check_writable(locked / "run.json", "--json")


def test_force_may_replace_only_what_fewprune_wrote(tmp_path):
    from fewprune.files import check_replaceable, mark_output

    for name, files in (("marked", []), ("result-before-marks", ["plan.json"]), ("empty", []), ("mine", ["a.txt"])):
        folder = tmp_path / name
        folder.mkdir()
        for file in files:
            (folder / file).write_text("{}")
    mark_output(tmp_path / "marked")
    for name in ("marked", "result-before-marks", "empty", "missing"):
        check_replaceable(tmp_path / name)
    with pytest.raises(ValueError, match="holds files fewprune did not write"):
        check_replaceable(tmp_path / "mine")
    with pytest.raises(ValueError, match="is a file"):
        check_replaceable(tmp_path / "mine" / "a.txt")


def test_an_output_folder_appears_whole_replaces_only_on_success_and_has_the_usual_mode(tmp_path):
    import os

    from fewprune.files import OUTPUT_MARK, output_folder

    out = tmp_path / "figures"
    with output_folder(out, force=False) as staging:
        (staging / "a.png").write_text("first")
        assert not out.exists()  # nothing at the output until the block ends
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARK, "a.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # as mkdir makes folders, not a temporary folder's 0700

    with pytest.raises(FileExistsError, match="already exists"), output_folder(out, force=False):
        pass
    with pytest.raises(KeyboardInterrupt), output_folder(out, force=True) as staging:
        (staging / "b.png").write_text("half")
        raise KeyboardInterrupt
    assert (out / "a.png").read_text() == "first" and not (out / "b.png").exists()
    with output_folder(out, force=True) as staging:
        (staging / "b.png").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARK, "b.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]  # no staging or swapped-out folder left
