"""report.html: the data model from hand-made logs, the page's self-containment, and a real
run's report rendered by headless Chromium, checked from the drawn page (not its source).

The browser test needs the lab and Debian's Chromium (`scripts/ensure-chromium.sh`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

import peerlab.scenarios
from peerlab.scenarios.history import ENDED_BY, ENDINGS, FAULT_KINDS, PROOFS
from peerlab.scenarios.report import (
    add_report_parser,
    build_model,
    fault_bands,
    latency_edges,
    latency_histograms,
    render_html,
    run_report,
    write_report,
)

T0 = 1_800_000_000.0


def message(sender: str, mid: str, seq: int, kind: str = "text") -> dict:
    return {"type": kind, "id": mid, "sender": sender, "conversation": "c", "seq": seq}


def event(agent: str, t: float, kind: str, **fields) -> dict:
    return {"seq": 0, "t_mono": t, "t_wall": T0 + t, "agent": agent, "kind": kind, **fields}


def nemesis(index: int, t: float, type_: str, f: str, value=None, **extra) -> dict:
    return {
        "index": index,
        "t_wall": T0 + t,
        "t_mono": t,
        "process": "nemesis",
        "type": type_,
        "f": f,
        "value": value,
        **extra,
    }


def chat() -> dict[str, list[dict]]:
    """peer1 sends a (delivered twice, acked), b (delivered, never acked), c (never
    delivered) and a typing indicator (not reliable: no arrow); peer2 sends d (acked)."""
    a, b, c = (
        message("peer1", "a" * 32, 0),
        message("peer1", "b" * 32, 1),
        message("peer1", "c" * 32, 2),
    )
    typing = message("peer1", "t" * 32, 0, kind="typing")
    d = message("peer2", "d" * 32, 0)
    return {
        "peer1": [
            event("peer1", 0.0, "state", peer="peer2", old="new", new="connecting"),
            event("peer1", 1.5, "state", peer="peer2", old="connecting", new="connected"),
            event("peer1", 2.0, "sent", peer="peer2", message=a),
            event("peer1", 2.1, "sent", peer="peer2", message=typing),
            event("peer1", 2.2, "sent", peer="peer2", message=b),
            event("peer1", 2.3, "sent", peer="peer2", message=c),
            event("peer1", 2.012, "acked", peer="peer2", message=a, ack_id="x"),
            event("peer1", 3.0, "delivered", peer="peer2", message=d),
        ],
        "peer2": [
            event("peer2", 2.004, "delivered", peer="peer1", message=a),
            event("peer2", 2.5, "delivered", peer="peer1", message=a),
            event("peer2", 2.15, "received", peer="peer1", message=typing),
            event("peer2", 2.21, "delivered", peer="peer1", message=b),
            event("peer2", 2.9, "sent", peer="peer1", message=d),
            event("peer2", 4.4, "acked", peer="peer1", message=d, ack_id="y"),
        ],
    }


def test_every_reliable_message_is_an_arrow_from_send_to_first_delivery():
    model = build_model(chat(), scenario="s")
    arrows = {m["id"][0]: m for m in model["arrows"]}
    assert sorted(arrows) == ["a", "b", "c", "d"]  # no arrow for the typing indicator
    a = arrows["a"]
    assert (a["from"], a["to"], a["sent"], a["delivered"], a["acked"], a["copies"]) == (
        "peer1",
        "peer2",
        2.0,
        2.004,
        2.012,
        2,
    )
    assert (arrows["b"]["delivered"], arrows["b"]["acked"]) == (2.21, None)
    assert (arrows["c"]["delivered"], arrows["c"]["acked"], arrows["c"]["copies"]) == (
        None,
        None,
        0,
    )
    assert (arrows["d"]["from"], arrows["d"]["delivered"], arrows["d"]["acked"]) == (
        "peer2",
        3.0,
        4.4,
    )
    assert model["messages"] == {
        "total": 4,
        "delivered": 3,
        "undelivered": 1,
        "acked": 2,
        "duplicated": 1,
        "drawn": 4,
        "cap": 2000,
    }
    assert model["peers"] == ["peer1", "peer2"]
    assert [(s["peer"], s["new"], s["t"]) for s in model["states"]] == [
        ("peer1", "connecting", 0.0),
        ("peer1", "connected", 1.5),
    ]


def test_without_outcome_the_summary_comes_from_the_logs_and_has_no_verdict():
    summary = build_model(chat(), scenario="s")["summary"]
    assert summary["passed"] is None and summary["source"].startswith("event logs")
    assert (summary["peers"], summary["sent"], summary["acked"], summary["links"]) == (2, 4, 2, 1)
    outcome = {"scenario": "s", "passed": False, "seconds": 12.5, "peers": 2, "sent": 4}
    summary = build_model(chat(), outcome={**outcome, "acked": 2, "links": 1, "error": "boom"})[
        "summary"
    ]
    assert (summary["passed"], summary["seconds"], summary["error"]) == (False, 12.5, "boom")


def test_lanes_follow_natural_order_and_include_a_receiver_without_a_log():
    sent = message("peer10", "e" * 32, 0)
    events = {
        "peer10": [event("peer10", 1.0, "sent", peer="peer3", message=sent)],
        "peer2": [],
    }
    assert build_model(events)["peers"] == ["peer2", "peer3", "peer10"]


def test_the_arrow_cap_keeps_every_undelivered_message_and_spreads_the_rest():
    log, deliveries = [], []
    for i in range(12):
        m = message("peer1", f"{i:032d}", i)
        log.append(event("peer1", float(i), "sent", peer="peer2", message=m))
        if i not in (3, 7):
            deliveries.append(event("peer2", i + 0.5, "delivered", peer="peer1", message=m))
    model = build_model({"peer1": log, "peer2": deliveries}, arrow_cap=5)
    drawn = model["arrows"]
    assert model["messages"]["total"] == 12 and model["messages"]["drawn"] == 5 == len(drawn)
    assert {m["seq"] for m in drawn if m["delivered"] is None} == {3, 7}
    # The 3 delivered ones drawn are spread over the 10, not the first three.
    assert [m["seq"] for m in drawn if m["delivered"] is not None] == [0, 4, 8]
    assert "Showing 5 of 12 arrows (the cap is 5)" in render_html(model)


def test_fault_bands_run_from_invoke_to_clear_one_shot_end_or_teardown():
    cut = {"a": "peer1", "b": "peer2", "direction": "both"}
    flap = {**cut, "down_s": 1.0, "up_s": 2.0, "cycles": 2}
    history = [
        nemesis(0, 0.0, "invoke", "nat-check", {"peer1": "lan"}),
        nemesis(1, 1.0, "ok", "nat-check", ["proof"]),
        nemesis(2, 2.0, "invoke", "partition", cut, target="peer1/peer2"),
        nemesis(3, 7.0, "ok", "partition", cut, target="peer1/peer2", backend="iptables"),
        nemesis(4, 9.0, "invoke", "clear-partition", cut, target="peer1/peer2"),
        nemesis(5, 9.1, "ok", "clear-partition", cut, target="peer1/peer2"),
        nemesis(6, 10.0, "invoke", "flap", flap, target="peer1/peer2"),
        nemesis(7, 11.0, "info", "flap", {"cycle": 1, "dropped": 5}, target="peer1/peer2"),
        nemesis(8, 16.0, "ok", "flap", flap, target="peer1/peer2", backend="iptables"),
        nemesis(9, 17.0, "invoke", "shape", {"direction": "up", "loss": 0.1}, target="peer1"),
        nemesis(10, 18.0, "ok", "shape", {"direction": "up", "loss": 0.1}, target="peer1"),
        nemesis(11, 19.0, "invoke", "rebind", {}, target="peer2"),
        nemesis(12, 20.0, "fail", "rebind", {}, target="peer2", error="not proven"),
    ]
    bands = fault_bands(history, T0, T0 + 30.0)
    assert [(b["kind"], b["start"], b["end"]) for b in bands] == [
        ("partition", 2.0, 9.1),
        ("flap", 10.0, 16.0),
        ("shape", 17.0, 30.0),  # never cleared: until the teardown
        ("rebind", 19.0, 20.0),
    ]
    assert [b["until_end"] for b in bands] == [False, False, True, False]
    assert [b["failed"] for b in bands] == [False, False, False, True]
    assert bands[0]["label"] == "partition peer1/peer2 (direction=both)"
    assert bands[0]["backend"] == "iptables"
    assert bands[2]["label"] == "shape peer1 (direction=up, loss=0.1)"
    assert set(FAULT_KINDS) >= {b["kind"] for b in bands}


def test_two_identical_faults_are_cleared_in_the_order_they_were_applied():
    up = {"direction": "up", "delay_ms": 50}
    history = [
        nemesis(0, 1.0, "invoke", "shape", up, target="peer1"),
        nemesis(1, 2.0, "invoke", "shape", up, target="peer1"),
        nemesis(2, 3.0, "ok", "clear-shape", up, target="peer1"),
    ]
    bands = fault_bands(history, T0, T0 + 10.0)
    assert [(b["start"], b["end"]) for b in bands] == [(1.0, 3.0), (2.0, 10.0)]


def test_a_kill_lasts_until_its_peers_restart_or_the_end_of_the_run():
    history = [
        nemesis(0, 2.0, "invoke", "kill", {"peer": "peer1"}),
        nemesis(1, 2.1, "ok", "kill", {"peer": "peer1"}),
        nemesis(2, 3.0, "invoke", "kill", {"peer": "peer2"}),
        nemesis(3, 3.1, "ok", "kill", {"peer": "peer2"}),
        nemesis(4, 5.0, "invoke", "restart", {"peer": "peer1"}),
        nemesis(5, 7.0, "ok", "restart", {"peer": "peer1"}),
    ]
    bands = fault_bands(history, T0, T0 + 12.0)
    # Down from the kill until its agent answers again; peer2 never came back.
    assert [(b["label"], b["start"], b["end"], b["until_end"]) for b in bands] == [
        ("kill peer1", 2.0, 7.0, False),
        ("kill peer2", 3.0, 12.0, True),
    ]


def test_each_flapping_profile_cut_is_a_band_from_its_invoke_to_its_info():
    cut = {"cycle": 1, "down_s": 2.0}
    history = [
        nemesis(0, 4.0, "invoke", "profile-flap", {"peer": "peer1", **cut}),
        nemesis(1, 4.0, "invoke", "profile-flap", {"peer": "peer2", **cut}),
        nemesis(2, 6.1, "info", "profile-flap", {"peer": "peer2", **cut, "dropped": 3}),
        nemesis(3, 6.2, "info", "profile-flap", {"peer": "peer1", **cut, "dropped": 5}),
        # Cancelled mid-cut when the scenario ended: no info.
        nemesis(4, 9.0, "invoke", "profile-flap", {"peer": "peer1", **cut, "cycle": 2}),
    ]
    bands = fault_bands(history, T0, T0 + 10.0)
    assert [(b["target"], b["start"], b["end"]) for b in bands] == [
        ("peer1", 4.0, 6.2),
        ("peer2", 4.0, 6.1),
        ("peer1", 9.0, 10.0),
    ]
    assert bands[0]["label"] == "profile-flap peer1 (cycle=1, down_s=2.0)"


def _recorded_nemesis_kinds() -> set[str]:
    """Every nemesis `f` the harness's source can record: literal ones, and `fault.kind`
    (with `clear-<kind>`) over every `Fault("<kind>", ...)` it builds."""
    package = Path(peerlab.scenarios.__file__).parent
    text = "\n".join(path.read_text() for path in package.rglob("*.py"))
    fault_kinds = set(re.findall(r'\bFault\(\s*"([\w-]+)"', text))
    resolve = {
        "fault.kind": fault_kinds,
        'f"clear-{fault.kind}"': {f"clear-{k}" for k in fault_kinds},
    }
    kinds: set[str] = set()
    for f in re.findall(r'\.record\(\s*"nemesis",\s*"\w+",\s*([^,]+),', text):
        if literal := re.fullmatch(r'"([\w-]+)"', f):
            kinds.add(literal.group(1))
        else:
            assert f in resolve, f"a nemesis entry whose f is {f}: teach this test what it is"
            kinds |= resolve[f]
    return kinds


def test_every_fault_the_harness_can_record_is_drawn_as_a_band():
    recorded = _recorded_nemesis_kinds()
    assert {"kill", "restart", "profile-flap", "partition", "clear-shape"} <= recorded
    for f in sorted(recorded):
        # Each is a fault, the end of one, or a proof: a new kind must be placed here.
        assert f in (*FAULT_KINDS, *ENDINGS, *PROOFS), f"nemesis {f!r}: no band for it"
    for kind in sorted(recorded & set(FAULT_KINDS)):
        for end_f, end_type in (*ENDED_BY[kind], (f"clear-{kind}", "ok")):
            value = {"peer": "peer1"}
            history = [
                nemesis(0, 1.0, "invoke", kind, value, target="peer1"),
                nemesis(1, 2.0, end_type, end_f, value, target="peer1"),
            ]
            bands = build_model(chat(), history)["faults"]
            assert [(b["kind"], b["start"], b["end"]) for b in bands] == [(kind, 1.0, 2.0)], end_f
    assert build_model(chat(), [nemesis(0, 1.0, "invoke", "nat-check", {})])["faults"] == []


def test_a_nemesis_kind_the_report_does_not_know_is_still_a_band():
    history = [
        nemesis(0, 1.0, "invoke", "blackhole", {"peer": "peer2"}),
        nemesis(1, 3.0, "ok", "blackhole", {"peer": "peer2"}),
    ]
    (band,) = fault_bands(history, T0, T0 + 5.0)
    assert (band["label"], band["start"], band["end"]) == ("blackhole peer2", 1.0, 3.0)


def test_latency_edges_step_1_2_5_past_the_largest_latency():
    assert latency_edges(0.0) == [0.0, 1]
    assert latency_edges(7.0) == [0.0, 1, 2, 5, 10]
    assert latency_edges(10.0) == [0.0, 1, 2, 5, 10, 20]
    assert latency_edges(1500.0)[-2:] == [1000, 2000]


def test_histograms_bin_send_to_ack_latency_per_ordered_link_on_shared_edges():
    def m(sender: str, receiver: str, sent: float, acked: float | None) -> dict:
        return {"from": sender, "to": receiver, "sent": sent, "acked": acked}

    messages = [
        m("peer1", "peer2", 0.0, 0.0005),
        m("peer1", "peer2", 1.0, 1.003),
        m("peer1", "peer2", 2.0, 3.5),
        m("peer1", "peer2", 3.0, None),
        m("peer2", "peer1", 0.0, 0.004),
    ]
    one, two = latency_histograms(messages)
    assert (one["sender"], one["receiver"], one["sent"], one["acked"]) == ("peer1", "peer2", 4, 3)
    assert one["edges"] == two["edges"] == [0.0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    assert one["counts"] == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert (one["p50"], one["p95"], one["max"]) == (3.0, 1500.0, 1500.0)
    assert two["counts"][2] == 1 and sum(two["counts"]) == 1


def test_the_page_is_self_contained_and_embeds_its_data_safely():
    lost = {
        "sender": "peer1",
        "receiver": "peer2",
        "conversation": "c",
        "type": "text",
        "id": "c" * 32,
        "seq": 2,
        "detail": "never delivered </script><script>alert(1)</script>",
        "start": T0 + 2.3,
        "end": T0 + 4.4,
        "during": ["partition peer1/peer2 (direction=both)"],
    }
    check = {
        "valid": False,
        "exit_code": 1,
        "counts": {"lost": 3, "duplicated": 0},
        "anomalies": {"lost": [lost] * 3},
        "by_pair": [
            {
                "sender": "peer1",
                "receiver": "peer2",
                "conversation": "c",
                "counts": {"lost": 3},
                "examples": {"lost": [lost] * 2},
            }
        ],
        "notes": ["one note"],
    }
    page = render_html(build_model(chat(), scenario="s", check=check))
    # Nothing fetched: no URL scheme, no src/href, no stylesheet link, no CSS import or
    # url() other than a reference to the page's own SVG markers (url(#…)).
    assert not re.search(r"\b(?:https?|wss?|ftp|file|data):", page)
    assert not re.search(r"\b(?:src|href)\s*=", page, re.IGNORECASE)
    assert "<link" not in page and "@import" not in page
    assert not re.search(r"url\((?!#)", page)
    # The data round-trips and cannot close its <script> element early.
    assert page.count("</script>") == 2
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page)
    data = json.loads(found.group(1))
    shown = data["check"]["by_pair"][0]["examples"]["lost"][0]
    assert shown["detail"].endswith("alert(1)</script>")
    assert len(data["arrows"]) == 4
    # The summary and the verdict are in the page itself, before any script runs.
    assert "<th>scenario</th><th>result</th><th>time</th>" in page
    assert "Checker: INVALID (exit code 1)" in page
    assert "<tr><td>lost</td><td>3</td></tr>" in page
    # Per sender → receiver and conversation: the counts, the first few, the faults then.
    assert "<summary>peer1 → peer2, conversation c: lost 3</summary>" in page
    assert (
        "<li>lost: text cccccccc… (seq 2): never delivered &lt;/script&gt;&lt;script&gt;"
        "alert(1)&lt;/script&gt;; during partition peer1/peer2 (direction=both)</li>"
    ) in page
    assert "<li>and 1 more lost</li>" in page


def test_write_report_reads_the_folder_and_the_cli_hook_writes_it(tmp_path, capsys):
    folder = tmp_path / "run" / "two_peers"
    (folder / "events").mkdir(parents=True)
    for peer, log in chat().items():
        text = "".join(json.dumps(e) + "\n" for e in log)
        # A killed agent leaves a cut last line.
        cut = '{"seq": 9, "t_wal' if peer == "peer2" else ""
        (folder / "events" / f"{peer}.jsonl").write_text(text + cut)
    (folder / "history.jsonl").write_text(
        json.dumps(nemesis(0, 2.0, "invoke", "partition", {}, target="peer1/peer2")) + "\n"
    )
    (folder / "outcome.json").write_text(
        json.dumps({"scenario": "two_peers", "passed": True, "seconds": 3.0, "peers": 2})
    )
    path = write_report(folder)
    assert path == folder / "report.html"
    page = path.read_text()
    assert "peer2: ends in a cut line (line 7)" in page
    assert "Checker: not run (no check.json)" in page
    assert "<td class='pass'>pass</td>" in page

    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="command"))
    path.unlink()
    # A run folder: one report per scenario in it.
    assert run_report(parser.parse_args(["report", str(folder.parent)])) == 0
    assert path.exists() and str(path) in capsys.readouterr().out
    assert run_report(parser.parse_args(["report", str(tmp_path / "nothing")])) == 2
    assert "not a scenario results folder" in capsys.readouterr().err


# ---- the real thing: a run, its report, rendered by a browser ----

ENSURE = "scripts/ensure-chromium.sh"
REPO = Path(__file__).resolve().parent.parent
TWO_FAULTS = REPO / "tests" / "data" / "two_faults.yaml"


class Classes(HTMLParser):
    """Counts elements per class token, and which peer each lane is."""

    def __init__(self, markup: str):
        super().__init__()
        self.counts: dict[str, int] = {}
        self.lanes: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for token in (attributes.get("class") or "").split():
            self.counts[token] = self.counts.get(token, 0) + 1
            if token == "lane":
                self.lanes.append(attributes.get("data-peer") or "")


def reliable(log: list[dict], kind: str) -> set[tuple[str, str]]:
    """(sender, id) of the reliable messages with events of `kind` in one agent's log."""
    ids = set()
    for e in log:
        m = e.get("message") or {}
        if e["kind"] == kind and m.get("type") in ("text", "edit", "delete", "reaction"):
            ids.add((e["agent"] if kind != "delivered" else e["peer"], m["id"]))
    return ids


@pytest.mark.containers(stack_s=15)
def test_a_real_runs_report_draws_lanes_arrows_and_faults_in_a_browser(tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(f"chromium is not installed: run {ENSURE} (as root, or with sudo)")
    # Two faults (a partition, then more delay), so that the bands are drawn too. Into the
    # repository's results/, not tmp_path: pytest deletes all but its last three temporary
    # folders, and the report and its screenshot are kept with the run's results.
    command = [sys.executable, "-m", "peerlab.scenarios.cli", "run", str(TWO_FAULTS)]
    run = subprocess.run(
        [*command, "--results", str(REPO / "results")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    junit = re.search(r"^JUnit XML: (.+)$", run.stdout, re.MULTILINE)
    assert junit, run.stdout
    folder = Path(junit.group(1)).parent / TWO_FAULTS.stem
    report = write_report(folder)

    started = time.monotonic()
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu"]
    browser.append(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    dom = subprocess.run(
        [*browser, "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    screenshot = folder / "report.png"
    subprocess.run(
        [*browser, f"--screenshot={screenshot}", "--window-size=1400,900", report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    print(f"report {report}, screenshot {screenshot}, browser {time.monotonic() - started:.1f}s")

    logs = {p.stem: [json.loads(line) for line in p.open()] for p in folder.glob("events/*.jsonl")}
    sent = set().union(*(reliable(log, "sent") for log in logs.values()))
    delivered = sent & set().union(*(reliable(log, "delivered") for log in logs.values()))
    acked = sent & set().union(*(reliable(log, "acked") for log in logs.values()))
    states = sum(e["kind"] == "state" for log in logs.values() for e in log)
    history = [json.loads(line) for line in (folder / "history.jsonl").open()]
    faults = [h for h in history if h["type"] == "invoke" and h["f"] in FAULT_KINDS]

    # The page's source draws nothing: whatever is counted below, the browser drew.
    assert Classes(report.read_text()).counts.get("lane", 0) == 0
    drawn = Classes(dom)
    assert sorted(drawn.lanes) == sorted(logs) and len(logs) == 2, drawn.lanes
    assert sent and len(delivered) == len(sent)  # the scenario passed: all delivered
    assert drawn.counts.get("arrow", 0) == min(len(delivered), 2000), drawn.counts
    assert drawn.counts.get("ack", 0) == min(len(acked), 2000), drawn.counts
    assert drawn.counts.get("undelivered", 0) == 0, drawn.counts
    assert drawn.counts.get("state-change", 0) == states > 0, drawn.counts
    assert drawn.counts.get("fault-band", 0) == len(faults) == 2, drawn.counts
    assert drawn.counts.get("histogram", 0) == 2, drawn.counts  # peer1→peer2, peer2→peer1
    assert drawn.counts.get("bar", 0) > 0, drawn.counts

    # A real picture: a PNG, 1400 wide, and not a blank page (which compresses to ~5 kB).
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert int.from_bytes(png[16:20], "big") == 1400
    assert len(png) > 30_000, f"{screenshot}: {len(png)} bytes, a near-blank page?"
