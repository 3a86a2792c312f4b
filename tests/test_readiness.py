"""wait_ready: every probe until all are ready; a stopped container ends the wait at once."""

from __future__ import annotations

import pytest

from peerlab.scenarios.readiness import NotReady, wait_ready


def _probe(answers: list[str | None]):
    async def probe() -> str | None:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if answer == "raise":
            raise ConnectionRefusedError("refused")
        return answer

    return probe


async def _running(name: str) -> str:
    return "running"


async def test_returns_once_every_probe_is_ready():
    probes = {"a": _probe(["raise", "not yet", None]), "b": _probe([None])}
    await wait_ready(probes, _running, timeout=5)


async def test_a_stopped_container_fails_the_wait_with_how_it_ended():
    async def state(name: str) -> str:
        return "running" if name == "slow" else "exited with code 1; its last lines:\nboom"

    probes = {"dead": _probe(["raise"]), "slow": _probe(["not registered"]), "ok": _probe([None])}
    with pytest.raises(NotReady) as failed:
        await wait_ready(probes, state, timeout=60)
    text = str(failed.value)
    assert text.startswith("a service stopped while starting:")
    assert "dead: exited with code 1; its last lines:\nboom" in text
    assert "slow: running, but not registered" in text
    assert "ok" not in text.split(":", 1)[1]


async def test_the_deadline_names_what_is_missing():
    with pytest.raises(
        NotReady, match=r"not ready after 0.3s:\n  a: running, but ConnectionRefusedError: refused"
    ):
        await wait_ready({"a": _probe(["raise"])}, _running, timeout=0.3)
