"""Locks that PeerLab processes of one user share on this machine: an exclusive `flock`
on a file in `$TMPDIR/peerlab-<uid>-<kind>/`. The kernel drops it when its holder closes
the file or exits (even by SIGKILL), so a dead run never keeps one. Used for stack slots
(scenarios/stack_slots.py) and address prefixes (scenarios/subnets.py).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path


def lock_dir(kind: str) -> Path:
    """The folder of one kind of lock, per user: one user's runs never wait for another's."""
    folder = Path(tempfile.gettempdir()) / f"peerlab-{os.getuid()}-{kind}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def try_lock(path: Path) -> int | None:
    """The open descriptor holding `path`'s lock, or None when another holds it. Closing
    the descriptor releases the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
