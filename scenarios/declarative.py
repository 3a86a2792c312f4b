"""Runs a declarative scenario (scenarios/scenario_spec.py) on a lab: draws its plan
from the run's seed (scenarios/workload_plan.py), opens the links, plays the workload and
the fault timeline against one clock, waits for the last acks, then checks the
expectations. The plan, every workload operation (`Lab.send`) and every fault land in the
run's history, so the checker, the report and a replay know what was meant and what
happened when.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from peerlab.router.probe import percentile
from peerlab.scenarios.checks import DeliveryReport
from peerlab.scenarios.lab import Lab
from peerlab.scenarios.nat_matrix import without_turn
from peerlab.scenarios.scenario_spec import ScenarioSpec, Stream
from peerlab.scenarios.spec_files import SpecError
from peerlab.scenarios.topology import Topology
from peerlab.scenarios.workload_plan import PLAN, PlannedFault, Send, plan_run

EMOJI = "👍"


def check_placement(spec: ScenarioSpec, topology: Topology) -> None:
    """Faults that need a router need their peer behind one, and links opened without
    TURN (`turn: false`) need NATs that let them connect directly (in this run's
    topology, after the profile): SpecError before anything runs, naming the fault's line
    or the link."""
    if not spec.turn:
        for a, b in spec.connect:
            if (why := without_turn(topology, a, b)) is not None:
                raise SpecError(
                    f"{spec.source}: turn: false, but in this topology (with the profile) "
                    f"{why}: allow TURN, or place them behind NATs that connect directly"
                )
    for i, fault in enumerate(spec.faults):
        kind, args = fault.kind, fault.args
        if kind in ("partition", "flap"):
            needs = list(args["between"])
            ok = any(topology.lan_of(p) for p in needs)
        elif kind == "shape" and args["peer"] in ("signaling", "turn_tcp"):
            continue
        elif kind in ("shape", "rebind"):
            needs = [args["peer"]]
            ok = topology.lan_of(args["peer"]) is not None
        else:
            continue
        if not ok:
            raise SpecError(
                f"{spec.source}:{fault.line}: faults[{i}]: {kind} needs {' or '.join(needs)} "
                "behind a NAT router, but the topology (with the profile) puts "
                f"{'them' if len(needs) > 1 else 'it'} on the internet"
            )


async def run_spec(spec: ScenarioSpec, lab: Lab) -> None:
    check_placement(spec, lab.topology)
    await asyncio.gather(*(lab.connect(a, b, turn=spec.turn) for a, b in spec.connect))
    plan = plan_run(spec, lab.seed)
    lab.history.record("generator", "info", PLAN, plan.record())
    started = time.monotonic()
    lab.progress(
        f"workload: {len(spec.workload)} stream(s), {sum(map(len, plan.sends))} messages for "
        f"{spec.end:g}s; faults at {', '.join(f'{f.at:g}s' for f in plan.faults) or 'none'}"
        f" (seed {lab.seed})"
    )
    applied: list[tuple[PlannedFault, float, float]] = []
    tasks = [
        asyncio.create_task(_stream(lab, s, sends, started))
        for s, sends in zip(spec.workload, plan.sends, strict=True)
    ]
    tasks += [asyncio.create_task(_fault(lab, f, started, spec.end, applied)) for f in plan.faults]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    pairs = sorted({(s.sender, s.receiver) for s in spec.workload})
    await lab.wait_all_acked(pairs, timeout=spec.expect.settle)
    reports = await lab.delivery_reports(pairs)
    problems = _delivery_problems(spec, reports)
    problems += await _partition_problems(spec, lab, applied)
    if spec.expect.ack_p95_below is not None:
        problems += await _latency_problems(spec, lab)
    if problems:
        raise AssertionError("\n".join(problems))
    total = sum(len(r.sent) for r in reports)
    lab.progress(f"{total} messages over {len(pairs)} directions: expectations met")


async def _stream(lab: Lab, stream: Stream, sends: tuple[Send, ...], started: float) -> None:
    """Send the stream's planned messages, each at its time."""
    latest_text: str | None = None
    for i, send in enumerate(sends):
        await _sleep_until(started + send.at)
        kind = send.kind
        if kind in ("edit", "delete", "reaction") and latest_text is None:
            kind = "text"  # nothing to aim at yet (or the last text was deleted)
        fields: dict[str, Any] = {"conversation": stream.conversation}
        if kind == "text":
            fields["body"] = f"{stream.sender}→{stream.receiver} #{i}"
        elif kind == "edit":
            fields.update(target=latest_text, body=f"edited at #{i}")
        elif kind == "delete":
            fields["target"] = latest_text
        elif kind == "reaction":
            fields.update(target=latest_text, emoji=EMOJI, action="add")
        else:
            fields["state"] = "started"
        message = await lab.send(stream.sender, stream.receiver, kind, **fields)
        if kind == "text" and message:
            latest_text = message["id"]
        elif kind == "delete":
            latest_text = None


async def _fault(
    lab: Lab,
    planned: PlannedFault,
    started: float,
    end: float,
    applied: list[tuple[PlannedFault, float, float]],
) -> None:
    """Apply at its planned time, clear after its duration (or at the workload's end)."""
    await _sleep_until(started + planned.at)
    fault, args = planned.fault, planned.fault.args
    if fault.kind == "flap":
        a, b = args["between"]
        await lab.faults.flap(a, b, down_s=args["down"], up_s=args["up"], cycles=args["cycles"])
        return
    if fault.kind == "kill":
        await lab.kill(args["peer"])
        await asyncio.sleep(planned.duration or 0)
        await lab.restart(args["peer"])
        return
    if fault.kind == "rebind":
        await lab.faults.rebind(args["peer"])
        return
    if fault.kind == "partition":
        a, b = args["between"]
        active = await lab.faults.partition(a, b, args["direction"])
    else:
        active = await lab.faults.shape(args["peer"], args["direction"], **args["link"])
    until = planned.at + planned.duration if planned.duration is not None else end
    await _sleep_until(started + until)
    # The heal starts now: a link may come back while `clear` is still returning.
    healing = time.time()
    await lab.faults.clear(active)
    applied.append((planned, active.applied_at, healing))


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


def _delivery_problems(spec: ScenarioSpec, reports: list[DeliveryReport]) -> list[str]:
    """The report's problems the expectations care about."""
    expect = spec.expect
    problems = []
    for report in reports:
        for problem in report.problems():
            if "never acked" in problem or "never delivered" in problem:
                wanted = expect.all_delivered
            elif "more than once" in problem:
                wanted = expect.no_duplicates
            elif "out of send order" in problem:
                wanted = expect.in_order
            else:
                wanted = True  # delivered but never sent: always wrong
            if wanted:
                problems.append(problem)
    return problems


async def _partition_problems(
    spec: ScenarioSpec, lab: Lab, applied: list[tuple[PlannedFault, float, float]]
) -> list[str]:
    """disconnect_within / reconnect_within, for every partition of the timeline, from
    both ends' state events."""
    expect = spec.expect
    if expect.disconnect_within is None and expect.reconnect_within is None:
        return []
    problems = []
    for planned, cut_at, healed_at in applied:
        fault = planned.fault
        if fault.kind != "partition":
            continue
        a, b = fault.args["between"]
        for x, y in ((a, b), (b, a)):
            events = await lab.agents[x].events(kind="state", peer=y)
            checks = [
                (expect.disconnect_within, "disconnected", cut_at, f"{x} reported {y} down"),
                (expect.reconnect_within, "connected", healed_at, f"{x} had {y} back"),
            ]
            for limit, state, since, what in checks:
                if limit is None:
                    continue
                seen = _first(events, state, since)
                took = None if seen is None else seen - since
                if took is None or took > limit:
                    when = "never" if took is None else f"{took:.2f}s after"
                    problems.append(
                        f"{what} {when} the {'cut' if state == 'disconnected' else 'heal'} "
                        f"(partition at line {fault.line}; expected within {limit:g}s)"
                    )
    return problems


def _first(events: list[dict[str, Any]], state: str, since: float) -> float | None:
    times = [e["t_wall"] for e in events if e.get("new") == state and e["t_wall"] >= since]
    return min(times) if times else None


async def _latency_problems(spec: ScenarioSpec, lab: Lab) -> list[str]:
    limit = spec.expect.ack_p95_below
    assert limit is not None
    problems = []
    for stream in spec.workload:
        events = await lab.agents[stream.sender].events(peer=stream.receiver)
        sent = {
            e["message"]["id"]: e["t_wall"]
            for e in events
            if e["kind"] == "sent" and e["message"]["conversation"] == stream.conversation
        }
        latencies = sorted(
            e["t_wall"] - sent[e["message"]["id"]]
            for e in events
            if e["kind"] == "acked" and e["message"]["id"] in sent
        )
        if not latencies:
            # Nothing to measure is no evidence the limit held: a stream whose every
            # message went unacked must not pass a latency bound.
            problems.append(
                f"{stream.sender} → {stream.receiver}: no acks to measure send→ack p95 on "
                f"(expected below {limit * 1000:g} ms)"
            )
            continue
        p95 = percentile(latencies, 95)
        lab.progress(
            f"{stream.sender} → {stream.receiver} send→ack p95 {p95 * 1000:.0f} ms "
            f"({len(latencies)} acks)"
        )
        if p95 > limit:
            problems.append(
                f"{stream.sender} → {stream.receiver}: send→ack p95 {p95 * 1000:.0f} ms, "
                f"expected below {limit * 1000:.0f} ms"
            )
    return problems
