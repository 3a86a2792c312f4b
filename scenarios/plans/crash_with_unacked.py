"""A sender, then a receiver, killed (SIGKILL) with messages in flight and started again
from its durable store (docs/store.md): the sender resends every message it had not got
an ack for, the receiver re-acks what it had delivered, and everything is delivered
exactly once. Direct link only (no TURN), or a relay would route around the cuts."""

# Sender: the data path is cut first, so the sender's messages stay unacked (its /state
# must count them all); it is killed, the cut healed, and it is started again. Receiver:
# only its direction is cut, so it delivers messages whose acks never arrive (its log and
# the sender's /state show both); it is killed and started again, and must re-ack each
# resent one as a duplicate (its log shows them) and deliver none twice.

from __future__ import annotations

import asyncio

from peerlab.scenarios.lab import Lab

PEERS = 2
BODY_S = 14  # seconds its body takes in `make test`: runs start longest first
TOPOLOGY = {"peers": {"peer1": {"nat": "port-restricted"}, "peer2": {"nat": "full-cone"}}}
IN_FLIGHT = 20
ACKS_CUT = 5
"""Messages sent while the receiver's direction is cut. The cut drops its SCTP
acknowledgements too, so the sender's SCTP stops once its congestion window is full of
unacknowledged chunks (heartbeats included; RFC 4960 7.2): some of them arrive, not all."""
SENDER, RECEIVER = "peer1", "peer2"


async def run(lab: Lab) -> None:
    await _connect(lab)
    await lab.send_texts(SENDER, RECEIVER, "before", count=5)
    await lab.assert_delivered([(SENDER, RECEIVER)])
    await _sender_crash(lab)
    await _receiver_crash(lab)
    await lab.assert_delivered([(SENDER, RECEIVER)], timeout=60)
    for conversation in ("before", "sender-crash", "receiver-crash"):
        await lab.assert_same_history(SENDER, RECEIVER, conversation)


async def _connect(lab: Lab) -> None:
    # A restarted agent forgets link options: connect (both ends without TURN) each time.
    await lab.connect(SENDER, RECEIVER, turn=False)


async def _unacked(lab: Lab) -> int:
    return (await lab.agents[SENDER].state())["links"][RECEIVER]["unacked"]


async def _sender_crash(lab: Lab) -> None:
    cut = await lab.faults.partition(SENDER, RECEIVER)
    await lab.send_texts(SENDER, RECEIVER, "sender-crash", count=IN_FLIGHT)
    unacked = await _unacked(lab)
    assert unacked == IN_FLIGHT, f"{SENDER} has {unacked} unacked messages, not {IN_FLIGHT}"
    lab.progress(f"{SENDER} holds {unacked} unacked messages: killing it")
    # The restarted agent continues this event log; the other end may reconnect to it
    # before this script asks it anything.
    mark = (await lab.agents[SENDER].state())["last_event"]
    await lab.kill(SENDER)
    await lab.faults.clear(cut)
    await lab.restart(SENDER)
    await _connect(lab)
    resent = await lab.agents[SENDER].wait(
        "retransmitted", reason="reconnect", count=IN_FLIGHT, since=mark, timeout=30,
        **{"message.conversation": "sender-crash"},
    )  # fmt: skip
    lab.progress(f"restarted {SENDER} resent {len(resent)} messages from its store")
    # Delivered and acked before the receiver's phase: its cut must meet its own messages
    # only. Under `lossy`, 19 resends still in flight arrived during that cut, ahead of
    # the 5 it sends, and those did not cross before the link timed out.
    await lab.assert_delivered([(SENDER, RECEIVER)])


async def _receiver_crash(lab: Lab) -> None:
    mark = (await lab.agents[RECEIVER].state())["last_event"]
    # Only RECEIVER → SENDER: the messages arrive, their acks do not. Sent as soon as the
    # cut is in place, not after its proof: about 1 s into the cut, the sender's SCTP
    # stops sending new data (its unacknowledged heartbeats fill the window, RFC 4960
    # 6.3.3), and after 2.5 s the agent gives the link up; a proof slowed by load took
    # 6 and 9 s, and nothing was delivered.
    cut = await lab.faults.partition(
        SENDER,
        RECEIVER,
        direction="b->a",
        during=lambda: lab.send_texts(SENDER, RECEIVER, "receiver-crash", count=ACKS_CUT),
    )
    await lab.agents[RECEIVER].wait(
        "delivered", since=mark, timeout=15, **{"message.conversation": "receiver-crash"}
    )
    await asyncio.sleep(1.0)  # for the others that fit in the window
    delivered = await lab.agents[RECEIVER].events(mark, kind="delivered")
    delivered = [e for e in delivered if e["message"]["conversation"] == "receiver-crash"]
    unacked = await _unacked(lab)
    assert unacked == ACKS_CUT, (
        f"{RECEIVER} delivered {len(delivered)} messages but {SENDER} has {unacked} unacked, "
        f"not {ACKS_CUT}: the acks were not cut"
    )
    lab.progress(
        f"{RECEIVER} delivered {len(delivered)} of {ACKS_CUT} messages whose acks were cut: "
        "killing it"
    )
    mark = (await lab.agents[RECEIVER].state())["last_event"]
    await lab.kill(RECEIVER)
    # Its last acks may still be on their way (a shaped link's delay line): the cut
    # stays until they have reached it, or they would arrive after the kill.
    await lab.faults.drained(cut)
    await lab.faults.clear(cut)
    await lab.restart(RECEIVER)
    await _connect(lab)
    duplicates = await lab.agents[RECEIVER].wait(
        "duplicate", reacked=True, count=len(delivered), since=mark, timeout=30,
        **{"message.conversation": "receiver-crash"},
    )  # fmt: skip
    lab.progress(
        f"restarted {RECEIVER} re-acked {len(duplicates)} resent messages it had delivered"
    )
