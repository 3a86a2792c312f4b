"""Environment-backed options of both programs: a bad value in the environment is a usage
error naming the variable (exit status 2, no traceback), as a bad flag is. What can only be
found out when the program starts (a path the agent cannot use, an address the server
cannot listen on) is a one-line error naming it too, with exit status 1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from peerlab.peer.__main__ import config_from_args, parse_args
from peerlab.peer.agent import AgentConfig
from peerlab.peer.manager import ManagerConfig
from peerlab.signaling.__main__ import LIMIT_OPTIONS, parse_config
from peerlab.signaling.auth import make_token

REPO = Path(__file__).resolve().parents[1]
PEER_ARGS = ["--id", "alice", "--secret", "s"]
NOT_UTF8 = "\udcff"  # how Python holds the byte 0xff of an environment value
# Values an error must not repeat.
SECRETS = {"PEERLAB_SECRET", "PEER_TOKEN", "TURN_SECRET"}

# Every variable of the agent checked when the arguments are parsed, with values its
# option refuses.
PEER_TYPED = {
    "PEER_ID": ["a:b", "bad id", "x" * 65],
    "PEER_ROOM": ["bad room", "a:b"],
    "SIGNALING_URL": [
        "notaurl",
        "http://127.0.0.1:8765",
        "ws://",
        "ws://host:99999",
        "ws://999.999.1.1",
        "ws://bad host",
    ],
    "PEERLAB_SECRET": [NOT_UTF8],
    "PEER_TOKEN": ["abc", "A" * 64],
    "CONTROL_HOST": ["999.999.1.1", "bad host", "-dash.example", "a..b"],
    "CONTROL_PORT": ["abc", "70000", "-1"],
    "PEERLAB_FILE_OWNER": ["abc", "1000"],
    "STORE_SYNC": ["abc", "0"],
    "RELAY_ONLY": ["abc", "yes please"],
    "RETRANSMIT_AFTER": ["abc", "0", "nan"],
    "OUTBOX_MAX_MESSAGES": ["abc", "0", "1.5"],
    "OUTBOX_MAX_BYTES": ["abc", "-5"],
    "TYPING_WINDOW": ["abc", "-1", "inf"],
    "HEARTBEAT_INTERVAL": ["abc", "0"],
    "HEARTBEAT_TIMEOUT": ["abc", "-2.5"],
    "FAILED_AFTER": ["abc", "nan"],
    "SIGNALING_PING": ["abc", "0"],
    "CONNECT_TIMEOUT": ["abc", "inf"],
}
# Paths, checked when the agent opens them.
PEER_PATHS = {"EVENT_LOG", "STORE"}
SIGNALING_TYPED = {
    "SIGNALING_HOST": ["999.999.1.1", "bad host"],
    "SIGNALING_PORT": ["abc", "65536"],
    "PEERLAB_SECRET": [NOT_UTF8],
    "TURN_SECRET": [NOT_UTF8],
    **{limit.variable: ["abc", "0", "-1"] for limit in LIMIT_OPTIONS},
}
# Comma-separated, read by the program itself: a URL --ice-server refuses, in the list.
SIGNALING_ICE_SERVERS = [
    "garbage",
    "stun:",
    "http://stun.example",
    "STUN:stun.example",
    "stun:[::1]:3478",
    "stun:999.999.1.1",
    "stun:stun.example:0",
    "stun:stun.example:70000",
    "stun:stun.example?transport=udp",
    "turn:turn.example?transport=sctp",
    "stun:stun.example,turn:bad host",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


VARIABLES = {*PEER_TYPED, *PEER_PATHS, *SIGNALING_TYPED, "SIGNALING_ICE_SERVERS"}


def _usage_error(capsys, parse) -> str:
    with pytest.raises(SystemExit) as info:
        parse()
    assert info.value.code == 2
    return capsys.readouterr().err


def _assert_names(err: str, variable: str, value: str) -> None:
    """`err` names the variable, with its value unless that is a secret."""
    if variable in SECRETS:
        assert f"{variable}: " in err
        assert value not in err
    else:
        assert f"{variable}={value!r}: " in err


def test_the_lists_cover_every_variable_in_the_help(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert set(re.findall(r"env\s+([A-Z_]+)", capsys.readouterr().out)) == {
        *PEER_TYPED,
        *PEER_PATHS,
    }
    with pytest.raises(SystemExit):
        parse_config(["--help"])
    assert set(re.findall(r"env\s+([A-Z_]+)", capsys.readouterr().out)) == {
        *SIGNALING_TYPED,
        "SIGNALING_ICE_SERVERS",
    }


@pytest.mark.parametrize(
    ("variable", "value"), [(v, value) for v, values in PEER_TYPED.items() for value in values]
)
def test_a_bad_agent_variable_is_a_usage_error_naming_it(monkeypatch, capsys, variable, value):
    # The required settings come from the environment too: a flag would hide the variable.
    monkeypatch.setenv("PEER_ID", "alice")
    monkeypatch.setenv("PEERLAB_SECRET", "s")
    monkeypatch.setenv(variable, value)
    err = _usage_error(capsys, lambda: parse_args([]))
    assert "error: argument --" in err
    _assert_names(err, variable, value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [(v, value) for v, values in SIGNALING_TYPED.items() for value in values],
)
def test_a_bad_server_variable_is_a_usage_error_naming_it(monkeypatch, capsys, variable, value):
    monkeypatch.setenv("PEERLAB_SECRET", "s")
    monkeypatch.setenv(variable, value)
    err = _usage_error(capsys, lambda: parse_config([]))
    assert "error: argument --" in err
    _assert_names(err, variable, value)


@pytest.mark.parametrize("value", SIGNALING_ICE_SERVERS)
def test_a_bad_ice_server_url_is_a_usage_error_naming_the_variable(monkeypatch, capsys, value):
    monkeypatch.setenv("SIGNALING_ICE_SERVERS", value)
    err = _usage_error(capsys, lambda: parse_config(["--secret", "s"]))
    assert f"error: SIGNALING_ICE_SERVERS={value!r}: " in err
    flag = _usage_error(capsys, lambda: parse_config(["--secret", "s", "--ice-server", value]))
    assert "error: argument --ice-server: " in flag


@pytest.mark.parametrize(
    "flag",
    [
        ["--ping-interval", "-1"],
        ["--ping-timeout", "nan"],
        ["--max-size", "0"],
        ["--turn-ttl", "-5"],
        ["--rate", "0"],
        ["--burst", "abc"],
    ],
)
def test_a_bad_value_of_a_server_flag_without_a_variable_is_a_usage_error(capsys, flag):
    err = _usage_error(capsys, lambda: parse_config(["--secret", "s", *flag]))
    assert f"error: argument {flag[0]}: " in err


def test_good_server_values_are_accepted(monkeypatch):
    monkeypatch.setenv("SIGNALING_ICE_SERVERS", "stun:stun:3478,turn:toxiproxy:13478?transport=tcp")
    monkeypatch.setenv("SIGNALING_HOST", "::")
    monkeypatch.setenv("TURN_SECRET", "t")
    config, _ = parse_config(["--secret", "s", "--ping-interval", "0"])
    assert config.ice_servers == ("stun:stun:3478", "turn:toxiproxy:13478?transport=tcp")
    assert (config.host, config.turn_secret, config.ping_interval) == ("::", "t", None)
    flags = ["--ice-server", "turns:coturn:5349", "--ice-server", "stun:10.0.0.1"]
    config, _ = parse_config(["--secret", "s", "--host", "signaling_1", *flags])
    assert config.ice_servers == ("turns:coturn:5349", "stun:10.0.0.1")  # the variable: ignored
    assert config.host == "signaling_1"  # Docker's resolver serves names with "_"


def test_a_bad_flag_is_reported_without_a_variable(monkeypatch, capsys):
    monkeypatch.setenv("CONTROL_PORT", "8081")
    err = _usage_error(capsys, lambda: parse_args([*PEER_ARGS, "--control-port", "abc"]))
    assert err.endswith("error: argument --control-port: invalid int value: 'abc'\n")


def test_good_values_are_converted_and_a_flag_wins_over_its_variable(monkeypatch):
    monkeypatch.setenv("CONTROL_PORT", "8081")
    monkeypatch.setenv("RELAY_ONLY", "true")
    monkeypatch.setenv("PEERLAB_FILE_OWNER", "")  # empty: unset, as compose writes it
    monkeypatch.setenv("TYPING_WINDOW", "0")
    monkeypatch.setenv("STORE_SYNC", "250")
    monkeypatch.setenv("HEARTBEAT_TIMEOUT", "abc")  # not used: the flag is given
    args = parse_args([*PEER_ARGS, "--heartbeat-timeout", "4"])
    assert (args.control_port, args.relay_only, args.file_owner) == (8081, True, None)
    assert (args.typing_window, args.store_sync, args.heartbeat_timeout) == (0.0, 250.0, 4.0)
    monkeypatch.delenv("HEARTBEAT_TIMEOUT")
    assert parse_args([*PEER_ARGS, "--relay-only"]).relay_only is True
    assert parse_args([*PEER_ARGS, "--relay-only", "0"]).relay_only is False
    monkeypatch.delenv("RELAY_ONLY")
    assert parse_args(PEER_ARGS).relay_only is False


def test_good_identity_and_address_values_are_accepted(monkeypatch):
    monkeypatch.setenv("PEER_ID", "peer-1.a_b")
    monkeypatch.setenv("PEER_ROOM", "Lab_2")
    monkeypatch.setenv("PEER_TOKEN", make_token("s", "Lab_2", "peer-1.a_b"))
    monkeypatch.setenv("SIGNALING_URL", "wss://[::1]:8443/signaling")
    monkeypatch.setenv("CONTROL_HOST", "0.0.0.0")
    args = parse_args([])
    assert (args.id, args.room, args.signaling) == (
        "peer-1.a_b",
        "Lab_2",
        "wss://[::1]:8443/signaling",
    )
    for good in ("::1", "localhost", "peer1", "peerlab_peer1_1", "agent.example."):
        assert parse_args([*PEER_ARGS, "--control-host", good]).control_host == good
    assert parse_args([*PEER_ARGS, "--signaling", "ws://toxiproxy:18765"]).signaling


def test_a_bad_flag_names_the_flag_and_not_a_secret(capsys):
    err = _usage_error(capsys, lambda: parse_args(["--id", "a:b", "--secret", "s"]))
    assert err.endswith("error: argument --id: expected [A-Za-z0-9_.-]{1,64}, not 'a:b'\n")
    err = _usage_error(capsys, lambda: parse_args(["--id", "a", "--token", "0123secret"]))
    assert "error: argument --token: expected 64 lowercase hex digits" in err
    assert "0123secret" not in err


def _run(module: str, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=10,
    )


@pytest.mark.parametrize("module", ["peerlab.peer", "peerlab.signaling"])
def test_help_shows_no_secret_a_variable_holds(module):
    secrets = {"PEERLAB_SECRET": "hunter2-value", "TURN_SECRET": "s3cr3t-value"}
    token = {"PEER_TOKEN": "f" * 64} if module == "peerlab.peer" else {}
    done = _run(module, "--help", **secrets, **token)
    assert done.returncode == 0, done.stderr
    for value in [*secrets.values(), *token.values()]:
        assert value not in done.stdout


def test_the_signaling_server_refuses_a_bad_port_variable():
    done = _run("peerlab.signaling", "--secret", "s", SIGNALING_PORT="abc")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.endswith(
        "error: argument --port: SIGNALING_PORT='abc': invalid int value: 'abc'\n"
    )


def test_the_agent_refuses_a_bad_variable():
    done = _run("peerlab.peer", *PEER_ARGS, RELAY_ONLY="maybe")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "argument --relay-only: RELAY_ONLY='maybe': expected one of 1, true" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PEER_ID", "a:b", "argument --id: PEER_ID='a:b': expected [A-Za-z0-9_.-]{1,64}"),
        ("PEER_ROOM", "bad room", "argument --room: PEER_ROOM='bad room': expected"),
        ("SIGNALING_URL", "notaurl", "argument --signaling: SIGNALING_URL='notaurl': expected a"),
        ("CONTROL_HOST", "999.999.1.1", "argument --control-host: CONTROL_HOST='999.999.1.1'"),
        ("PEERLAB_SECRET", NOT_UTF8, "argument --secret: PEERLAB_SECRET: not UTF-8 text"),
    ],
)
def test_the_agent_refuses_a_variable_the_server_or_the_client_would_refuse(
    variable, value, message
):
    # Before, these ran an agent that re-registered for good (a server's `bad_field`), or
    # exited with status 1, a message naming no variable, or a traceback.
    done = _run("peerlab.peer", **{"PEER_ID": "alice", "PEERLAB_SECRET": "s", variable: value})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert message in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("variable", sorted(PEER_PATHS))
def test_a_path_the_agent_cannot_use_stops_it_naming_the_path(tmp_path, variable):
    (tmp_path / "afile").write_text("")
    path = tmp_path / "afile" / "alice"
    done = _run("peerlab.peer", *PEER_ARGS, "--control-port", "0", **{variable: str(path)})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{path}: its folder cannot be created (File exists: {path.parent})" in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "SIGNALING_HOST",
            "999.999.1.1",
            "argument --host: SIGNALING_HOST='999.999.1.1': expected",
        ),
        ("SIGNALING_ICE_SERVERS", "garbage", "error: SIGNALING_ICE_SERVERS='garbage': expected"),
        ("TURN_SECRET", NOT_UTF8, "argument --turn-secret: TURN_SECRET: not UTF-8 text"),
    ],
)
def test_the_signaling_server_refuses_a_bad_variable(variable, value, message):
    done = _run("peerlab.signaling", "--secret", "s", **{variable: value})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert message in done.stderr


def test_a_signaling_port_in_use_is_a_one_line_error_naming_the_settings():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run(
            "peerlab.signaling",
            "--secret",
            "s",
            SIGNALING_HOST="127.0.0.1",
            SIGNALING_PORT=str(port),
        )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()  # the server's log is JSON lines
    entry = json.loads(line)
    assert (entry["level"], entry["event"], entry["port"]) == ("error", "listen_failed", port)
    assert entry["settings"] == "--host/SIGNALING_HOST, --port/SIGNALING_PORT"
    assert "address already in use" in entry["error"]


def test_the_agents_defaults_are_its_config_dataclasses():
    # One source per default: the command line adds nothing of its own.
    config = config_from_args(parse_args(["--id", "a", "--secret", "s"]))
    assert config.manager == ManagerConfig()
    defaults = AgentConfig("a", config.room, config.signaling_url, config.token)
    assert config == defaults
