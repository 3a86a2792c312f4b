"""A start in the middle of a run (a newcomer, a killed peer started again) adds to the
stack and leaves what runs alone, against real Docker (`-m containers`)."""

from __future__ import annotations

import os
import subprocess

import pytest

from peerlab.scenarios.lab import Lab


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.containers(stack_s=8)
async def test_a_start_mid_run_keeps_running_containers_when_their_image_moves(tmp_path):
    """Seen: signaling_outage's newcomer was started while the images were being rebuilt
    (`make images` beside a run). Compose recreated the signaling server and every router
    from the new images, losing their state, and a router's control API refused the
    flapping profile's next cut: a failure no scenario was about."""
    tag = f"peerlab/python:mid-run-test-{os.getpid()}"
    _docker("tag", "peerlab/python:dev", tag)
    try:
        async with Lab.open(
            "mid_run", tmp_path / "mid_run", peers=2, seed=1, env={"PEERLAB_PYTHON_IMAGE": tag}
        ) as lab:
            await lab.stack.compose("stop", "peer2", timeout=60)  # it joins later, as a newcomer
            before = lab.containers.container("signaling").id
            _docker("tag", "peerlab/router:dev", tag)  # a rebuild moved the tag meanwhile
            await lab.start(["peer2"])
            signaling = lab.containers.container("signaling")
            assert (signaling.id, signaling.status) == (before, "running")
            assert (await lab.agents["peer1"].health())["registered"]
            assert (await lab.agents["peer2"].health())["registered"]
    finally:
        _docker("rmi", tag)
