"""A restarted agent with a durable store (peer/store.py): real Agent objects on real
SQLite files and event logs, frames fed to their channels as the wire would."""

from __future__ import annotations

import json

from peerlab.peer.agent import Agent, AgentConfig
from peerlab.peer.protocol import ChannelMessage, MessageType, encode


def _agent(tmp_path, peer: str, *, store: bool = True) -> Agent:
    return Agent(
        AgentConfig(
            peer,
            "r",
            "ws://127.0.0.1:9",
            "token",
            event_log=tmp_path / f"{peer}.jsonl",
            store=tmp_path / f"{peer}.db" if store else None,
        )
    )


def _text(seq: int, epoch: str = "e1") -> ChannelMessage:
    return ChannelMessage(
        MessageType.TEXT,
        f"m{seq}",
        1_700_000_000_000,
        "alice",
        conversation="c",
        epoch=epoch,
        seq=seq,
        base=0,
        body=f"#{seq}",
    )


def _kinds(agent: Agent, since: int, *kinds: str) -> list[tuple[str, str]]:
    return [
        (e["kind"], e["message"]["id"]) for e in agent.events.since(since) if e["kind"] in kinds
    ]


async def test_a_restarted_receiver_reacks_what_it_delivered_and_never_delivers_it_again(
    tmp_path,
):
    bob = _agent(tmp_path, "bob")
    for seq in range(3):
        bob.manager.channel("alice")._on_frame(encode(_text(seq)))
    # Killed here: alice never saw the acks, so she resends #2 and then sends #3.
    restarted = _agent(tmp_path, "bob")
    mark = restarted.events.last_seq
    channel = restarted.manager.channel("alice")
    channel._on_frame(encode(_text(2)))
    channel._on_frame(encode(_text(3)))
    assert _kinds(restarted, mark, "delivered", "duplicate") == [
        ("duplicate", "m2"),
        ("delivered", "m3"),
    ]
    assert restarted.events.since(mark, {"kind": "duplicate"})[0]["reacked"] is True
    # The chat view still shows everything once.
    entries = restarted.history("alice", "c")["entries"]
    assert [e["id"] for e in entries] == ["m0", "m1", "m2", "m3"]


def _ack(ids: list[str]) -> str:
    return encode(
        ChannelMessage(MessageType.ACK, "a1", 1_700_000_000_000, "bob", acked_ids=tuple(ids))
    )


async def test_a_restarted_sender_resends_its_unacked_messages_with_their_seqs(tmp_path):
    alice = _agent(tmp_path, "alice")
    send = alice.send
    sent = [send("bob", MessageType.TEXT, conversation="c", body=f"#{i}") for i in range(3)]
    alice.manager.channel("bob")._on_frame(_ack([sent[0].id]))
    # Forgetting an acked message is committed with the next accepted one (a crash before
    # it would only resend #0, which bob re-acks).
    sent.append(send("bob", MessageType.TEXT, conversation="c", body="#3"))
    # Killed here, with #1, #2 and #3 unacked.
    restarted = _agent(tmp_path, "alice")
    assert restarted.epoch == alice.epoch
    channel = restarted.manager.channel("bob")
    assert channel.unacked == sent[1:]
    following = restarted.send("bob", MessageType.TEXT, conversation="c", body="#4")
    assert (following.epoch, following.seq, following.base) == (alice.epoch, 4, 1)
    # No `sent` event twice: the log already had them.
    assert _kinds(restarted, 0, "sent").count(("sent", sent[1].id)) == 1


async def test_what_the_store_holds_and_the_log_missed_is_recorded_on_restart(tmp_path):
    bob = _agent(tmp_path, "bob")
    # A crash between the store's commit and the event log's write, on both sides.
    bob.store.deliver("alice", [_text(0)])
    bob.store.commit()
    unlogged = _text(0, epoch=bob.epoch)  # as bob's outbox numbers it: seq 0, base 0
    bob.store.accept("carol", unlogged)

    restarted = _agent(tmp_path, "bob")
    recovered = restarted.events.since(0, {"recovered": True})
    assert sorted((e["kind"], e["peer"], e["message"]["id"]) for e in recovered) == [
        ("delivered", "alice", "m0"),
        ("sent", "carol", "m0"),
    ]
    assert [e["id"] for e in restarted.history("alice", "c")["entries"]] == ["m0"]
    # And #0 stays delivered: its retransmission is re-acked only.
    restarted.manager.channel("alice")._on_frame(encode(_text(0)))
    assert _kinds(restarted, 0, "delivered", "duplicate")[-1] == ("duplicate", "m0")
    # A third start records nothing again.
    assert _agent(tmp_path, "bob").events.since(0, {"recovered": True}) == recovered


def test_without_a_store_each_start_is_a_new_sender(tmp_path):
    first = _agent(tmp_path, "alice", store=False)
    assert _agent(tmp_path, "alice", store=False).epoch != first.epoch


def test_an_event_whose_message_cannot_be_read_is_skipped_not_fatal(tmp_path, capsys):
    log = tmp_path / "bob.jsonl"
    good = {"type": "text", "id": "m1", "timestamp": 1, "sender": "alice", "conversation": "c"}
    good |= {"epoch": "e1", "seq": 0, "base": 0, "body": "hi"}
    lines = [
        {"seq": 1, "kind": "delivered", "peer": "alice", "message": {"type": "text"}},
        {"seq": 2, "kind": "delivered", "message": good},
        {"seq": 3, "kind": "delivered", "peer": "alice", "message": good},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    bob = _agent(tmp_path, "bob")
    assert [e["id"] for e in bob.history("alice", "c")["entries"]] == ["m1"]
    assert "skipped 2 sent/delivered event(s)" in capsys.readouterr().err
