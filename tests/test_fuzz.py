"""The fuzz harness itself (fuzz/, docs/fuzz.md): seeded, replayable, and it sees bugs.

The campaigns are run by `python -m fuzz`; here only their machinery is checked, fast:
the same seed gives the same cases and counts, a decoder broken on purpose is reported
with a reproducer that replays, and the oracles of the in-process campaigns flag what the
docs forbid and pass what they allow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from multidict import CIMultiDict

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # fuzz/ is a folder of the repository, like bench/

from fuzz import __main__ as cli  # noqa: E402
from fuzz import control_cases, decoder, signaling, signaling_cases  # noqa: E402
from fuzz.campaign import Budget, case_rng  # noqa: E402
from fuzz.control_cases import ControlCase  # noqa: E402
from fuzz.control_http import STATUSES, Answer, judge  # noqa: E402
from fuzz.signaling_cases import SignalingCase  # noqa: E402
from peerlab.peer.protocol import ChannelMessage, MessageType, ProtocolError  # noqa: E402
from peerlab.peer.protocol import decode as real_decode  # noqa: E402
from peerlab.peer.protocol import encode as real_encode  # noqa: E402

CASES = Budget(200, 60.0)


def test_a_seed_gives_the_same_cases_and_counts():
    first, again = decoder.run(1, CASES), decoder.run(1, CASES)
    assert first.cases == again.cases == 200
    assert first.outcomes == again.outcomes
    assert first.line() == again.line()
    assert first.outcomes["accepted"] > 0 and len(first.outcomes) > 3  # not all one thing
    inputs = [decoder.make_frame(case_rng("decoder", 2, case)) for case in range(20)]
    assert inputs == [decoder.make_frame(case_rng("decoder", 2, case)) for case in range(20)]
    assert inputs != [decoder.make_frame(case_rng("decoder", 1, case)) for case in range(20)]


# The first cases of each campaign, digested, in a fresh interpreter.
DIGEST = """
import hashlib
from fuzz import control_cases, decoder, signaling_cases
from fuzz.campaign import case_rng
inputs = [decoder.make_frame(case_rng("decoder", 1, i)) for i in range(300)]
inputs += [signaling_cases.make_case(case_rng("signaling", 1, i)) for i in range(100)]
inputs += [control_cases.make_case(case_rng("control", 1, i)) for i in range(100)]
print(hashlib.sha256(repr(inputs).encode("utf-8", "surrogatepass")).hexdigest())
"""


def test_a_seed_gives_the_same_inputs_in_every_process():
    # Not even string hashing, which differs from one interpreter to the next, may matter.
    digests = {
        subprocess.run(
            [sys.executable, "-c", DIGEST],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(digests) == 1, digests


def test_a_case_does_not_depend_on_the_cases_before_it():
    assert signaling_cases.make_case(case_rng("signaling", 1, 57)) == signaling_cases.make_case(
        case_rng("signaling", 1, 57)
    )
    assert control_cases.make_case(case_rng("control", 1, 57)) == control_cases.make_case(
        case_rng("control", 1, 57)
    )
    replayed = decoder.run(1, CASES, only=57)
    assert replayed.cases == 1
    assert replayed.trace[0] == f"input: {decoder.make_frame(case_rng('decoder', 1, 57))!r}"


def _crashes_on_edit(frame: str | bytes) -> ChannelMessage:
    message = real_decode(frame)
    if message.type is MessageType.EDIT:
        raise KeyError("target")
    return message


def _undocumented_code(frame: str | bytes) -> ChannelMessage:
    try:
        return real_decode(frame)
    except ProtocolError as exc:
        raise ProtocolError("weird", str(exc)) from None


def _loses_the_body(message: ChannelMessage) -> str:
    return real_encode(message._replace(body="") if message.body else message)


@pytest.mark.parametrize(
    ("decode", "encode", "problem"),
    [
        (_crashes_on_edit, real_encode, "decode raised KeyError"),
        (_undocumented_code, real_encode, "a code not in docs/protocol.md"),
        (real_decode, _loses_the_body, "round trip changed the message"),
    ],
)
def test_a_broken_decoder_is_a_finding_that_replays(decode, encode, problem):
    report = decoder.run(1, CASES, decode=decode, encode=encode)
    assert report.findings, report.line()
    finding = report.findings[0]
    assert problem in finding.problem
    assert f"--seed 1 --case {finding.case}" in finding.describe()
    replayed = decoder.run(1, CASES, only=finding.case, decode=decode, encode=encode)
    assert [f.problem for f in replayed.findings] == [finding.problem]
    assert decoder.run(1, CASES, only=finding.case).findings == []  # the real one is fine


def test_the_cli_replays_one_case_and_exits_by_findings(capsys):
    assert cli.main(["--target", "decoder", "--case", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fuzz decoder seed=1 cases=1 accepted=")
    assert "\ninput: " in out
    with pytest.raises(SystemExit):
        cli.main(["--case", "3"])  # which campaign's case 3?


def _mallory(payload: str | bytes, binary: bool = False) -> SignalingCase:
    return SignalingCase(registered=True, payload=payload, binary=binary)


def test_the_signaling_oracle():
    error = {"type": "error", "code": "bad_json", "message": "not JSON", "ref": None}
    ok = [
        (_mallory("{"), signaling.Exchange([error])),
        (_mallory(b"{}", binary=True), signaling.Exchange([error])),
        (_mallory("x" * (signaling_cases.MAX_SIZE + 1)), signaling.Exchange(closed=(1009, ""))),
        # Not UTF-8 in a text frame: the WebSocket layer's 1007 (docs/signaling-protocol.md §7).
        (_mallory(b"\xff"), signaling.Exchange(closed=(1007, "invalid start byte"))),
    ]
    for case, exchange in ok:
        assert signaling.judge(case, exchange)[1] is None
    bad = [
        (_mallory("{"), signaling.Exchange(closed=(1007, "invalid start byte"))),
        (_mallory("{"), signaling.Exchange([error, error])),
        (_mallory("{"), signaling.Exchange([{**error, "code": "oops"}])),
        (_mallory("{"), signaling.Exchange()),  # silence: neither answered nor relayed
        (_mallory("x" * 10), signaling.Exchange(closed=(1009, ""))),
    ]
    for case, exchange in bad:
        assert signaling.judge(case, exchange)[1] is not None, (case, exchange)
    relay = _mallory('{"type": "bye", "to": "bob", "from": "mallory"}')
    assert signaling.judge(relay, signaling.Exchange()) == (
        "relayed",
        None,
        ("bob", {"type": "bye", "from": "mallory"}),
    )


def _answer(status: int, body: bytes, content_type: str = "application/json") -> Answer:
    return Answer(status, content_type, CIMultiDict(), body)


def test_the_control_oracle():
    post = ControlCase("POST", "/send", b"{}", "application/json")
    assert judge(post, _answer(400, b'{"error": "missing field \'peer\'"}')) is None
    assert judge(post, _answer(200, b'{"sent": true}')) is None
    assert "status 500" in judge(post, _answer(500, b'{"error": "internal error"}'))
    assert "not JSON" in judge(post, _answer(400, b"Bad Request", "text/plain"))
    assert "not" in judge(post, _answer(400, b'{"message": "no error field"}'))
    assert "Allow" in judge(post, _answer(405, b'{"error": "GET /send: 405"}'))
    head = ControlCase("HEAD", "/events/stream", None, None)
    with_body = Answer(200, "application/x-ndjson", CIMultiDict(), b"", b'{"seq": 1}\n')
    assert "HEAD" in judge(head, with_body)


def test_the_documented_sets_are_the_docs():
    docs = REPO / "docs"
    protocol = (docs / "protocol.md").read_text()
    for code in decoder.DECODE_CODES:
        assert f"| `{code}` |" in protocol
    signaling_doc = (docs / "signaling-protocol.md").read_text()
    for code in signaling.ERROR_CODES:
        assert f"| `{code}` |" in signaling_doc
    control_doc = (docs / "control-api.md").read_text()
    documented = {int(s) for s in re.findall(r"^\| (\d{3}) \|", control_doc, re.MULTILINE)}
    assert documented - STATUSES == {500}  # a bug, as the docs say
    for route in control_cases.ROUTES:
        assert f"`{control_cases.ROUTES[route]} {route}" in control_doc
