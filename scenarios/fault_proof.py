"""What a link fault should do to a STUN round trip, and whether a measurement shows it.

Pure: from the faults asked for on a peer's up and down links, `expected_effect` derives
the change a round trip through both links should show (added delay, loss, duplicates,
reordering); `judge` compares it with probes taken before and after, and returns the
proof line, or raises `FaultNotApplied` saying what was asked and what was measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from peerlab.scenarios.probe import ProbeResult

UNTOUCHED_RTT_MS = 15.0
"""A peer whose fastest STUN round trip grew less than this, plus its own link's jitter,
counts as untouched... The fastest, not the median: a delay on the path delays every
packet, the fastest too, while a busy CPU delays only some of the probe's. With three
stacks at once in `make test`, the median of an untouched peer once moved by 28 ms and
once by 40, just as its agent reacted to a partition elsewhere (the probe then ran in the
peer's container, beside the agent; it now has a helper container of its own,
scenarios/probe.py).

The jitter: a bystander shaped by a network profile has a fastest round trip that moves
by itself, the fastest of 40 draws against the fastest of the baseline's 200. Drawn
through the shaper itself (4,000 pairs of probes): up to +11.5 ms under `4g` (25 ± 8 ms
each way), +14.0 under `satellite` (± 10), +41.4 under `3g` (± 20), which failed 14 % of
its checks against a bare 15 ms. The round trip's jitter (both directions' summed) is
added to the limit."""
UNTOUCHED_LOSS = 0.10
"""...and one that lost at most this share of its probes, or, behind a link that loses
packets itself (a profile's), at most its expected share plus the binomial tolerance:
under `lossy` (19 % of round trips lost) a bare 10 % failed nine checks in ten."""


class FaultNotApplied(AssertionError):
    """A fault was asked for and the measured path does not show it (or shows it where
    it should not be)."""


@dataclass(frozen=True)
class Effect:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    queue: str = ""
    """A rate limit or a trace: its delay depends on the load, so the proof is that the
    probe's packets went through the queue (the shaper's counters)."""
    bursty: bool = False
    """Its loss comes in bursts (Gilbert-Elliott): a short probe may meet none of them."""

    def describe(self) -> str:
        parts = [self.queue] if self.queue else []
        if self.delay_ms:
            parts.append(f"+{self.delay_ms:g} ms ± {self.jitter_ms:g}")
        if self.loss:
            parts.append(f"{self.loss:.0%} round-trip loss")
        if self.duplicate:
            parts.append(f"{self.duplicate:.0%} duplicates")
        if self.reorder:
            parts.append(f"{self.reorder:.0%} reordered")
        return ", ".join(parts) or "no measurable change"


def link_loss(faults: Mapping[str, Any]) -> float:
    """Long-run share of packets one link drops: random loss, then Gilbert-Elliott."""
    keep = 1.0 - faults.get("loss", 0.0)
    ge = faults.get("gilbert_elliott")
    if ge:
        p, r = ge["p"], ge["r"]
        bad = p / (p + r) if p + r else 0.0
        ge_loss = bad * ge.get("loss_bad", 1.0) + (1 - bad) * ge.get("loss_good", 0.0)
        keep *= 1.0 - ge_loss
    return 1.0 - keep


def expected_effect(up: Mapping[str, Any], down: Mapping[str, Any]) -> Effect:
    """What a request crossing `up` and its answer crossing `down` should show."""
    keep = (1 - link_loss(up)) * (1 - link_loss(down))
    queues = [
        f"{name} {f['trace'] if 'trace' in f else str(f['rate_kbit']) + ' kbit/s'}"
        for name, f in (("up", up), ("down", down))
        if "trace" in f or "rate_kbit" in f
    ]
    copies = (1 + up.get("duplicate", 0.0)) * (1 + down.get("duplicate", 0.0))
    return Effect(
        delay_ms=up.get("delay_ms", 0.0) + down.get("delay_ms", 0.0),
        jitter_ms=up.get("jitter_ms", 0.0) + down.get("jitter_ms", 0.0),
        loss=1 - keep,
        duplicate=copies - 1,
        reorder=1 - (1 - up.get("reorder", 0.0)) * (1 - down.get("reorder", 0.0)),
        queue=", ".join(queues),
        bursty=bool(up.get("gilbert_elliott") or down.get("gilbert_elliott")),
    )


def _share_tolerance(p: float, n: int) -> float:
    """Four standard deviations of a binomial share, plus a little for the model."""
    return 4 * math.sqrt(max(p * (1 - p), 0.01) / max(n, 1)) + 0.03


def loss_floor(asked: Effect, n: int) -> float:
    """The least round-trip loss `n` probes may show for the loss asked: four binomial
    standard deviations below it, no slack (a shaper can only add loss to what is asked,
    not take it away). `_share_tolerance`'s slack, meant for the model above the rate,
    let 10 % asked pass with 0 of 207 lost. No floor where a probe may rightly see less:
    bursty loss (a probe can fall between bursts) or duplication (a lost copy's twin
    gets through)."""
    if asked.bursty or asked.duplicate:
        return 0.0
    return max(0.0, asked.loss - 4 * math.sqrt(asked.loss * (1 - asked.loss) / max(n, 1)))


def judge(
    what: str, asked: Effect, before: ProbeResult, after: ProbeResult, queued: int = 0
) -> str:
    """The proof line for `what` (e.g. "peer1's links"), or FaultNotApplied. `queued`:
    how many packets the shaper's rate or trace queue took during the probe."""
    problems, seen = [], []
    if asked.queue:
        seen.append(
            f"{queued} packets through the queue for {after.received} answers, STUN p50 "
            f"{_ms(before.rtt_p50)} → {_ms(after.rtt_p50)}, p95 {_ms(before.rtt_p95)} → "
            f"{_ms(after.rtt_p95)}"
        )
        # Every answer crossed the shaped direction(s): at least that many were queued.
        if queued < after.received or not after.received:
            problems.append(f"only {queued} packets went through the queue")
    if asked.delay_ms:
        if after.rtt_p50 is None or before.rtt_p50 is None:
            problems.append("no round trip measured")
        else:
            added = after.rtt_p50 - before.rtt_p50
            tolerance = max(10.0, 0.15 * asked.delay_ms) + asked.jitter_ms
            seen.append(
                f"STUN p50 {before.rtt_p50:.1f} → {after.rtt_p50:.1f} ms ({added:+.1f}, "
                f"expected +{asked.delay_ms:g} ± {tolerance:g})"
            )
            if abs(added - asked.delay_ms) > tolerance:
                problems.append(f"measured {added:+.1f} ms")
    if asked.loss:
        floor = loss_floor(asked, after.sent)
        ceiling = asked.loss + _share_tolerance(asked.loss, after.sent)
        seen.append(
            f"lost {after.lost}/{after.sent} = {after.loss:.1%} "
            f"(expected {asked.loss:.1%}: {floor:.1%}–{ceiling:.1%})"  # noqa: RUF001 (a range)
        )
        if not floor <= after.loss <= ceiling:
            problems.append(f"measured {after.loss:.1%} loss")
    if asked.duplicate:
        share = after.duplicates / after.received if after.received else 0.0
        tolerance = _share_tolerance(asked.duplicate, after.received)
        seen.append(
            f"{after.duplicates} duplicates over {after.received} answers = {share:.1%} "
            f"(expected {asked.duplicate:.1%} ± {tolerance:.1%})"
        )
        if abs(share - asked.duplicate) > tolerance:
            problems.append(f"measured {share:.1%} duplicates")
    if asked.reorder:
        seen.append(f"{after.reordered} of {after.received} answers out of order")
        if after.reordered == 0 and asked.reorder * after.received >= 5:
            problems.append("nothing out of order")
    if problems:
        raise FaultNotApplied(
            f"{what}: asked for {asked.describe()}, but {'; '.join(problems)} ({'; '.join(seen)})"
        )
    return f"{what}: {asked.describe()} took effect — {'; '.join(seen)}"


def judge_firewalled(
    what: str, up: Mapping[str, Any], sent: int, counted: Mapping[str, int]
) -> str:
    """The proof line for the link of a peer behind a UDP-blocking firewall, or
    FaultNotApplied. The probe's requests cross the router's up shaper before the firewall
    drops them, and no answer ever comes back: so the up direction is judged from what the
    shaper counted during the probe (`counted`: seen, dropped, delayed, reordered), and
    the down direction cannot be measured (TCP, which the firewall lets out, carries no
    STUN probe)."""
    seen, dropped = counted["seen"], counted["dropped"]
    facts = [f"the up shaper saw {seen} packets for {sent} requests, dropped {dropped}"]
    problems = []
    if seen < sent:
        problems.append(f"only {seen} of {sent} requests reached the shaper")
    if up.get("delay_ms"):
        facts.append(f"delayed {counted['delayed']}")
        if counted["delayed"] < seen - dropped:
            problems.append(f"{seen - dropped - counted['delayed']} packets left undelayed")
    if loss := link_loss(up):
        share = dropped / seen if seen else 0.0
        tolerance = _share_tolerance(loss, seen)
        facts.append(f"dropped {share:.1%} (expected {loss:.1%} ± {tolerance:.1%})")
        if abs(share - loss) > tolerance:
            problems.append(f"dropped {share:.1%}")
    if up.get("reorder") and up["reorder"] * seen >= 5:
        facts.append(f"reordered {counted['reordered']}")
        if not counted["reordered"]:
            problems.append("nothing reordered")
    if problems:
        raise FaultNotApplied(
            f"{what}: asked for {expected_effect(up, {}).describe()} up, but "
            f"{'; '.join(problems)} ({'; '.join(facts)})"
        )
    return (
        f"{what}: up took effect by the shaper's own counts — {'; '.join(facts)}; down not "
        "measured (no UDP answer crosses a UDP-blocking firewall)"
    )


def _ms(value: float | None) -> str:
    return "no answer" if value is None else f"{value:.1f} ms"


def judge_untouched(
    peer: str, baseline: ProbeResult, now: ProbeResult, cause: str, own: Effect = Effect()
) -> str:
    """Proof that a fault elsewhere left `peer`'s path alone: its fastest round trip grew
    less than UNTOUCHED_RTT_MS plus the jitter of `own`, the shaping its link has anyway
    (a network profile's), and it lost no more of its probes than UNTOUCHED_LOSS or than
    that shaping explains."""
    if now.rtt_min is None or baseline.rtt_min is None:
        raise FaultNotApplied(f"{cause} touched {peer}: its STUN probe got no answer")
    added = now.rtt_min - baseline.rtt_min
    rtt_limit = UNTOUCHED_RTT_MS + own.jitter_ms
    loss_limit = max(UNTOUCHED_LOSS, own.loss + _share_tolerance(own.loss, now.sent))
    seen = (
        f"STUN min {baseline.rtt_min:.1f} → {now.rtt_min:.1f} ms, p50 {_ms(baseline.rtt_p50)} → "
        f"{_ms(now.rtt_p50)}, lost {now.lost}/{now.sent}"
    )
    if added > rtt_limit or now.loss > loss_limit:
        limits = f"limits +{rtt_limit:g} ms and {loss_limit:.0%} lost"
        raise FaultNotApplied(f"{cause} touched {peer}, which it should not: {seen} ({limits})")
    return f"{peer} untouched ({added:+.1f} ms fastest; {seen})"
