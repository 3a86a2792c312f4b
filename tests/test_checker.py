"""The run checker (scenarios/checker.py, scenarios/check_run.py) over hand-made event logs:
each anomaly class found, counted and named; the allowances; the unknown verdict."""

from __future__ import annotations

import argparse
import json
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from peerlab.scenarios.check_run import add_check_parser, check_folder, load_run, run_check
from peerlab.scenarios.checker import CLOCK_TOLERANCE, INVALID_CLASSES, check


class Run:
    """Event logs of several agents in the documented shape, on one shared wall clock that
    advances 10 ms per event, so the order of calls is the order of events."""

    def __init__(self) -> None:
        self.logs: dict[str, list[dict]] = defaultdict(list)
        self.now = 1_800_000_000.0
        self.epochs: dict[str, str] = {}
        self.seqs: dict[tuple[str, str], int] = defaultdict(int)

    def event(self, agent: str, kind: str, **fields) -> dict:
        self.now += 0.01
        event = {
            "seq": len(self.logs[agent]) + 1,
            "t_mono": round(self.now - 1_799_990_000, 6),
            "t_wall": round(self.now, 6),
            "agent": agent,
            "kind": kind,
            **fields,
        }
        self.logs[agent].append(event)
        return event

    def started(self, *agents: str) -> None:
        for agent in agents:
            self.epochs[agent] = uuid.uuid4().hex[:16]
            self.seqs = defaultdict(int, {k: v for k, v in self.seqs.items() if k[0] != agent})
            self.event(agent, "started", room="lab", epoch=self.epochs[agent], signaling_url="ws")

    def stopped(self, *agents: str) -> None:
        for agent in agents:
            self.event(agent, "stopped")

    def send(self, sender: str, to: str, type: str = "text", conversation: str = "c", **fields):
        """`sender` sends one message to `to`; returns it in wire form."""
        message = {
            "type": type,
            "id": uuid.uuid4().hex,
            "timestamp": int(self.now * 1000),
            "sender": sender,
            "conversation": conversation,
        }
        if type == "typing":
            message["state"] = fields.pop("state", "started")
        else:
            key = (sender, conversation)
            message |= {"epoch": self.epochs[sender], "seq": self.seqs[key], "base": 0}
            self.seqs[key] += 1
        defaults = {"text": {"body": "hi"}, "edit": {"body": "edited"}, "delete": {}}
        message |= defaults.get(type, {"emoji": "👍", "action": "add"}) | fields
        if type == "typing":
            message = {k: v for k, v in message.items() if k not in ("emoji", "action")}
        self.event(sender, "sent", peer=to, message=message)
        return message

    def deliver(self, receiver: str, message: dict) -> None:
        self.event(receiver, "received", peer=message["sender"], message=message)
        self.event(receiver, "delivered", peer=message["sender"], message=message)

    def ack(self, receiver: str, message: dict) -> None:
        """The sender logs the receiver's ack of `message`."""
        self.event(message["sender"], "acked", peer=receiver, message=message, ack_id="a" * 32)

    def exchange(self, sender: str, receiver: str, type: str = "text", **fields) -> dict:
        message = self.send(sender, receiver, type, **fields)
        self.deliver(receiver, message)
        self.ack(receiver, message)
        return message

    def check(self, history: list[dict] | None = None, damaged=None):
        return check(dict(self.logs), history or [], damaged)


def _run(*agents: str) -> Run:
    run = Run()
    run.started(*agents)
    return run


def _only(result, kind: str, count: int = 1) -> list:
    """Assert that `kind` is the only invalid class found, `count` times; return its anomalies."""
    found = {k: n for k, n in result.counts.items() if n and k in INVALID_CLASSES}
    assert found == {kind: count}, result.render()
    assert result.valid is False and result.exit_code == 1
    assert result.render().startswith(f"INVALID: {count} anomalies ({kind} {count})")
    return result.anomalies[kind]


def test_a_clean_conversation_is_valid():
    run = _run("alice", "bob")
    hello = run.exchange("alice", "bob")
    run.exchange("bob", "alice", "reaction", target=hello["id"])
    run.exchange("alice", "bob", "edit", target=hello["id"])
    run.send("bob", "alice", "typing")
    run.exchange("bob", "alice", "text", conversation="other")
    run.exchange("alice", "bob", "delete", target=hello["id"])
    run.stopped("alice", "bob")
    result = run.check()
    assert result.valid is True and result.exit_code == 0
    assert result.counts == dict.fromkeys(result.counts, 0)
    assert result.render() == "VALID: 2 senders, 5 messages checked"


def test_acked_but_never_delivered_is_lost_after_ack():
    run = _run("alice", "bob")
    run.exchange("alice", "bob")
    gone = run.send("alice", "bob")
    run.ack("bob", gone)
    run.stopped("alice", "bob")
    (anomaly,) = _only(run.check(), "lost_after_ack")
    assert (anomaly.id, anomaly.sender, anomaly.receiver, anomaly.seq) == (
        gone["id"],
        "alice",
        "bob",
        1,
    )
    rendered = run.check().render().splitlines()
    assert rendered[1:3] == [
        "alice → bob, conversation c: lost_after_ack 1",
        "  lost_after_ack (1):",
    ]
    assert rendered[3].startswith(f"    text {gone['id'][:8]}… (seq 1): acked (ack frame")


def test_neither_acked_nor_delivered_from_a_live_sender_is_lost():
    run = _run("alice", "bob")
    gone = run.send("alice", "bob")
    run.exchange("alice", "bob")
    run.stopped("alice", "bob")
    result = run.check()
    (anomaly,) = _only(result, "lost")
    assert anomaly.id == gone["id"] and anomaly.seq == 0
    assert gone["id"][:8] in result.render()


def _lost_with_dead_sender(death: str) -> tuple[Run, dict, list[dict]]:
    run = _run("alice", "bob")
    run.exchange("alice", "bob")
    gone = run.send("alice", "bob")
    history = []
    if death == "restart":
        run.started("alice")
        run.exchange("alice", "bob")
        run.stopped("alice", "bob")
    elif death == "kill":
        killed = {"process": "nemesis", "type": "ok", "f": "kill", "value": {"peer": "alice"}}
        history.append({**killed, "index": 0, "t_wall": run.now + 0.005, "t_mono": 0})
        run.stopped("alice", "bob")
    else:  # the log just ends: killed for good
        run.stopped("bob")
    return run, gone, history


@pytest.mark.parametrize("death", ["restart", "kill", "log ends"])
def test_a_message_lost_with_its_dead_sender_is_listed_but_allowed(death):
    run, gone, history = _lost_with_dead_sender(death)
    result = run.check(history)
    assert result.valid is True and result.exit_code == 0, result.render()
    (anomaly,) = result.anomalies["lost_with_dead_sender"]
    assert anomaly.id == gone["id"] and anomaly.sender == "alice"
    assert "alice died after sending it" in anomaly.detail
    assert {"restart": "restarted", "kill": "killed", "log ends": "without"}[death] in (
        anomaly.detail
    )
    assert "lost_with_dead_sender (1, allowed):" in result.render()


def test_a_kill_before_the_send_does_not_excuse_it():
    run = _run("alice", "bob")
    killed = {"process": "nemesis", "type": "ok", "f": "kill", "value": {"peer": "alice"}}
    history = [{**killed, "index": 0, "t_wall": run.now - 1, "t_mono": 0}]
    run.send("alice", "bob")
    run.stopped("alice", "bob")
    _only(run.check(history), "lost")


def test_delivered_twice_is_duplicated():
    run = _run("alice", "bob")
    twice = run.exchange("alice", "bob")
    run.exchange("alice", "bob")
    run.deliver("bob", twice)
    run.stopped("alice", "bob")
    (anomaly,) = _only(run.check(), "duplicated")
    assert anomaly.id == twice["id"] and "delivered 2 times" in anomaly.detail


def test_delivered_out_of_send_order_names_the_swapped_pair():
    run = _run("alice", "bob")
    first, second, third = (run.send("alice", "bob") for _ in range(3))
    for message in (second, first, third):
        run.deliver("bob", message)
        run.ack("bob", message)
    run.stopped("alice", "bob")
    result = run.check()
    # The views also show the two in a different order: that is the same fault seen twice.
    (anomaly,) = result.anomalies["out_of_order"]
    assert anomaly.id == first["id"] and anomaly.seq == 0
    assert f"delivered after {second['id'][:8]}… (seq 1)" in anomaly.detail
    assert result.valid is False


def test_order_is_per_conversation_and_per_sender_epoch():
    run = _run("alice", "bob")
    a0 = run.send("alice", "bob", conversation="a")
    b0 = run.send("alice", "bob", conversation="b")
    run.started("alice")  # a new epoch: a new stream, whose seq starts again at 0
    a0_new = run.send("alice", "bob", conversation="a")
    for message in (b0, a0, a0_new):
        run.deliver("bob", message)
        run.ack("bob", message)
    run.stopped("alice", "bob")
    assert run.check().valid is True, run.check().render()


def test_delivered_but_never_sent_is_a_phantom():
    run = _run("alice", "bob")
    run.exchange("alice", "bob")
    invented = dict(run.send("alice", "carol"), id="f" * 32)
    run.deliver("bob", invented)
    run.stopped("alice", "bob", "carol")
    run.started("carol")
    run.stopped("carol")
    result = run.check()
    (anomaly,) = result.anomalies["phantom"]
    assert anomaly.id == "f" * 32 and "alice never sent it to bob" in anomaly.detail
    assert result.valid is False


def test_an_ack_logged_before_the_delivery_is_acked_before_delivered():
    run = _run("alice", "bob")
    early = run.send("alice", "bob")
    run.ack("bob", early)
    run.now += 0.2
    run.deliver("bob", early)
    late_but_tolerated = run.send("alice", "bob")
    run.ack("bob", late_but_tolerated)
    run.now += CLOCK_TOLERANCE / 2 - 0.01  # within the tolerance, with the next event's 10 ms
    run.deliver("bob", late_but_tolerated)
    run.stopped("alice", "bob")
    (anomaly,) = _only(run.check(), "acked_before_delivered")
    assert anomaly.id == early["id"] and "s before its first delivery" in anomaly.detail


def test_an_edit_of_an_unknown_or_deleted_message_is_a_bad_target():
    run = _run("alice", "bob")
    hello = run.exchange("alice", "bob")
    unknown = run.exchange("alice", "bob", "edit", target="0" * 32)
    run.exchange("alice", "bob", "delete", target=hello["id"])
    after_delete = run.exchange("alice", "bob", "reaction", target=hello["id"])
    own = run.exchange("bob", "alice")
    run.exchange("alice", "bob", "reaction", target=own["id"])  # a target bob sent: fine
    run.stopped("alice", "bob")
    found = _only(run.check(), "bad_target", 2)
    assert [a.id for a in found] == [unknown["id"], after_delete["id"]]
    assert "targets unknown" in found[0].detail and "targets deleted" in found[1].detail


def test_an_acked_typing_indicator_is_typing_acked():
    run = _run("alice", "bob")
    typing = run.send("alice", "bob", "typing")
    run.ack("bob", typing)
    run.stopped("alice", "bob")
    (anomaly,) = _only(run.check(), "typing_acked")
    assert anomaly.id == typing["id"] and anomaly.type == "typing"


def test_delivered_and_never_acked_is_never_acked_unless_an_end_died():
    run = _run("alice", "bob")
    unacked = run.send("alice", "bob")
    run.deliver("bob", unacked)
    run.stopped("alice", "bob")
    (anomaly,) = _only(run.check(), "never_acked")
    assert anomaly.id == unacked["id"]

    run = _run("alice", "bob")
    run.deliver("bob", run.send("alice", "bob"))
    run.stopped("alice")  # bob was killed before its ack left
    assert run.check().valid is True


def test_views_that_differ_at_the_end_are_diverged():
    run = _run("alice", "bob")
    hello = run.exchange("alice", "bob")
    # bob's app shows a reaction alice never sent: the views disagree on that entry.
    run.deliver("bob", {**run.send("alice", "carol", "reaction", target=hello["id"])})
    run.started("carol")
    run.stopped("alice", "bob", "carol")
    result = run.check()
    (diverged,) = result.anomalies["diverged"]
    assert diverged.id == hello["id"] and diverged.conversation == "c"
    assert "reactions: {} at alice, {'👍': ['alice']} at bob" in diverged.detail


def test_what_the_double_delivery_agent_produces_is_caught():
    """scenarios/broken_agent_double_delivery.py: a retransmitted copy of a message the
    receiver already delivered (its ack was lost) is delivered again and acked again."""
    run = _run("alice", "bob")
    hello = run.send("alice", "bob")
    edit = run.send("alice", "bob", "edit", target=hello["id"])
    for message in (hello, edit):
        run.deliver("bob", message)  # the ack frame is lost on the way back
    for message in (hello, edit):
        run.event("alice", "retransmitted", peer="bob", message=message, reason="timeout")
        run.event("bob", "received", peer="alice", message=message)
        run.event("bob", "duplicate", peer="alice", message=message, reacked=True)
        run.event("bob", "delivered", peer="alice", message=message)
        run.ack("bob", message)
    run.stopped("alice", "bob")
    result = run.check()
    assert result.valid is False and result.exit_code == 1
    assert result.counts["duplicated"] == 2
    assert {a.id for a in result.anomalies["duplicated"]} == {hello["id"], edit["id"]}
    # The edit applied twice shows at bob: alice's view has 1 edit, bob's 2.
    (diverged,) = result.anomalies["diverged"]
    assert diverged.id == hello["id"] and "edits: 1 at alice, 2 at bob" in diverged.detail
    assert result.render().startswith("INVALID: 3 anomalies (duplicated 2, diverged 1)")
    assert f"edit {edit['id'][:8]}… (seq 1): delivered 2 times" in result.render()


def _write(folder: Path, run: Run, history: list[dict] | None = None) -> Path:
    (folder / "events").mkdir(parents=True)
    for agent, events in run.logs.items():
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
        (folder / "events" / f"{agent}.jsonl").write_text(lines, encoding="utf-8")
    if history is not None:
        (folder / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return folder


def test_a_cut_last_line_makes_the_verdict_unknown(tmp_path):
    run = _run("alice", "bob")
    run.exchange("alice", "bob")
    folder = _write(tmp_path / "scenario", run)
    with (folder / "events" / "bob.jsonl").open("a") as log:
        log.write('{"seq": 99, "t_mono": 1.0, "kind": "deliv')
    events, history, damaged = load_run(folder)
    assert history == [] and len(events["bob"]) == 3
    assert damaged == {"bob": ["ends in a cut line (line 4)"]}
    result = check_folder(folder)
    assert result.valid is None and result.exit_code == 2
    assert result.render().splitlines()[0] == "UNKNOWN: bob's event log ends in a cut line (line 4)"
    assert result.to_json()["valid"] == "unknown"


def test_a_cut_line_with_the_restarted_agents_first_event_on_it_is_recovered(tmp_path):
    run = _run("alice", "bob")
    run.exchange("alice", "bob")
    run.started("bob")
    run.stopped("alice", "bob")
    folder = _write(tmp_path, run)
    path = folder / "events" / "bob.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    restarted = next(i for i, line in enumerate(lines) if '"started"' in line and i > 0)
    lines[restarted] = '{"seq": 7, "kind": "deli' + lines[restarted]
    path.write_text("".join(lines))
    events, _, damaged = load_run(folder)
    assert [e["kind"] for e in events["bob"]].count("started") == 2
    assert damaged["bob"] == [
        f"has a cut line (line {restarted + 1}), the next event written onto it"
    ]
    assert check_folder(folder).valid is None


def test_missing_and_empty_logs_make_the_verdict_unknown():
    run = _run("alice", "bob")
    run.exchange("alice", "bob")
    run.send("alice", "carol")
    run.stopped("alice", "bob")
    run.logs["dave"] = []
    result = run.check()
    assert result.valid is None, result.render()
    assert "carol appears in alice's event log but has no event log" in result.reasons()
    assert "dave's event log has no events" in result.reasons()
    assert result.counts["lost"] == 0  # nothing is said about carol without her log


def test_a_gap_or_a_repeated_number_in_a_log_makes_the_verdict_unknown():
    # Records the agent skipped as damaged (docs/event-log.md): gone from the middle, or
    # left in place with a number that does not grow.
    run = _run("alice", "bob")
    run.exchange("alice", "bob")
    run.stopped("alice", "bob")
    bob = run.logs["bob"]
    bob[1] = {**bob[1], "seq": bob[0]["seq"]}
    del run.logs["alice"][1]
    result = run.check()
    assert result.valid is None, result.render()
    reasons = result.reasons()
    assert "bob's event log repeats or reorders event 1 (after event 1)" in reasons, reasons
    assert "alice's event log lacks events 2 to 2" in reasons, reasons


def test_an_anomaly_between_complete_logs_is_invalid_even_when_another_log_is_cut():
    run = _run("alice", "bob", "carol")
    twice = run.exchange("alice", "bob")
    run.deliver("bob", twice)
    run.exchange("alice", "carol")
    run.stopped("alice", "bob", "carol")
    damaged = {"carol": ["ends in a cut line (line 9)"]}
    result = run.check(damaged=damaged)
    assert result.valid is False and result.counts["duplicated"] == 1
    # The same fault involving the cut log would be unproven: unknown.
    run.deliver("carol", run.logs["carol"][2]["message"])
    assert (
        check({"alice": run.logs["alice"], "carol": run.logs["carol"]}, [], damaged).valid is None
    )


def test_a_send_the_history_saw_succeed_but_the_log_lacks_is_unknown():
    run = _run("alice", "bob")
    run.exchange("alice", "bob")
    run.stopped("alice", "bob")
    send = {"to": "bob", "type": "text", "id": "e" * 32}
    history = [{"index": 0, "process": "alice", "type": "ok", "f": "send", "value": send}]
    result = run.check(history)
    assert result.valid is None
    assert "history.jsonl says it sent" in result.render().splitlines()[0]


def test_to_json_has_the_documented_shape():
    run = _run("alice", "bob")
    twice = run.exchange("alice", "bob")
    run.deliver("bob", twice)
    run.stopped("alice", "bob")
    out = json.loads(json.dumps(run.check().to_json()))
    assert set(out) == {"valid", "exit_code", "counts", "anomalies", "by_pair", "faults", "notes"}
    assert (out["valid"], out["exit_code"], out["counts"]["duplicated"]) == (False, 1, 1)
    duplicated = out["anomalies"]["duplicated"][0]
    assert duplicated == {
        "sender": "alice",
        "receiver": "bob",
        "conversation": "c",
        "type": "text",
        "id": twice["id"],
        "seq": 0,
        "detail": duplicated["detail"],
        "start": run.logs["bob"][2]["t_wall"],  # the first copy delivered
        "end": run.logs["bob"][-2]["t_wall"],  # the second
        "during": [],
    }
    assert out["by_pair"] == [
        {
            "sender": "alice",
            "receiver": "bob",
            "conversation": "c",
            "counts": {"duplicated": 1},
            "examples": {"duplicated": [duplicated]},
        }
    ]
    assert out["faults"] == []


def test_anomalies_are_counted_and_listed_per_sender_receiver_and_conversation(tmp_path, capsys):
    run = _run("alice", "bob")
    lost = [run.send("alice", "bob", conversation="a") for _ in range(7)]
    twice = run.exchange("alice", "bob", conversation="b")
    run.deliver("bob", twice)
    run.send("bob", "alice", conversation="a")
    run.exchange("alice", "bob", conversation="a")
    run.stopped("alice", "bob")
    result = run.check()
    assert result.counts["lost"] == 8 and result.counts["duplicated"] == 1  # the overall counts
    out = result.to_json(limit=3)
    assert [
        (g["sender"], g["receiver"], g["conversation"], g["counts"]) for g in out["by_pair"]
    ] == [
        ("alice", "bob", "a", {"lost": 7}),
        ("alice", "bob", "b", {"duplicated": 1}),
        ("bob", "alice", "a", {"lost": 1}),
    ]
    assert [a["id"] for a in out["by_pair"][0]["examples"]["lost"]] == [m["id"] for m in lost[:3]]
    lines = result.render(limit=3).splitlines()
    assert lines[0] == "INVALID: 9 anomalies (lost 8, duplicated 1)"
    start = lines.index("alice → bob, conversation a: lost 7")
    assert lines[start + 1] == "  lost (7):"
    assert lines[start + 2].startswith(f"    text {lost[0]['id'][:8]}… (seq 0): never acked")
    assert lines[start + 5] == "    … and 4 more"
    assert "alice → bob, conversation b: duplicated 1" in lines
    assert "bob → alice, conversation a: lost 1" in lines
    # `peerlab check --json --limit` lists as many per group.
    folder = _write(tmp_path / "scenario", run)
    parser = argparse.ArgumentParser()
    add_check_parser(parser.add_subparsers(dest="command"))
    assert run_check(parser.parse_args(["check", str(folder), "--json", "--limit", "2"])) == 1
    printed = json.loads(capsys.readouterr().out)["scenario"]
    assert len(printed["by_pair"][0]["examples"]["lost"]) == 2


def _nemesis(index: int, t_wall: float, type_: str, f: str, value: dict, **extra) -> dict:
    return {"index": index, "t_wall": t_wall, "process": "nemesis", "type": type_, "f": f,
            "value": value, **extra}  # fmt: skip


def test_each_anomaly_names_the_faults_active_at_its_ends_meanwhile():
    run = _run("alice", "bob", "carol")
    run.exchange("alice", "bob")
    cut = {"a": "alice", "b": "bob", "direction": "both"}
    slow = {"direction": "both", "delay_ms": 80}
    t = run.now
    history = [
        _nemesis(0, t, "invoke", "shape", slow, target="carol"),  # another peer's link
        _nemesis(1, t + 0.001, "invoke", "partition", cut, target="alice/bob"),
    ]
    during_cut = run.send("alice", "bob")  # lost without an ack while alice/bob is cut
    history.append(_nemesis(2, run.now + 0.001, "ok", "clear-partition", cut, target="alice/bob"))
    run.exchange("carol", "bob")
    twice = run.exchange("alice", "bob")  # duplicated after the cut was healed
    run.deliver("bob", twice)
    history.append(_nemesis(3, run.now + 0.001, "invoke", "shape", slow, target="signaling"))
    after = run.exchange("bob", "alice")  # duplicated while signaling, which all use, is slow
    run.deliver("alice", after)
    run.stopped("alice", "bob", "carol")
    result = run.check(history)
    by_id = {a.id: a for found in result.anomalies.values() for a in found}
    # Never settled, a lost message's span runs to the run's end: the later shaping too.
    assert by_id[during_cut["id"]].during == (
        "partition alice/bob (direction=both)",
        "shape signaling (direction=both, delay_ms=80)",
    )
    assert by_id[twice["id"]].during == ()
    assert by_id[after["id"]].during == ("shape signaling (direction=both, delay_ms=80)",)
    assert by_id[during_cut["id"]].start == run.logs["alice"][3]["t_wall"]
    assert by_id[during_cut["id"]].end == run.logs["carol"][-1]["t_wall"]  # the run's end
    assert (
        f"text {during_cut['id'][:8]}… (seq 1): never acked and never delivered; "
        "during partition alice/bob (direction=both), shape signaling"
    ) in result.render()
    out = result.to_json()
    assert [(w["label"], w["until_end"]) for w in out["faults"]] == [
        ("shape carol (direction=both, delay_ms=80)", True),
        ("partition alice/bob (direction=both)", False),
        ("shape signaling (direction=both, delay_ms=80)", True),
    ]
    (lost,) = [g for g in out["by_pair"] if g["sender"] == "alice" and "lost" in g["counts"]]
    assert lost["examples"]["lost"][0]["during"][0] == "partition alice/bob (direction=both)"
    # Faults explain; they excuse nothing: the verdict is the one without them.
    assert (result.valid, result.exit_code) == (run.check().valid, run.check().exit_code)


def test_a_message_lost_with_its_killed_sender_names_the_kill():
    run = _run("alice", "bob")
    run.exchange("alice", "bob")
    gone = run.send("alice", "bob")
    history = [
        _nemesis(0, run.now + 0.001, "invoke", "kill", {"peer": "alice"}),
        _nemesis(1, run.now + 0.002, "ok", "kill", {"peer": "alice"}),
        _nemesis(2, run.now + 0.5, "invoke", "restart", {"peer": "alice"}),
    ]
    run.now += 1
    run.started("alice")
    history.append(_nemesis(3, run.now + 0.001, "ok", "restart", {"peer": "alice"}))
    run.exchange("alice", "bob")
    run.stopped("alice", "bob")
    result = run.check(history)
    assert result.valid is True, result.render()
    (anomaly,) = result.anomalies["lost_with_dead_sender"]
    assert anomaly.id == gone["id"] and anomaly.during == ("kill alice",)
    assert result.render().splitlines()[:3] == [
        "VALID: 1 senders, 3 messages checked",
        "allowed: lost_with_dead_sender 1",
        "alice → bob, conversation c: lost_with_dead_sender 1",
    ]


def test_load_run_never_raises_on_bad_content(tmp_path):
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "alice.jsonl").write_bytes(b'[1]\n\xff\xfe\n{"seq": 1}\n')
    (tmp_path / "history.jsonl").write_text('{"f": "kill"\n')
    events, history, damaged = load_run(tmp_path)
    assert events == {"alice": [{"seq": 1}]} and history == []
    assert damaged["alice"] == [
        "has a line that is not a JSON object (line 1)",
        "has a line that is not UTF-8 (line 2)",
    ]
    assert damaged["history.jsonl"] == ["has a line that is not a JSON object (line 1)"]
    assert check_folder(tmp_path).valid is None


def _cli(folder: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_check_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["check", str(folder)])


def test_peerlab_check_over_a_run_folder_exits_with_the_worst_verdict(tmp_path, capsys):
    fine = _run("alice", "bob")
    fine.exchange("alice", "bob")
    fine.stopped("alice", "bob")
    _write(tmp_path / "fine", fine)
    broken = _run("alice", "bob")
    broken.send("alice", "bob")
    broken.stopped("alice", "bob")
    _write(tmp_path / "broken", broken)
    _write(tmp_path / "cut", fine)
    with (tmp_path / "cut" / "events" / "bob.jsonl").open("a") as log:
        log.write('{"seq": 9')
    assert run_check(_cli(tmp_path)) == 1  # invalid beats unknown
    printed = capsys.readouterr().out
    assert "== broken\nINVALID: 1 anomalies (lost 1" in printed
    assert "== cut\nUNKNOWN: bob's event log ends in a cut line" in printed
    assert "== fine\nVALID: 1 senders, 1 messages checked" in printed
    assert run_check(_cli(tmp_path / "cut")) == 2
    assert run_check(_cli(tmp_path / "fine")) == 0
    assert run_check(_cli(tmp_path / "nothing")) == 2
