"""`report.html`: one self-contained page per scenario run, to see what happened.

    write_report(Path("results/20261126-054639/partition_heal"))   # → …/report.html
    peerlab report results/20261126-054639/partition_heal

The page shows the run's summary and the history checker's verdict on top, then a timeline
with one lane per peer: every reliable message an arrow from its sender's lane at send time
to its receiver's lane at first delivery, the ack a dot back on the sender's lane, messages
never delivered in red, link state changes as markers, faults as shaded bands; below it,
per link (ordered pair) a histogram of send → ack latency. docs/report.md describes it.

Inputs, all read from the scenario folder: `events/<peer>.jsonl` (docs/control-api.md),
`history.jsonl` (the harness's faults), and when present `check.json` (the checker's
verdict) and `outcome.json` (the runner's summary). Times are the events' `t_wall`: every
agent and the harness share the host clock.

`build_model` turns the parsed inputs into the page's data (pure, JSON-ready);
`render_html` turns that into the page: the tables are rendered here, the drawings by the
page's inline script from the embedded data. Nothing on the page is fetched: no CDN, no
font, no image, so it opens from the results folder anywhere.
"""

from __future__ import annotations

import argparse
import bisect
import html
import json
import re
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peerlab.router.probe import percentile
from peerlab.scenarios.check_run import load_run, scenario_folders
from peerlab.scenarios.checks import RELIABLE
from peerlab.scenarios.history import fault_windows

Entry = dict[str, Any]

ARROW_CAP = 2000
"""Most arrows drawn: beyond it a browser slows down and the arrows merge into a smear.
Every message is still counted and in the histograms."""

# ---- the data model (pure) ----


def _peer_key(name: str) -> list[Any]:
    """Natural order: peer2 before peer10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _messages(events: Mapping[str, Sequence[Entry]], t0: float) -> list[Entry]:
    """Every reliable message sent, with when it was sent, first delivered and acked (run
    seconds, None when it never was) and how many times it was delivered."""
    sent: dict[tuple[str, str], Entry] = {}
    for agent, log in events.items():
        for e in log:
            message = e.get("message") or {}
            if e.get("kind") != "sent" or message.get("type") not in RELIABLE:
                continue
            sent[(agent, message["id"])] = {
                "from": agent,
                "to": e["peer"],
                "type": message["type"],
                "id": message["id"],
                "conversation": message.get("conversation"),
                "seq": message.get("seq"),
                "sent": round(e["t_wall"] - t0, 4),
                "delivered": None,
                "acked": None,
                "copies": 0,
            }
    for agent, log in events.items():
        for e in log:
            message = e.get("message") or {}
            if e.get("kind") not in ("delivered", "acked"):
                continue
            # A delivery is logged by the receiver about its sender; an ack by the sender.
            sender = e["peer"] if e["kind"] == "delivered" else agent
            m = sent.get((sender, message.get("id")))
            if m is None:
                continue  # never sent as far as the logs go: the checker reports those
            t = round(e["t_wall"] - t0, 4)
            if e["kind"] == "acked":
                m["acked"] = t if m["acked"] is None else min(m["acked"], t)
            else:
                m["copies"] += 1
                m["delivered"] = t if m["delivered"] is None else min(m["delivered"], t)
    return sorted(sent.values(), key=lambda m: (m["sent"], m["from"], m["id"]))


def _drawn(messages: Sequence[Entry], cap: int) -> list[Entry]:
    """At most `cap` messages to draw: every undelivered one first (the interesting
    ones), the delivered ones evenly spaced over the run to fill the rest."""
    lost = [m for m in messages if m["delivered"] is None][:cap]
    delivered = [m for m in messages if m["delivered"] is not None]
    room = cap - len(lost)
    if len(delivered) > room:
        delivered = [delivered[i * len(delivered) // room] for i in range(room)] if room else []
    return sorted(lost + delivered, key=lambda m: m["sent"])


def fault_bands(history: Sequence[Entry], t0: float, t_end: float) -> list[Entry]:
    """The faults in the harness's history as time bands (run seconds): when each was
    active, as `history.fault_windows` reads it for the checker too."""
    return [
        {
            **window.to_json(),
            "start": round(window.start - t0, 4),
            "end": round(window.end - t0, 4),
        }
        for window in fault_windows(history, t_end)
    ]


def latency_edges(largest_ms: float) -> list[float]:
    """Bin edges in ms, 0, 1, 2, 5, 10, 20, 50, ... up past `largest_ms`: a link's
    latencies span milliseconds on a clean path and seconds across a partition, which
    equal-width bins would crush into one bar."""
    edges = [0.0]
    step = 0
    while edges[-1] <= largest_ms:
        edges.append((1, 2, 5)[step % 3] * 10 ** (step // 3))
        step += 1
    return edges


def latency_histograms(messages: Sequence[Entry]) -> list[Entry]:
    """Per ordered link, the send → ack latencies (ms) binned on edges shared by every
    link, so that the histograms compare at a glance."""
    per_link: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for m in messages:
        per_link[(m["from"], m["to"])].append(m)
    latencies = {
        link: sorted(_ms(m["acked"] - m["sent"]) for m in ms if m["acked"] is not None)
        for link, ms in per_link.items()
    }
    edges = latency_edges(max((max(v) for v in latencies.values() if v), default=0.0))
    out = []
    for (sender, receiver), ms in sorted(
        per_link.items(), key=lambda item: (_peer_key(item[0][0]), _peer_key(item[0][1]))
    ):
        values = latencies[(sender, receiver)]
        counts = [0] * (len(edges) - 1)
        for v in values:
            counts[bisect.bisect_right(edges, v) - 1] += 1
        out.append(
            {
                "sender": sender,
                "receiver": receiver,
                "sent": len(ms),
                "acked": len(values),
                "edges": edges,
                "counts": counts,
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
                "max": values[-1] if values else None,
            }
        )
    return out


def _summary(
    scenario: str,
    peers: Sequence[str],
    messages: Sequence[Entry],
    states: Sequence[Entry],
    duration: float,
    outcome: Mapping[str, Any] | None,
) -> Entry:
    """The runner's outcome when it wrote one; otherwise what the logs show (no verdict)."""
    if outcome:
        return {
            "scenario": outcome.get("scenario", scenario),
            "passed": outcome.get("passed"),
            "seconds": outcome.get("seconds"),
            "peers": outcome.get("peers", len(peers)),
            "sent": outcome.get("sent"),
            "acked": outcome.get("acked"),
            "links": outcome.get("links"),
            "error": outcome.get("error") or "",
            "source": "outcome.json",
        }
    connected = {tuple(sorted((s["peer"], s["remote"]))) for s in states if s["new"] == "connected"}
    return {
        "scenario": scenario,
        "passed": None,
        "seconds": round(duration, 1),
        "peers": len(peers),
        "sent": len(messages),
        "acked": sum(m["acked"] is not None for m in messages),
        "links": len(connected),
        "error": "",
        "source": "event logs (no outcome.json: no verdict, time is the logs' span)",
    }


def _check(check: Mapping[str, Any] | None) -> Entry | None:
    if check is None:
        return None
    return {
        "valid": check.get("valid"),
        "exit_code": check.get("exit_code"),
        "counts": dict(check.get("counts") or {}),
        # Per sender → receiver and conversation: each class's count and first few.
        "by_pair": list(check.get("by_pair") or []),
        "notes": list(check.get("notes") or []),
    }


def build_model(
    events: Mapping[str, Sequence[Entry]],
    history: Sequence[Entry] = (),
    *,
    scenario: str = "",
    check: Mapping[str, Any] | None = None,
    outcome: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    arrow_cap: int = ARROW_CAP,
) -> Entry:
    """The report's data from the parsed inputs: `events` maps each agent to its event log,
    `history` is the harness's entries. All times are seconds since the run's first
    entry (`t0`, Unix seconds, is kept)."""
    stamps = [e["t_wall"] for log in events.values() for e in log] + [h["t_wall"] for h in history]
    t0, t_end = (min(stamps), max(stamps)) if stamps else (0.0, 0.0)
    messages = _messages(events, t0)
    # A peer that never wrote a log (killed before its first event) still gets a lane
    # when somebody sent to it.
    peers = sorted({*events, *(m["to"] for m in messages)}, key=_peer_key)
    states = sorted(
        (
            {
                "peer": agent,
                "remote": e.get("peer", ""),
                "t": round(e["t_wall"] - t0, 4),
                "old": e.get("old", ""),
                "new": e.get("new", ""),
                "reason": e.get("reason", ""),
            }
            for agent, log in events.items()
            for e in log
            if e.get("kind") == "state"
        ),
        key=lambda s: s["t"],
    )
    drawn = _drawn(messages, arrow_cap)
    delivered = sum(m["delivered"] is not None for m in messages)
    return {
        "scenario": scenario,
        "t0": t0,
        "duration": round(t_end - t0, 4),
        "peers": peers,
        "summary": _summary(scenario, peers, messages, states, t_end - t0, outcome),
        "check": _check(check),
        "messages": {
            "total": len(messages),
            "delivered": delivered,
            "undelivered": len(messages) - delivered,
            "acked": sum(m["acked"] is not None for m in messages),
            "duplicated": sum(m["copies"] > 1 for m in messages),
            "drawn": len(drawn),
            "cap": arrow_cap,
        },
        "arrows": drawn,
        "states": states,
        "faults": fault_bands(history, t0, t_end),
        "histograms": latency_histograms(messages),
        "notes": list(notes),
    }


# ---- the page (pure) ----


def _embed(data: Any) -> str:
    """JSON safe inside a <script> element: no `</script>` or `<!--` can close it early."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _cell(value: Any) -> str:
    return "—" if value is None else html.escape(str(value))


def _summary_html(model: Entry) -> str:
    s = model["summary"]
    result = {True: ("pass", "pass"), False: ("FAIL", "fail"), None: ("—", "unknown")}
    text, css = result[s["passed"]]
    seconds = "—" if s["seconds"] is None else f"{s['seconds']:.1f} s"
    heads = ("scenario", "result", "time", "peers", "sent", "acked", "links")
    row = (
        f"<td>{_cell(s['scenario'])}</td><td class='{css}'>{text}</td><td>{seconds}</td>"
        + "".join(f"<td>{_cell(s[k])}</td>" for k in ("peers", "sent", "acked", "links"))
    )
    error = f"<p class='fail'>{html.escape(s['error'])}</p>" if s["error"] else ""
    return (
        "<table class='summary'><tr>"
        + "".join(f"<th>{h}</th>" for h in heads)
        + f"</tr><tr>{row}</tr></table>{error}"
        + f"<p class='muted'>from {html.escape(s['source'])}</p>"
    )


def _check_html(model: Entry) -> str:
    check = model["check"]
    if check is None:
        return "<p class='verdict unknown'>Checker: not run (no check.json)</p>"
    verdict = {True: ("valid", "pass"), False: ("INVALID", "fail")}
    text, css = verdict.get(check["valid"], ("unknown", "unknown"))
    parts = [
        f"<p class='verdict {css}'>Checker: {text} (exit code {_cell(check['exit_code'])})</p>"
    ]
    if check["counts"]:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{_cell(n)}</td></tr>"
            for name, n in sorted(check["counts"].items())
        )
        parts.append(f"<table class='counts'><tr><th>class</th><th>count</th></tr>{rows}</table>")
    parts.extend(_pair_html(pair) for pair in check["by_pair"])
    parts.extend(f"<p class='muted'>{html.escape(str(n))}</p>" for n in check["notes"])
    return "".join(parts)


def _pair_html(pair: Entry) -> str:
    """One sender → receiver and conversation of the checker's result, folded: its count
    per class, unfolding to the first few anomalies of each with the faults meanwhile."""
    where = f", conversation {pair['conversation']}" if pair.get("conversation") else ""
    tally = ", ".join(f"{name} {n}" for name, n in pair["counts"].items())
    items = []
    for name, examples in pair["examples"].items():
        for a in examples:
            seq = f" (seq {a['seq']})" if a.get("seq") is not None else ""
            during = f"; during {', '.join(a['during'])}" if a.get("during") else ""
            what = f"{a.get('type') or 'message'} {(a.get('id') or '?')[:8]}…{seq}"
            items.append(f"{name}: {what}: {a.get('detail', '')}{during}")
        if (more := pair["counts"][name] - len(examples)) > 0:
            items.append(f"and {more} more {name}")
    shown = "".join(f"<li>{html.escape(item)}</li>" for item in items)
    summary = html.escape(f"{pair['sender']} → {pair['receiver']}{where}: {tally}")
    return f"<details class='pair'><summary>{summary}</summary><ul>{shown}</ul></details>"


def _messages_html(model: Entry) -> str:
    m = model["messages"]
    line = (
        f"{m['total']} reliable messages: {m['delivered']} delivered, {m['undelivered']} "
        f"never delivered, {m['acked']} acked, {m['duplicated']} delivered more than once."
    )
    if m["drawn"] < m["total"]:
        line += (
            f" Showing {m['drawn']} of {m['total']} arrows (the cap is {m['cap']}): every "
            "undelivered message, the others evenly spaced over the run; all are counted."
        )
    notes = "".join(f"<p class='muted'>{html.escape(n)}</p>" for n in model["notes"])
    return f"<p id='message-counts'>{html.escape(line)}</p>{notes}"


def render_html(model: Entry) -> str:
    """The whole page: inline CSS, the data as JSON, the inline script that draws it."""
    title = html.escape(f"PeerLab report: {model['scenario']}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{title}</h1>
<section id="summary">{_summary_html(model)}</section>
<section id="check">{_check_html(model)}</section>
<h2>Timeline</h2>
{_messages_html(model)}
<p class="legend"><span class="key arrow-key"></span>delivered (arrow: send → first delivery)
<span class="key unacked-key"></span>delivered, never acked
<span class="key undelivered-key"></span>never delivered
<span class="key ack-key"></span>ack back at the sender
<span class="key state-key"></span>link state change (colour: new state)
<span class="key fault-key"></span>fault
<label class="zoom">zoom <select id="zoom"><option>1</option><option>2</option><option>4</option>
<option>8</option><option>16</option></select></label></p>
<div class="scroll"><svg id="timeline" class="timeline"></svg></div>
<h2>Send → ack latency per link</h2>
<div id="histograms"></div>
<script type="application/json" id="report-data">{_embed(model)}</script>
<script>{_JS}</script>
</body>
</html>
"""


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 12px; }
h2 { font-size: 16px; margin: 20px 0 6px; }
table { border-collapse: collapse; margin: 4px 0; }
th, td { border: 1px solid #ccc; padding: 3px 10px; text-align: left; }
th { background: #f2f2f2; }
.pass { color: #1a7f37; font-weight: bold; }
.fail { color: #c62828; font-weight: bold; }
.unknown { color: #8a6d00; font-weight: bold; }
.muted { color: #777; font-size: 12px; margin: 2px 0; }
.verdict { font-size: 15px; margin: 10px 0 4px; }
.scroll { overflow-x: auto; border: 1px solid #ddd; }
.legend { font-size: 12px; }
.zoom { margin-left: 24px; }
.key { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px; }
.arrow-key { background: #1f6fb2; }
.unacked-key { background: #e08a00; }
.undelivered-key { background: #c62828; }
.ack-key { background: #1a7f37; border-radius: 50%; width: 10px; }
.state-key { background: #7b3fa0; transform: rotate(45deg); width: 9px; height: 9px; }
.fault-key { background: rgba(198, 40, 40, 0.15); border: 1px solid rgba(198, 40, 40, 0.5); }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
.lane line { stroke: #999; stroke-width: 1; }
.lane text { font-weight: bold; font-size: 12px; }
.axis line { stroke: #bbb; }
.arrow { stroke: #1f6fb2; stroke-width: 1; opacity: 0.7; }
.arrow.unacked { stroke: #e08a00; opacity: 1; }
.undelivered line { stroke: #c62828; stroke-width: 1.5; stroke-dasharray: 3 2; }
.undelivered path { stroke: #c62828; stroke-width: 2; }
.ack { fill: #1a7f37; }
.fault-band rect { fill: rgba(198, 40, 40, 0.12); stroke: rgba(198, 40, 40, 0.5); }
.fault-band text { fill: #a31515; }
.histogram { margin: 0 24px 16px 0; display: inline-block; vertical-align: top; }
.histogram .bar { fill: #1f6fb2; }
"""

# Drawn in the browser from the embedded data; every element the tests count carries a
# class: lane, arrow, undelivered, ack, state-change, fault-band, histogram, bar.
_JS = """
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const svg = document.getElementById("timeline");
  /* An <svg> parsed from HTML is in the SVG namespace: no namespace URL to spell out. */
  const NS = svg.namespaceURI;
  const STATE_COLOURS = {connected: "#1a7f37", connecting: "#7b3fa0", disconnected: "#e08a00",
                         failed: "#c62828", closed: "#555", "new": "#999"};

  function el(parent, name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    parent.appendChild(node);
    return node;
  }
  function tip(node, text) { el(node, "title", {}, text); return node; }
  function fmt(seconds) { return seconds.toFixed(3) + " s"; }
  function niceStep(span, parts) {
    const raw = span / parts, power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
    return 10 * power;
  }
  function bound(ms) { return ms >= 1000 ? ms / 1000 + " s" : ms + " ms"; }
  function describe(m) {
    return m.type + " " + m.id.slice(0, 8) + "\\u2026 " + m.from + " \\u2192 " + m.to +
      " (conversation " + m.conversation + ", seq " + m.seq + ")";
  }

  function drawTimeline(zoom) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const peers = data.peers, faults = data.faults;
    const left = 80, right = 20, laneGap = 80, bandRow = 14;
    const top = 16 + bandRow * faults.length;
    const width = Math.max(900, svg.parentNode.clientWidth - 2) * zoom;
    const height = top + laneGap * Math.max(peers.length - 1, 0) + 50;
    const span = Math.max(data.duration, 0.001);
    const x = function (t) { return left + (t / span) * (width - left - right); };
    const laneY = {};
    peers.forEach(function (p, i) { laneY[p] = top + 10 + i * laneGap; });
    const bottom = top + 20 + laneGap * Math.max(peers.length - 1, 0);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);

    const defs = el(svg, "defs", {});
    for (const [id, colour] of [["head", "#1f6fb2"], ["head-unacked", "#e08a00"]]) {
      const marker = el(defs, "marker", {id: id, viewBox: "0 0 6 6", refX: 6, refY: 3,
        markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse"});
      el(marker, "path", {d: "M0,0 L6,3 L0,6 z", fill: colour});
    }

    faults.forEach(function (f, i) {
      const g = el(svg, "g", {"class": "fault-band"});
      const w = Math.max(x(f.end) - x(f.start), 2);
      tip(el(g, "rect", {x: x(f.start), y: 4, width: w, height: bottom - 4}),
        f.label + ": " + fmt(f.start) + " \\u2192 " + fmt(f.end) +
        (f.backend ? " [" + f.backend + "]" : "") + (f.failed ? ", proof FAILED" : "") +
        (f.until_end ? ", never ended (until the end of the run)" : ""));
      el(g, "text", {x: x(f.start) + 3, y: 14 + i * bandRow},
        f.label + (f.failed ? " \\u2014 proof failed" : ""));
    });

    const axis = el(svg, "g", {"class": "axis"});
    const step = niceStep(span / zoom, 10);
    for (let t = 0; t <= span + 1e-9; t += step) {
      el(axis, "line", {x1: x(t), x2: x(t), y1: bottom, y2: bottom + 5});
      el(axis, "text", {x: x(t), y: bottom + 17, "text-anchor": "middle"},
        (+t.toFixed(3)) + " s");
    }

    for (const p of peers) {
      const g = el(svg, "g", {"class": "lane", "data-peer": p});
      el(g, "line", {x1: left, x2: width - right, y1: laneY[p], y2: laneY[p]});
      el(g, "text", {x: 8, y: laneY[p] + 4}, p);
    }

    for (const m of data.arrows) {
      const y1 = laneY[m.from], y2 = laneY[m.to];
      if (m.delivered === null) {
        /* A stub toward the receiver and a cross: sent, never delivered. */
        const g = tip(el(svg, "g", {"class": "undelivered"}),
          describe(m) + ": sent at " + fmt(m.sent) + ", never delivered" +
          (m.acked === null ? "" : ", yet acked at " + fmt(m.acked)));
        const yEnd = y1 + (y2 - y1) * 0.35, xs = x(m.sent);
        el(g, "line", {x1: xs, y1: y1, x2: xs + 12, y2: yEnd});
        el(g, "path", {d: "M" + (xs + 8) + "," + (yEnd - 4) + " l8,8 m0,-8 l-8,8", fill: "none"});
      } else {
        const unacked = m.acked === null;
        tip(el(svg, "line", {"class": unacked ? "arrow unacked" : "arrow",
          x1: x(m.sent), y1: y1, x2: x(m.delivered), y2: y2,
          "marker-end": "url(#" + (unacked ? "head-unacked" : "head") + ")"}),
          describe(m) + ": sent " + fmt(m.sent) + ", delivered " + fmt(m.delivered) +
          (m.copies > 1 ? " (" + m.copies + " times)" : "") +
          (unacked ? ", never acked" : ", acked " + fmt(m.acked)));
      }
      if (m.acked !== null) {
        tip(el(svg, "circle", {"class": "ack", cx: x(m.acked), cy: y1, r: 2.5}),
          "ack of " + describe(m) + " at " + fmt(m.acked) + ", " +
          ((m.acked - m.sent) * 1000).toFixed(1) + " ms after sending");
      }
    }

    for (const s of data.states) {
      const cx = x(s.t), cy = laneY[s.peer] - 9;
      tip(el(svg, "path", {"class": "state-change", fill: STATE_COLOURS[s.new] || "#7b3fa0",
        d: "M" + cx + "," + (cy - 5) + " l5,5 l-5,5 l-5,-5 z"}),
        s.peer + " \\u2192 " + s.remote + ": " + s.old + " \\u2192 " + s.new +
        (s.reason ? " (" + s.reason + ")" : "") + " at " + fmt(s.t));
    }
  }

  function drawHistograms() {
    const box = document.getElementById("histograms");
    if (!data.histograms.length) {
      box.textContent = "No reliable message was sent.";
      return;
    }
    for (const h of data.histograms) {
      const figure = document.createElement("figure");
      figure.className = "histogram";
      const caption = document.createElement("figcaption");
      caption.textContent = h.sender + " \\u2192 " + h.receiver + ": " + h.acked + " of " +
        h.sent + " acked" + (h.acked ? ", p50 " + h.p50 + " ms, p95 " + h.p95 + " ms, max " +
        h.max + " ms" : "");
      figure.appendChild(caption);
      const bins = h.counts.length, barW = 40, plotH = 110, top = 14, left = 8;
      const chart = document.createElementNS(NS, "svg");
      chart.setAttribute("width", left + bins * barW + 8);
      chart.setAttribute("height", top + plotH + 30);
      figure.appendChild(chart);
      const most = Math.max.apply(null, h.counts.concat([1]));
      h.counts.forEach(function (n, i) {
        const barH = (n / most) * plotH, bx = left + i * barW;
        const range = bound(h.edges[i]) + " \\u2013 " + bound(h.edges[i + 1]);
        tip(el(chart, "rect", {"class": "bar", x: bx + 2, y: top + plotH - barH,
          width: barW - 4, height: barH}), range + ": " + n);
        if (n) el(chart, "text", {x: bx + barW / 2, y: top + plotH - barH - 3,
          "text-anchor": "middle"}, n);
        el(chart, "text", {x: bx + barW / 2, y: top + plotH + 14, "text-anchor": "middle"},
          h.edges[i + 1] >= 1000 ? h.edges[i + 1] / 1000 + " s" : h.edges[i + 1]);
      });
      el(chart, "text", {x: left, y: top + plotH + 27}, "upper bound of each bin, ms or s");
      box.appendChild(figure);
    }
  }

  const zoom = document.getElementById("zoom");
  zoom.addEventListener("change", function () { drawTimeline(+zoom.value); });
  drawTimeline(1);
  drawHistograms();
})();
"""


# ---- reading the folder and writing the page (I/O) ----


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_report(folder: Path) -> Path:
    """Write `folder/report.html` from the scenario folder's files; returns its path."""
    folder = Path(folder)
    # The checker's reader: the same events it judged, a restarted agent's event written
    # onto its predecessor's cut last line included.
    events, history, damaged = load_run(folder)
    notes = [f"{name}: {reason}" for name, reasons in damaged.items() for reason in reasons]
    if not events:
        notes.append("no event logs in events/: the agents never started")
    model = build_model(
        events,
        history,
        scenario=folder.name,
        check=_read_json(folder / "check.json"),
        outcome=_read_json(folder / "outcome.json"),
        notes=notes,
    )
    path = folder / "report.html"
    path.write_text(render_html(model), encoding="utf-8")
    return path


# ---- `peerlab report` ----


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `report` to `peerlab`'s subcommands."""
    parser = subparsers.add_parser(
        "report",
        help="write report.html for a scenario's results folder (or every one of a run)",
    )
    parser.add_argument(
        "folder", type=Path, help="results/<run id>/<scenario>, or results/<run id>"
    )
    return parser


def run_report(args: argparse.Namespace) -> int:
    """Write the report of `args.folder`; a run folder gets one per scenario in it."""
    scenarios = scenario_folders(args.folder)
    if not scenarios:
        print(
            f"{args.folder}: not a scenario results folder (no events/) nor a run folder "
            "holding some",
            file=sys.stderr,
        )
        return 2
    for scenario in scenarios:
        print(write_report(scenario))
    return 0
