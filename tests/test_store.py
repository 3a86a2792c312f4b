"""The agent's durable store (peer/store.py) on real SQLite files: what survives a kill,
what a batched store may lose and how it avoids reusing sequence numbers, and the refusal
to start on a store that cannot be trusted or used."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap

import pytest

from peerlab.peer.protocol import ChannelMessage, MessageType, encode
from peerlab.peer.store import SEQ_GAP, Store, StoreError, parse_sync


def text(i: int, conversation: str = "c", epoch: str = "e1") -> ChannelMessage:
    return ChannelMessage(
        type=MessageType.TEXT,
        id=f"m{i}",
        timestamp=1_700_000_000_000 + i,
        sender="alice",
        conversation=conversation,
        body=f"hello {i}",
        epoch=epoch,
        seq=i,
        base=0,
    )


def test_accepted_messages_survive_until_acked(tmp_path):
    path = tmp_path / "agent.db"
    store = Store.open(path)
    for i in range(3):
        store.accept("bob", text(i))
    store.acked(["m1"])
    store.close()

    again = Store.open(path)
    state = again.load()["bob"]
    assert [m.id for m in state.unacked] == ["m0", "m2"]
    assert state.unacked[0] == text(0)
    assert state.next_seq == {"c": 3}
    assert again.epoch == store.epoch


def test_always_mode_is_durable_when_accept_returns_even_after_sigkill(tmp_path):
    path = tmp_path / "agent.db"
    frames = [encode(text(i)) for i in range(5)]
    script = textwrap.dedent(
        f"""
        import os, pathlib, signal
        from peerlab.peer.protocol import decode
        from peerlab.peer.store import Store
        store = Store.open(pathlib.Path({str(path)!r}))
        for frame in {frames!r}:
            store.accept("bob", decode(frame))
        store.deliver("carol", [decode({encode(text(0, epoch="x"))!r})])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script])
    assert result.returncode == -signal.SIGKILL
    state = Store.open(path).load()
    assert [m.id for m in state["bob"].unacked] == [f"m{i}" for i in range(5)]
    assert state["carol"].expected == {("x", "c"): 1}
    assert [m.id for m in state["carol"].unlogged] == ["m0"]


def test_batched_mode_commits_on_demand_and_skips_seqs_after_a_restart(tmp_path):
    path = tmp_path / "agent.db"
    store = Store.open(path, sync_ms=50)
    store.accept("bob", text(0))
    assert store.dirty
    # Another reader sees only what was committed.
    assert Store.open(path).load() == {}
    store.commit()
    assert not store.dirty
    store.accept("bob", text(1))  # never committed: lost with the crash below
    store._db.close()  # a crash: no commit

    restarted = Store.open(path, sync_ms=50)
    state = restarted.load()["bob"]
    assert [m.id for m in state.unacked] == ["m0"]
    # seq 1 may be on the wire already: the next message must not reuse it.
    assert state.next_seq == {"c": 1 + SEQ_GAP}
    restarted._db.close()
    assert Store.open(path, sync_ms=50).load()["bob"].next_seq == {"c": 1 + 2 * SEQ_GAP}


def test_a_delivery_batch_replaces_the_previous_one_per_remote(tmp_path):
    store = Store.open(tmp_path / "agent.db")
    store.deliver("bob", [text(0), text(1)])
    store.deliver("bob", [text(2)])
    store.deliver("carol", [text(0, conversation="d")])
    state = store.load()
    assert state["bob"].expected == {("e1", "c"): 3}
    assert [m.id for m in state["bob"].unlogged] == ["m2"]
    assert state["carol"].expected == {("e1", "d"): 1}


def test_the_file_is_created_readable_by_its_owner_only(tmp_path):
    old = os.umask(0)
    try:
        Store.open(tmp_path / "agent.db").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "agent.db").stat().st_mode) == 0o600


def test_a_damaged_store_is_refused_with_the_recovery_command(tmp_path):
    path = tmp_path / "agent.db"
    path.write_bytes(b"not a database at all, just garbage " * 200)
    with pytest.raises(StoreError, match=r"cannot be trusted.*agent.db-wal .*mv \$f \$f.broken"):
        Store.open(path)


def test_a_store_of_another_format_or_version_is_refused(tmp_path):
    path = tmp_path / "agent.db"
    store = Store.open(path)
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '2' WHERE key = 'version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="format version 2"):
        Store.open(path)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE meta (key TEXT, value TEXT)").connection.close()
    with pytest.raises(StoreError, match="not a peerlab-agent-store file"):
        Store.open(other)


def test_a_directory_or_a_symlink_at_the_path_is_refused(tmp_path):
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="is a directory"):
        Store.open(tmp_path / "dir.db")
    (tmp_path / "link.db").symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(StoreError, match="symbolic link"):
        Store.open(tmp_path / "link.db")
    assert not (tmp_path / "elsewhere.db").exists()


def test_a_symlink_to_a_directory_is_reported_as_a_symlink(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "link.db").symlink_to(tmp_path / "dir")
    with pytest.raises(StoreError, match=f"store {tmp_path / 'link.db'} is a symbolic link"):
        Store.open(tmp_path / "link.db")


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_symlink_at_a_wal_file_is_not_followed(tmp_path, suffix):
    # SQLite opens these itself, following links: the agent would write through them.
    path = tmp_path / "agent.db"
    Store.open(path).close()
    target = tmp_path / "elsewhere"
    (tmp_path / f"agent.db{suffix}").symlink_to(target)
    with pytest.raises(StoreError, match=f"agent.db{suffix} is a symbolic link; refusing"):
        Store.open(path)
    assert not target.exists()


@pytest.mark.parametrize("depth", [1, 2])
def test_a_file_in_the_way_of_the_folder_is_refused(tmp_path, depth):
    (tmp_path / "afile").write_text("")
    path = tmp_path / "afile" / "sub" / "agent.db" if depth == 2 else tmp_path / "afile" / "x.db"
    with pytest.raises(StoreError, match=f"store {path}: its folder cannot be created"):
        Store.open(path)


def test_a_fifo_at_the_path_is_refused(tmp_path):
    os.mkfifo(tmp_path / "agent.db")
    with pytest.raises(StoreError, match="is not a regular file"):
        Store.open(tmp_path / "agent.db")


def test_a_store_sqlite_cannot_open_is_not_called_damaged(tmp_path):
    # Moving it aside (the recovery of a damaged store) would not help: say what failed.
    path = tmp_path / "agent.db"
    Store.open(path).close()
    (tmp_path / "agent.db-wal").mkdir()
    with pytest.raises(StoreError) as info:
        Store.open(path)
    assert str(info.value).startswith(
        f"store {path} cannot be opened: unable to open database file (SQLite needs"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes whatever the mode")
def test_permissions_that_refuse_the_agent_are_a_clear_error(tmp_path):
    path = tmp_path / "agent.db"
    Store.open(path).close()
    path.chmod(0o400)
    with pytest.raises(StoreError, match=f"store {path} cannot be opened: Permission denied"):
        Store.open(path)
    path.chmod(0o600)
    tmp_path.chmod(0o500)  # SQLite cannot create the WAL files beside it
    try:
        with pytest.raises(StoreError, match=f"store {path} cannot be opened: attempt to write"):
            Store.open(path)
        with pytest.raises(StoreError, match=r"its folder cannot be created \(Permission denied"):
            Store.open(tmp_path / "sub" / "agent.db")
    finally:
        tmp_path.chmod(0o700)


def test_sync_setting():
    assert parse_sync("always") is None
    assert parse_sync("20") == 20.0
    for bad in ("0", "-5", "never", "100000"):
        with pytest.raises(ValueError, match="store sync"):
            parse_sync(bad)


def test_a_new_store_is_handed_to_the_configured_owner(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can hand a file to another user")
    store = Store.open(tmp_path / "agent.db", owner=(4321, 8765))
    store.accept("bob", text(0))
    # While it is open: SQLite removes the WAL files when the last connection closes.
    for name in ("agent.db", "agent.db-wal", "agent.db-shm"):
        info = (tmp_path / name).stat()
        assert (info.st_uid, info.st_gid) == (4321, 8765), name
    store.close()


def test_a_stored_message_that_no_longer_reads_as_a_frame_is_a_store_error(tmp_path):
    path = tmp_path / "agent.db"
    store = Store.open(path)
    store.accept("bob", text(0))
    store.close()
    db = sqlite3.connect(path)
    db.execute('UPDATE outbox SET frame = \'{"type": "text"}\'')
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"cannot be trusted \(reading it back"):
        Store.open(path).load()
