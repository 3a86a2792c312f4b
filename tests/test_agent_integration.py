"""In-process integration: real aiortc agents on loopback through a real signaling server."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from peerlab.peer.agent import Agent
from peerlab.peer.manager import ManagerConfig
from peerlab.peer.message_channel import ChannelConfig
from peerlab.peer.protocol import ChannelMessage, MessageType
from peerlab.peer.state import P2PConnectionState

pytestmark = pytest.mark.integration


def _delivered_ids(agent: Agent, sender: str) -> list[str]:
    return [
        e["message"]["id"] for e in agent.events.since(0, {"kind": "delivered", "peer": sender})
    ]


def _acked_ids(agent: Agent, receiver: str) -> list[str]:
    return [e["message"]["id"] for e in agent.events.since(0, {"kind": "acked", "peer": receiver})]


def _conversation(x: Agent, y: Agent) -> str:
    return "-".join(sorted((x.peer_id, y.peer_id)))


def _send_every_type(sender: Agent, receiver: Agent) -> list[ChannelMessage]:
    """One of each reliable type plus a typing indicator; returns the reliable ones."""
    to, conv = receiver.peer_id, _conversation(sender, receiver)
    first = sender.send(
        to, MessageType.TEXT, conversation=conv, body=f"hello {to}, from {sender.peer_id} ✓"
    )
    doomed = sender.send(to, MessageType.TEXT, conversation=conv, body="soon deleted")
    reliable = [
        first,
        doomed,
        sender.send(
            to,
            MessageType.EDIT,
            conversation=conv,
            target=first.id,
            body=f"edited by {sender.peer_id}",
        ),
        sender.send(
            to, MessageType.REACTION, conversation=conv, target=first.id, emoji="👍", action="add"
        ),
        sender.send(to, MessageType.DELETE, conversation=conv, target=doomed.id),
    ]
    assert sender.send(to, MessageType.TYPING, conversation=conv, state="started") is not None
    return reliable


async def test_full_mesh_of_three_exchanges_every_type_with_every_ack(make_agent):
    agents = {p: await make_agent(p) for p in ("alice", "bob", "carol")}
    pairs = list(itertools.combinations(agents.values(), 2))
    await asyncio.gather(*(x.connect(y.peer_id) for x, y in pairs))

    sent = {
        (s.peer_id, r.peer_id): _send_every_type(s, r)
        for s, r in itertools.permutations(agents.values(), 2)
    }

    for (sender, receiver), messages in sent.items():
        await agents[sender].events.wait_for(
            {"kind": "acked", "peer": receiver}, count=len(messages), timeout=15
        )
        ids = [m.id for m in messages]
        # Every reliable message acked exactly once, and nothing else acked (typing never).
        assert sorted(_acked_ids(agents[sender], receiver)) == sorted(ids)
        # Delivered exactly once and in send order.
        assert _delivered_ids(agents[receiver], sender) == ids
        await agents[receiver].events.wait_for(
            {"kind": "received", "peer": sender, "message.type": "typing"}, timeout=5
        )

    for x, y in pairs:
        conv = _conversation(x, y)
        here, there = x.history(y.peer_id, conv), y.history(x.peer_id, conv)
        assert here["entries"] == there["entries"]
        assert here["anomalies"] == there["anomalies"] == []
        by_sender = {e["sender"]: [] for e in here["entries"]}
        for entry in here["entries"]:
            by_sender[entry["sender"]].append(entry)
        for sender_id, (first, doomed) in by_sender.items():
            assert first["body"] == f"edited by {sender_id}" and first["edits"] == 1
            assert first["reactions"] == {"👍": [sender_id]}
            assert doomed["deleted"] and doomed["body"] == ""


async def test_closed_data_channel_recovers_without_loss_or_duplicates(make_agent):
    alice, bob = await make_agent("alice"), await make_agent("bob")
    await alice.connect("bob")
    total = 120

    async def chat(sender: Agent, to: str) -> list[str]:
        ids = []
        for i in range(total):
            ids.append(sender.send(to, MessageType.TEXT, conversation="c", body=f"#{i}").id)
            await asyncio.sleep(0.005)
        return ids

    sending = asyncio.gather(chat(alice, "bob"), chat(bob, "alice"))
    await bob.events.wait_for({"kind": "delivered", "peer": "alice"}, count=total // 3, timeout=10)
    mark = alice.events.last_seq
    alice.manager.channel("bob")._channel.close()  # the fault: the live channel goes away
    alice_ids, bob_ids = await sending

    await alice.events.wait_for({"kind": "acked", "peer": "bob"}, count=total, timeout=30)
    await bob.events.wait_for({"kind": "acked", "peer": "alice"}, count=total, timeout=30)
    assert _delivered_ids(bob, "alice") == alice_ids
    assert _delivered_ids(alice, "bob") == bob_ids
    # It really was torn down and rebuilt, not merely paused.
    states = [e["new"] for e in alice.events.since(mark, {"kind": "state", "peer": "bob"})]
    assert "failed" in states and states[-1] == "connected"
    assert alice.manager.state("bob") is P2PConnectionState.CONNECTED


async def test_typing_throttled_end_to_end_and_never_acked(make_agent):
    window = 1.0
    config = ManagerConfig(channel=ChannelConfig(typing_window=window))
    alice, bob = await make_agent("alice", config), await make_agent("bob", config)
    await alice.connect("bob")

    for _ in range(20):  # a user typing fast for 0.4 s
        alice.send("bob", MessageType.TYPING, conversation="c", state="started")
        await asyncio.sleep(0.02)
    alice.send("bob", MessageType.TYPING, conversation="c", state="stopped")

    received = await bob.events.wait_for(
        {"kind": "received", "peer": "alice", "message.type": "typing"}, count=2, timeout=5
    )
    assert [e["message"]["state"] for e in received] == ["started", "stopped"]
    sent = alice.events.since(0, {"kind": "sent", "message.type": "typing"})
    assert len(sent) == 2
    # The events carry the instants the throttle decided at (not when they were recorded,
    # which a pause of the process can delay by milliseconds), each rounded to the µs.
    assert sent[1]["t_mono"] - sent[0]["t_mono"] >= window - 1e-6
    # Nothing else arrives: the other 19 "started" were dropped, not queued.
    await asyncio.sleep(window + 0.2)
    assert len(bob.events.since(0, {"kind": "received", "message.type": "typing"})) == 2
    assert alice.events.since(0, {"kind": "acked"}) == []
    assert alice.events.since(0, {"kind": "retransmitted"}) == []


async def test_silent_link_reported_disconnected_within_three_seconds(make_agent):
    alice, bob = await make_agent("alice"), await make_agent("bob")
    await alice.connect("bob")
    mark = alice.events.last_seq
    silenced = time.monotonic()
    # Bob stops reading and sending on the channel while the connection itself stays up.
    bob.manager.channel("alice").detach()

    (event,) = await alice.events.wait_for(
        {"kind": "state", "peer": "bob", "new": "disconnected"}, since=mark, timeout=5
    )
    detected_after = event["t_mono"] - silenced
    config = ChannelConfig()
    assert detected_after <= config.heartbeat_timeout + config.heartbeat_interval + 0.1

    # The link is rebuilt and a message sent while it was down arrives once.
    late = alice.send("bob", MessageType.TEXT, conversation="c", body="after the outage")
    await alice.events.wait_for({"kind": "acked", "peer": "bob", "message.id": late.id}, timeout=30)
    assert _delivered_ids(bob, "alice") == [late.id]


async def test_invalid_frames_are_reported_and_the_channel_keeps_working(make_agent):
    alice, bob = await make_agent("alice"), await make_agent("bob")
    await alice.connect("bob")
    raw = alice.manager.channel("bob")._channel
    bad_frames = {
        "bad_json": "{not json",
        "unknown_type": '{"type":"shout","id":"x1","timestamp":1,"sender":"alice"}',
        "missing_field": '{"type":"text","id":"x2","timestamp":1,"sender":"alice"}',
        "too_big": "x" * 70_000,
        "wrong_sender": '{"type":"heartbeat","id":"x3","timestamp":1,"sender":"mallory"}',
    }
    for frame in bad_frames.values():
        raw.send(frame)
    good = alice.send("bob", MessageType.TEXT, conversation="c", body="still here")

    await alice.events.wait_for({"kind": "acked", "message.id": good.id}, timeout=10)
    errors = bob.events.since(0, {"kind": "protocol_error"})
    assert sorted(e["code"] for e in errors) == sorted(bad_frames)
    assert _delivered_ids(bob, "alice") == [good.id]
    assert bob.manager.state("alice") is P2PConnectionState.CONNECTED


async def test_glare_both_sides_offer_at_once_converges(make_agent):
    alice, bob = await make_agent("alice"), await make_agent("bob")
    await asyncio.gather(alice.connect("bob"), bob.connect("alice"))
    message = bob.send("alice", MessageType.TEXT, conversation="c", body="after glare")
    await bob.events.wait_for({"kind": "acked", "message.id": message.id}, timeout=10)
    assert alice.manager.state("bob") is bob.manager.state("alice") is P2PConnectionState.CONNECTED
    # Both offered; the smaller id kept its offer and the other answered it.
    assert [e["kept"] for e in alice.events.since(0, {"kind": "glare"})] == ["ours"]
    assert [e["kept"] for e in bob.events.since(0, {"kind": "glare"})] == ["theirs"]


async def test_an_offer_lost_with_the_signaling_connection_is_sent_again(make_agent):
    """Seen in the nat_rebinding scenario: an offer written into a signaling connection
    that had just died was lost, and the offerer waited out the whole answer timeout."""
    alice, bob = await make_agent("alice"), await make_agent("bob")
    send = alice.signaling.send
    lost: list[dict] = []

    async def into_a_dead_connection(frame: dict) -> None:
        if frame["type"] == "offer" and not lost:
            lost.append(frame)  # "written", never delivered; then the connection drops
            await alice.signaling._ws.close()
            return
        await send(frame)

    alice.signaling.send = into_a_dead_connection
    started = time.monotonic()
    await alice.connect("bob", timeout=8)  # the answer timeout alone is 15 s
    assert lost and time.monotonic() - started < 8
    assert bob.manager.state("alice") is P2PConnectionState.CONNECTED


async def test_a_bye_that_crosses_our_own_close_does_not_kill_the_next_connection(make_agent):
    alice = await make_agent("alice")
    await make_agent("bob")
    await alice.connect("bob")
    old_session = alice.manager._links["bob"].session
    assert old_session
    await alice.manager.disconnect("bob")
    # Alice connects again at once; bob's own bye for the old session (he was closing
    # it too) arrives only now, while the new attempt is under way.
    connecting = asyncio.create_task(alice.connect("bob"))
    await asyncio.sleep(0)
    mark = alice.events.last_seq
    await alice.manager.handle_signal(
        {"type": "bye", "from": "bob", "session": old_session, "reason": "disconnect"}
    )
    await asyncio.wait_for(connecting, timeout=20)
    assert alice.manager.state("bob") is P2PConnectionState.CONNECTED
    assert alice.events.since(mark, {"kind": "stale_bye", "peer": "bob"})
    # A bye for the session that is up now still closes it: bob is done with us.
    current = alice.manager._links["bob"].session
    await alice.manager.handle_signal({"type": "bye", "from": "bob", "session": current})
    assert alice.manager.state("bob") is P2PConnectionState.CLOSED


async def test_a_bye_for_an_attempt_we_never_saw_does_not_kill_the_next_connection(make_agent):
    """Seen in nat_matrix under the satellite profile: both ends closed at once while bob
    was offering again after a failed attempt, his offer not yet sent; his bye named that
    attempt's session, which alice never saw. She obeyed it and her new connect waited
    forever, with no attempt left on either side."""
    alice = await make_agent("alice")
    await make_agent("bob")
    await alice.connect("bob")
    await alice.manager.disconnect("bob")
    connecting = asyncio.create_task(alice.connect("bob"))
    await asyncio.sleep(0)
    mark = alice.events.last_seq
    await alice.manager.handle_signal(
        {"type": "bye", "from": "bob", "session": "an-attempt-alice-never-saw"}
    )
    await asyncio.wait_for(connecting, timeout=20)
    assert alice.manager.state("bob") is P2PConnectionState.CONNECTED
    assert alice.events.since(mark, {"kind": "stale_bye", "peer": "bob"})


async def test_a_bye_still_closes_a_link_this_side_never_closed(make_agent):
    """Only a close of our own can be echoed: otherwise a bye for any session stops the
    link (the remote may not have seen our latest attempt when it closed)."""
    alice = await make_agent("alice")
    await make_agent("bob")
    await alice.connect("bob")
    await alice.manager.handle_signal({"type": "bye", "from": "bob", "session": "older"})
    assert alice.manager.state("bob") is P2PConnectionState.CLOSED
