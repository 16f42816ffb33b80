"""Claims: which process is running which family of jobs, so processes sharing a sweep never run one twice.

A claim is one JSON line in ``<results>.claims``: the family's id and the
claiming process (host, pid and the process's start time, so a reused pid is
not mistaken for the claimant). A claim holds while its process lives; a
process that died (Ctrl-C twice, a crash, a reboot) leaves a claim that the
next process simply takes over. Liveness can only be checked on the same host:
a claim from another host is held until its file is deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

from ..files import write_text_atomic
from .runner import read_results


def family_id(keys: list[str]) -> str:
    """A stable id of a family of jobs from its members' keys."""
    return hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux); None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the parenthesised command name


def this_process() -> dict:
    """The identity a claim records for the calling process."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # cannot look: another host's claim holds
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return owner.get("started") is None or _start_time(owner["pid"]) == owner["started"]


def claims_path(results: str | Path) -> Path:
    results = Path(results)
    return results.with_name(results.name + ".claims")


def read_claims(results: str | Path) -> list[dict]:
    """The claims recorded beside a results file (JSON lines, read like the results themselves)."""
    return read_results(claims_path(results))


def _live_claims(results: str | Path) -> list[dict]:
    return [c for c in read_claims(results) if _alive(c["owner"])]


def live_families(results: str | Path) -> set[str]:
    """The families that live processes hold claims on (being run now)."""
    return {c["family"] for c in _live_claims(results)}


def live_processes(results: str | Path) -> int:
    """How many live processes hold claims on the sweep's families now."""
    return len({json.dumps(c["owner"], sort_keys=True) for c in _live_claims(results)})


def try_claim(results: str | Path, family: str) -> bool:
    """Claim ``family`` for this process unless another live process holds it. Call under the results lock.

    The file is rewritten with only the live claims, so claims of finished
    processes do not pile up; the rewrite is atomic (temp file, rename).
    """
    me = this_process()
    live = _live_claims(results)
    if any(c["family"] == family and c["owner"] != me for c in live):
        return False
    if not any(c["family"] == family for c in live):
        live.append({"family": family, "owner": me})
    write_text_atomic(claims_path(results), "".join(json.dumps(c, sort_keys=True) + "\n" for c in live))
    return True
