"""PeerLab WebSocket signaling server.

Peers register in a room with an HMAC token, learn who else is there, and relay
WebRTC offers, answers, ICE candidates and byes to each other through the server.
The wire protocol is specified in ``docs/signaling-protocol.md``.

Modules:

- :mod:`signaling.auth`: registration tokens and TURN REST credentials (pure).
- :mod:`signaling.frames`: parsing and validation of signaling frames (pure).
- :mod:`signaling.ratelimit`: per-connection token bucket and log throttle (pure, time
  passed in).
- :mod:`signaling.limits`: caps on connections, overall and per address (pure).
- :mod:`signaling.outbox`: a client's outbound queue, bounded in frames and bytes (pure).
- :mod:`signaling.loop_errors`: rate-limited logging of the event loop's errors.
- :mod:`signaling.server`: the asyncio server (:class:`SignalingServer`).
- ``python -m peerlab.signaling``: the command line entry point.
"""
