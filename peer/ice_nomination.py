"""Keep the highest-priority nominated ICE pair: a correction to aioice's pair selection.

aioice nominates aggressively: the controlling agent puts USE-CANDIDATE in every check,
so every pair whose check succeeds is nominated, and ICE completes at the first one. But
`Connection.check_complete` makes *each* newly nominated pair the one data is sent on
(`_nominated[component] = pair`), also after completion. A lower-priority check still in
flight when the first one succeeds — under load, when a busy remote answers several
checks in one turn of its event loop — or a later USE-CANDIDATE check arriving at the
controlled agent then replaces the better pair: a relay pair is used although the host
pair was nominated first, and the two ends may even send on different pairs. RFC 5245
(§8.1.1.2, §11.1.1) says an agent with several nominated pairs uses the one with the
highest priority; this module makes aioice do that.

Measured in a 16-agent full mesh on one Docker bridge (every pair reachable by host
candidates; aioice INFO logs in every agent): the host pair was the first to succeed on
238 of 240 connection ends, yet 71-130 of 240 ends (three runs) were sending on a relay
pair afterwards, and only 118-142 ends (two runs) used the same pair as the other end. With
`install()`: 0-1 of 240 (four runs), that one a relay check answered before the host
check, which aggressive nomination still lets win (README, "Scale").

`install()` is idempotent and process-wide; it wraps a private method of aioice, so it
checks that the method is there and does nothing otherwise (`installed()` tells).
"""

from __future__ import annotations

from typing import Any

try:
    from aioice import ice as _ice
except ImportError:  # pragma: no cover - aioice comes with aiortc
    _ice = None

_MARK = "_peerlab_keeps_best_nominated"


def _priority(connection: Any, pair: Any) -> int:
    return _ice.candidate_pair_priority(
        pair.local_candidate, pair.remote_candidate, connection.ice_controlling
    )


def install() -> bool:
    """Wrap aioice's `Connection.check_complete`; True when the correction is active."""
    if _ice is None:
        return False
    connection = getattr(_ice, "Connection", None)
    original = getattr(connection, "check_complete", None)
    if original is None or not hasattr(_ice, "candidate_pair_priority"):
        return False
    if getattr(original, _MARK, False):
        return True

    def check_complete(self: Any, pair: Any) -> None:
        nominated = getattr(self, "_nominated", None)
        before = nominated.get(pair.component) if isinstance(nominated, dict) else None
        original(self, pair)
        after = self._nominated.get(pair.component) if before is not None else None
        # A worse pair nominated after a better one: keep sending on the better one.
        if (
            after is not None
            and after is not before
            and (_priority(self, after) < _priority(self, before))
        ):
            self._nominated[pair.component] = before

    setattr(check_complete, _MARK, True)
    check_complete.__doc__ = original.__doc__
    connection.check_complete = check_complete
    return True


def installed() -> bool:
    connection = getattr(_ice, "Connection", None) if _ice is not None else None
    return bool(getattr(getattr(connection, "check_complete", None), _MARK, False))
