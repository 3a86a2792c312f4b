"""The agent's durable store: its outbox and its inbox's delivery state, in one SQLite file.

A restarted agent must resend what it accepted and was not acked, and must not deliver
again what it delivered before. Both live here (format: docs/store.md):

    meta(key, value)                  format name, format version, the sender's epoch
    next_seq(remote, conversation)    the next sequence number the sender assigns
    outbox(position, remote, id, frame)         accepted reliable messages not yet acked
    inbox(remote, epoch, conversation, expected) the next seq each stream delivers
    unlogged(remote, id, frame)       the last delivery batch per remote, until the
                                      event log is known to hold it (see `deliver`)

The store does not decide anything (peer/reliability.py does); it records the decisions.
SQLite from the standard library, in WAL mode, no server. `sync` is the durability
setting: `always` commits every accepted message (and every delivery batch) before the
call returns, with `synchronous=FULL`; a number N commits at most every N ms (the caller
runs `commit` on a timer), so a crash may lose the last N ms of accepted messages — a
restarted sender then skips `SEQ_GAP` sequence numbers so that it never reuses one the
lost messages had on the wire. Acks of delivered messages are sent only after the
delivery is committed (`commit` before acking), in both modes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from peerlab.peer.protocol import ChannelMessage, ProtocolError, decode, encode

FORMAT = "peerlab-agent-store"
VERSION = 1
SEQ_GAP = 1 << 20
"""How far a restarted sender in batched mode jumps ahead in each conversation."""

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE next_seq (
    remote TEXT NOT NULL, conversation TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (remote, conversation));
CREATE TABLE outbox (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    remote TEXT NOT NULL, id TEXT NOT NULL UNIQUE, frame TEXT NOT NULL);
CREATE TABLE inbox (
    remote TEXT NOT NULL, epoch TEXT NOT NULL, conversation TEXT NOT NULL,
    expected INTEGER NOT NULL, PRIMARY KEY (remote, epoch, conversation));
CREATE TABLE unlogged (remote TEXT NOT NULL, id TEXT NOT NULL, frame TEXT NOT NULL);
"""


_OS_ERRORS = frozenset(
    (
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
    )
)
"""SQLite's primary error codes that say the system refused (permissions, a full disk...),
not that the file is damaged: moving the store aside would not help."""


class StoreError(RuntimeError):
    """The store cannot be trusted or opened; the message says why and how to recover."""


@dataclass
class RemoteState:
    """What a previous incarnation left for one remote peer."""

    next_seq: dict[str, int] = field(default_factory=dict)
    unacked: list[ChannelMessage] = field(default_factory=list)
    """In the order they were accepted."""
    expected: dict[tuple[str, str], int] = field(default_factory=dict)
    """(epoch, conversation) → the next seq to deliver."""
    unlogged: list[ChannelMessage] = field(default_factory=list)


def parse_sync(value: str) -> float | None:
    """`always` → None (commit every message); a number of milliseconds → that number."""
    if value == "always":
        return None
    try:
        ms = float(value)
    except ValueError:
        raise ValueError(f"store sync must be 'always' or milliseconds, not {value!r}") from None
    if not 0 < ms <= 60_000:
        raise ValueError(f"store sync must be in (0, 60000] ms, not {value!r}")
    return ms


class Store:
    """One agent's durable state. Open it with `Store.open(path, sync_ms)`."""

    def __init__(self, db: sqlite3.Connection, path: Path, sync_ms: float | None):
        self._db = db
        self.path = path
        self.sync_ms = sync_ms
        self.epoch = self._meta("epoch")
        self._dirty = False

    @classmethod
    def open(
        cls, path: Path, sync_ms: float | None = None, owner: tuple[int, int] | None = None
    ) -> Store:
        """Open (creating if missing) the store at `path`; StoreError if it cannot be used
        or is not sound. `owner`: (uid, gid) a new file is handed to (SQLite gives its WAL
        files the same)."""
        new = _prepare(path, owner)
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if sync_ms is None else 'NORMAL'}")
            if new:
                cls._create(db)
            cls._check(db, path)
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorcode & 0xFF in _OS_ERRORS:  # the low byte: the primary code
                raise StoreError(
                    f"store {path} cannot be opened: {exc} (SQLite needs to read and write "
                    f"it, its -wal and -shm files, and its folder)"
                ) from None
            raise StoreError(_untrusted(path, str(exc))) from None
        store = cls(db, path, sync_ms)
        db.execute("BEGIN")
        return store

    @staticmethod
    def _create(db: sqlite3.Connection) -> None:
        db.executescript(_SCHEMA)
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("format", FORMAT), ("version", str(VERSION)), ("epoch", uuid.uuid4().hex[:16])],
        )
        db.execute(f"PRAGMA user_version={VERSION}")

    @staticmethod
    def _check(db: sqlite3.Connection, path: Path) -> None:
        (result,) = db.execute("PRAGMA quick_check").fetchone()
        if result != "ok":
            raise StoreError(_untrusted(path, f"integrity check: {result}"))
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise StoreError(_untrusted(path, f"not a {FORMAT} file"))
        if meta.get("version") != str(VERSION):
            raise StoreError(
                f"store {path} has format version {meta.get('version')}; this agent reads "
                f"version {VERSION} only (docs/store.md)"
            )

    def _meta(self, key: str) -> str:
        (value,) = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return value

    # ---- reading what a previous incarnation left ----

    def load(self) -> dict[str, RemoteState]:
        """Per remote peer: next sequence numbers, unacked messages, delivery state;
        StoreError if what is stored cannot be read back."""
        try:
            return self._load()
        except (sqlite3.DatabaseError, ProtocolError) as exc:
            raise StoreError(_untrusted(self.path, f"reading it back: {exc}")) from None

    def _load(self) -> dict[str, RemoteState]:
        state: dict[str, RemoteState] = {}
        gap = 0 if self.sync_ms is None else SEQ_GAP
        for remote, conversation, seq in self._db.execute("SELECT * FROM next_seq"):
            state.setdefault(remote, RemoteState()).next_seq[conversation] = seq + gap
        for remote, frame in self._db.execute("SELECT remote, frame FROM outbox ORDER BY position"):
            state.setdefault(remote, RemoteState()).unacked.append(decode(frame))
        for remote, epoch, conversation, expected in self._db.execute("SELECT * FROM inbox"):
            state.setdefault(remote, RemoteState()).expected[epoch, conversation] = expected
        for remote, frame in self._db.execute("SELECT remote, frame FROM unlogged"):
            state.setdefault(remote, RemoteState()).unlogged.append(decode(frame))
        if gap:
            # Written now, so that a second crash before any send still skips past them.
            self._db.execute("UPDATE next_seq SET seq = seq + ?", (gap,))
            self._dirty = True
            self.commit()
        return state

    # ---- recording ----

    def accept(self, remote: str, message: ChannelMessage) -> None:
        """A reliable message `send_*` accepted (sequenced): durable before it returns
        when sync is `always`."""
        self._db.execute(
            "INSERT INTO outbox (remote, id, frame) VALUES (?, ?, ?)",
            (remote, message.id, encode(message, checked=True)),
        )
        self._db.execute(
            "INSERT INTO next_seq VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET seq = excluded.seq",
            (remote, message.conversation, message.seq + 1),
        )
        self._changed(urgent=True)

    def acked(self, message_ids: Iterable[str]) -> None:
        """Forget acked messages. Not urgent: a crash before the next commit only means
        they are resent, and the receiver re-acks duplicates."""
        self._db.executemany("DELETE FROM outbox WHERE id = ?", ((i,) for i in message_ids))
        self._changed(urgent=False)

    def deliver(self, remote: str, messages: Iterable[ChannelMessage]) -> None:
        """Messages delivered in order: their streams' next expected seq, and the batch
        itself until the next batch replaces it. The caller records the deliveries in the
        event log right after; a crash in between leaves them here (`unlogged`), and the
        restarted agent records them then. Commit before acking them."""
        self._db.execute("DELETE FROM unlogged WHERE remote = ?", (remote,))
        for message in messages:
            self._db.execute(
                "INSERT INTO inbox VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET expected = excluded.expected",
                (remote, message.epoch, message.conversation, message.seq + 1),
            )
            self._db.execute(
                "INSERT INTO unlogged VALUES (?, ?, ?)",
                (remote, message.id, encode(message, checked=True)),
            )
        self._changed(urgent=True)

    def commit(self) -> None:
        """Make everything recorded so far durable (cheap when nothing changed)."""
        if self._dirty:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
            self._dirty = False

    @property
    def dirty(self) -> bool:
        return self._dirty

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.commit()
            self._db.execute("COMMIT")
        self._db.close()

    def _changed(self, *, urgent: bool) -> None:
        self._dirty = True
        if urgent and self.sync_ms is None:
            self.commit()


def _prepare(path: Path, owner: tuple[int, int] | None) -> bool:
    """Make sure `path` is a regular file, creating it and its folders if missing (the file
    with mode 0600: it holds message bodies; handed to `owner`). True when it was created;
    StoreError naming the path and the problem if it cannot be used.

    Neither the file nor its WAL files are followed if they are symbolic links: whoever can
    write the store's folder must not be able to point the agent's writes at another file.
    The file is opened with O_NOFOLLOW; SQLite opens the WAL files itself and would follow
    them, so they are checked before."""
    for wal in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        if wal.is_symlink():
            raise StoreError(f"store {path}: {wal} is a symbolic link; refusing to follow it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = f"its folder cannot be created ({exc.strerror}: {exc.filename})"
        raise StoreError(f"store {path}: {problem}") from None
    try:
        fd, new = _open_or_create(path)
    except OSError as exc:
        raise StoreError(f"store {path} {_open_problem(path, exc)}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            # A FIFO or a device opens fine, and SQLite would block on it or fail oddly.
            raise StoreError(f"store {path} is not a regular file")
        if new and owner is not None:
            _hand_over(fd, path, owner)
    finally:
        os.close(fd)
    return new


def _hand_over(fd: int, path: Path, owner: tuple[int, int]) -> None:
    try:
        os.fchown(fd, *owner)
    except OSError as exc:
        uid, gid = owner
        raise StoreError(f"store {path} cannot be handed to {uid}:{gid}: {exc.strerror}") from None


def _open_or_create(path: Path) -> tuple[int, bool]:
    """A descriptor of the file at `path` (not through a symlink), and whether it was
    created (with mode 0600) just now."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
    except FileExistsError:
        return os.open(path, flags), False


def _open_problem(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP and path.is_symlink():
        return "is a symbolic link; refusing to follow it"
    if exc.errno == errno.EISDIR:
        return "is a directory, not a file"
    return f"cannot be opened: {exc.strerror}"


def _untrusted(path: Path, why: str) -> str:
    move = f"for f in {path} {path}-wal {path}-shm; do [ ! -e $f ] || mv $f $f.broken; done"
    return (
        f"store {path} cannot be trusted ({why}). The agent will not start on it: it could "
        f"resend or redeliver messages wrongly. Move it and its WAL files aside to start "
        f"with an empty store: `{move}` (docs/store.md, 'Recovery')"
    )
