"""Environment-backed options of both programs: a bad value in the environment is a usage
error naming the variable (exit status 2, no traceback), as a bad flag is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from peerlab.peer.__main__ import config_from_args, parse_args
from peerlab.peer.agent import AgentConfig
from peerlab.peer.manager import ManagerConfig
from peerlab.signaling.__main__ import LIMIT_OPTIONS, parse_config

REPO = Path(__file__).resolve().parents[1]
PEER_ARGS = ["--id", "alice", "--secret", "s"]

# Every typed variable of the agent, with values its option refuses.
PEER_TYPED = {
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
PEER_STRINGS = {
    "PEER_ID",
    "PEER_ROOM",
    "SIGNALING_URL",
    "PEERLAB_SECRET",
    "PEER_TOKEN",
    "CONTROL_HOST",
    "EVENT_LOG",
    "STORE",
}
SIGNALING_TYPED = {
    "SIGNALING_PORT": ["abc", "65536"],
    **{limit.variable: ["abc", "0", "-1"] for limit in LIMIT_OPTIONS},
}
SIGNALING_STRINGS = {"SIGNALING_HOST", "PEERLAB_SECRET", "TURN_SECRET", "SIGNALING_ICE_SERVERS"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for variable in {*PEER_TYPED, *PEER_STRINGS, *SIGNALING_TYPED, *SIGNALING_STRINGS}:
        monkeypatch.delenv(variable, raising=False)


def _usage_error(capsys, parse) -> str:
    with pytest.raises(SystemExit) as info:
        parse()
    assert info.value.code == 2
    return capsys.readouterr().err


def test_the_lists_cover_every_variable_in_the_help(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert set(re.findall(r"env\s+([A-Z_]+)", capsys.readouterr().out)) == {
        *PEER_TYPED,
        *PEER_STRINGS,
    }
    with pytest.raises(SystemExit):
        parse_config(["--help"])
    assert set(re.findall(r"env\s+([A-Z_]+)", capsys.readouterr().out)) == {
        *SIGNALING_TYPED,
        *SIGNALING_STRINGS,
    }


@pytest.mark.parametrize(
    ("variable", "value"), [(v, value) for v, values in PEER_TYPED.items() for value in values]
)
def test_a_bad_agent_variable_is_a_usage_error_naming_it(monkeypatch, capsys, variable, value):
    monkeypatch.setenv(variable, value)
    err = _usage_error(capsys, lambda: parse_args(PEER_ARGS))
    assert "error: argument --" in err
    assert f"{variable}={value!r}: " in err


@pytest.mark.parametrize(
    ("variable", "value"),
    [(v, value) for v, values in SIGNALING_TYPED.items() for value in values],
)
def test_a_bad_server_variable_is_a_usage_error_naming_it(monkeypatch, capsys, variable, value):
    monkeypatch.setenv("PEERLAB_SECRET", "s")
    monkeypatch.setenv(variable, value)
    err = _usage_error(capsys, lambda: parse_config([]))
    assert "error: argument --" in err
    assert f"{variable}={value!r}: " in err


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


def _run(module: str, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {*PEER_TYPED, *SIGNALING_TYPED}}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=10,
    )


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


def test_the_agents_defaults_are_its_config_dataclasses():
    # One source per default: the command line adds nothing of its own.
    config = config_from_args(parse_args(["--id", "a", "--secret", "s"]))
    assert config.manager == ManagerConfig()
    defaults = AgentConfig("a", config.room, config.signaling_url, config.token)
    assert config == defaults
