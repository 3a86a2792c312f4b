"""`Stack`: one Compose project of the lab (compose.yaml), driven through the Compose CLI,
and `Containers`: actions on its containers (kill, stop, start, pause, network cuts)
through the Docker SDK.

Each run gets its own project name, so runs never touch each other's containers, and
`down()` removes the project's containers, networks and volumes whatever happened.

Every container, network and volume of a run, helper containers included, carries the
labels `peerlab.run=<Compose project>`, `peerlab.scenario=<scenario>` and
`peerlab.owner=<host>/<pid>` (the process that started it), so `peerlab clean`
(scenarios/cleanup.py) finds what a killed run left. Interruptions (docs/cleanup.md):
SIGTERM is handled like Ctrl-C once a stack is up, `down()` cannot be interrupted, and
an exit hook removes, by label, whatever a run of this process did not get to tear down.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker
from docker.errors import ContainerError, NotFound
from docker.models.containers import Container

from peerlab.scenarios.subnets import claim_prefix
from peerlab.scenarios.topology import Topology, compose_override

# PeerLab's own files (compose.yaml, docker/): the repository root in a checkout, the
# installed `peerlab` package folder otherwise (pyproject.toml ships them as package data).
PEERLAB_ROOT = Path(__file__).resolve().parents[1]
INFRA_SERVICES = ("signaling", "stun", "toxiproxy")
CONTROL_PORT = 8080
TOXIPROXY_PORT = 8474
BUILTIN_PEERS = 3
"""compose.yaml declares peer1..peer3; more are generated per run."""


RUN_LABEL = "peerlab.run"
SCENARIO_LABEL = "peerlab.scenario"
OWNER_LABEL = "peerlab.owner"
PROJECT_LABEL = "com.docker.compose.project"


class StackError(RuntimeError):
    pass


def owner() -> str:
    """This process, as the `peerlab.owner` label names it."""
    return f"{socket.gethostname()}/{os.getpid()}"


def labels_override(
    labels: dict[str, str], services: Sequence[str], networks: Sequence[str]
) -> str:
    """Compose override putting `labels` on these services' containers and on these
    networks (Compose merges them with the other files' labels). Pure."""
    return (
        json.dumps(
            {
                "services": {name: {"labels": labels} for name in services},
                "networks": {name: {"labels": labels} for name in networks},
            },
            indent=2,
        )
        + "\n"
    )


# ---- what this process may leave behind, and the exit hook that removes it ----

_held: dict[str, set[str]] = {}
"""Compose project → what of it may exist on the Docker host ("stack", "host-rules")."""
_labels: dict[str, dict[str, str]] = {}
"""Compose project → its run labels, for the helper containers it starts."""
_hook_installed = False


def hold(project: str, what: str) -> None:
    """Note that `what` of `project` may now exist, until `release`; the first hold also
    installs the SIGTERM handler and the exit hook."""
    _held.setdefault(project, set()).add(what)
    _install_hooks()


def release(project: str, what: str) -> None:
    _held.get(project, set()).discard(what)
    if not _held.get(project):
        _held.pop(project, None)


def _install_hooks() -> None:
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    atexit.register(_remove_leftovers)
    # SIGTERM kills Python on the spot, skipping every cleanup: where nobody handles it
    # (pytest does not; `peerlab run` does), it becomes a Ctrl-C. Signal handlers can
    # only be set from the main thread.
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _sigterm_as_sigint)


def _sigterm_as_sigint(signum: int, frame: Any) -> None:
    handler = signal.getsignal(signal.SIGINT)
    # asyncio.Runner's SIGINT handler cancels the main task, so the lab's teardown runs
    # in the event loop; with SIGINT ignored (a background job), interrupt anyway.
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _remove_leftovers() -> None:
    """Exit hook: remove, by label, what a run of this process did not tear down (its
    teardown was interrupted, or never ran); no signal interrupts it."""
    if not _held:
        return
    from peerlab.scenarios.cleanup import clean  # cleanup builds on this module

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    for project, what in list(_held.items()):
        print(
            f"peerlab: {project} was not torn down ({', '.join(sorted(what))} may remain): "
            "removing what is left",
            file=sys.stderr,
            flush=True,
        )
        clean(run=project, host_rules="host-rules" in what, out=sys.stderr)
        _held.pop(project, None)


def bridge_name(network_attrs: dict) -> str:
    """The Linux bridge of a Docker bridge network (its option, else br-<id[:12]>)."""
    options = network_attrs.get("Options") or {}
    return options.get("com.docker.network.bridge.name") or f"br-{network_attrs['Id'][:12]}"


def peer_names(count: int) -> list[str]:
    return [f"peer{i}" for i in range(1, count + 1)]


def extra_peers_override(count: int) -> str:
    """Compose override adding peer4..peerN, each a copy of peer1 with its own id."""
    lines = ["services:"]
    for name in peer_names(count)[BUILTIN_PEERS:]:
        lines += [
            f"  {name}:",
            f"    extends: {{file: {PEERLAB_ROOT / 'compose.yaml'}, service: peer1}}",
            f"    environment: {{PEER_ID: {name}}}",
        ]
    return "\n".join(lines) + "\n"


class Stack:
    def __init__(
        self,
        project: str,
        run_dir: Path,
        peers: int,
        env: dict[str, str] | None = None,
        *,
        prefix: str,
        topology: Topology,
        seed: int,
    ):
        self.project = project
        self.run_dir = run_dir
        self.peers = peer_names(peers)
        self.prefix = prefix
        self.topology = topology
        self.events_dir = run_dir / "events"
        self.files = [PEERLAB_ROOT / "compose.yaml"]
        if peers > BUILTIN_PEERS:
            override = run_dir / "compose.peers.yaml"
            override.write_text(extra_peers_override(peers))
            self.files.append(override)
        if topology.lans:
            override = run_dir / "compose.network.yaml"
            override.write_text(compose_override(topology, prefix, seed))
            self.files.append(override)
        # The run id is the Compose project: unique to this run and scenario, and what
        # Compose already labels everything with.
        self.labels = {
            RUN_LABEL: project,
            SCENARIO_LABEL: run_dir.name,
            OWNER_LABEL: owner(),
        }
        _labels[project] = self.labels
        labels = run_dir / "compose.labels.yaml"
        labels.write_text(
            labels_override(
                self.labels,
                [*INFRA_SERVICES, *topology.routers, *peer_names(max(peers, BUILTIN_PEERS))],
                ["lab", *(lan.network for lan in topology.lans)],
            )
        )
        self.files.append(labels)
        self.env = {
            **os.environ,
            "PEERLAB_EVENTS_DIR": str(self.events_dir),
            "PEERLAB_FILE_OWNER": f"{os.getuid()}:{os.getgid()}",
            "PEERLAB_NET": prefix,
            **(env or {}),
        }

    async def up(self, services: Sequence[str], timeout: float = 120.0) -> None:
        """Create and start services, not waiting for them to be ready: the lab asks each
        one itself (scenarios/readiness.py), every 0.1 s rather than at Docker's health
        check interval, which on this engine also delays the first check. A service that
        exists already is only started, never recreated: a run keeps the containers (and
        their state) it began with even if an image was rebuilt meanwhile."""
        self.events_dir.mkdir(parents=True, exist_ok=True)
        hold(self.project, "stack")
        await self.compose(
            "up",
            "--detach",
            "--no-build",
            "--no-recreate",
            "--pull",
            "never",
            *services,
            timeout=timeout,
        )

    async def down(self) -> None:
        """Remove the project's containers, networks and volumes. Not interruptible: a
        second Ctrl-C or SIGTERM, or the event loop cancelling every task as it closes,
        only makes this return (CancelledError) once `docker compose down` has ended."""
        done = asyncio.get_running_loop().run_in_executor(None, self._down)
        cancelled = False
        while True:
            try:
                await asyncio.shield(done)
                break
            except asyncio.CancelledError:
                if done.cancelled():
                    raise
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    def _down(self) -> None:
        # In a thread, so that cancellation cannot stop it; its own session, so that a
        # signal sent to our process group (Ctrl-C, a CI runner's SIGTERM) cannot either.
        # Everything is stopped at once first: `compose down` stops in dependency order,
        # one stage after another (agents, then routers, then Toxiproxy, ...).
        self._stop_all()
        args = ["down", "--volumes", "--remove-orphans", "--timeout", "5"]
        try:
            result = subprocess.run(
                self._command(args),
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=120,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise StackError("`docker compose down` took over 120s") from None
        if result.returncode != 0:
            raise StackError(
                f"`docker compose down` failed ({result.returncode}):\n"
                f"{result.stdout.decode(errors='replace')[-3000:]}"
            )
        release(self.project, "stack")

    def _stop_all(self) -> None:
        """SIGTERM to every running container of the project together (`docker stop`
        stops its arguments in parallel); what fails here, `compose down` does again."""
        label = f"label=com.docker.compose.project={self.project}"
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            running = subprocess.run(
                ["docker", "ps", "--quiet", "--filter", label],
                capture_output=True,
                timeout=30,
                start_new_session=True,
            ).stdout.split()
            if running:
                subprocess.run(
                    ["docker", "stop", "--time", "5", *map(bytes.decode, running)],
                    capture_output=True,
                    timeout=60,
                    start_new_session=True,
                )

    def _command(self, args: Sequence[str]) -> list[str]:
        command = [
            "docker",
            "compose",
            "--project-name",
            self.project,
            "--project-directory",
            str(PEERLAB_ROOT),
        ]
        for file in self.files:
            command += ["--file", str(file)]
        return [*command, *args]

    async def compose(self, *args: str, timeout: float, check: bool = True) -> str:
        # Its own session: on Ctrl-C or a group SIGTERM, we stop it (below), not the signal.
        process = await asyncio.create_subprocess_exec(
            *self._command(args),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(timeout):
                out, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise StackError(f"`docker compose {' '.join(args)}` took over {timeout:g}s") from None
        except BaseException:
            # Interrupted: stop the command (Compose cancels what it was doing) before the
            # teardown starts, or `up` would go on creating containers behind its back.
            process.terminate()
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
            raise
        text = out.decode(errors="replace")
        if check and process.returncode != 0:
            raise StackError(
                f"`docker compose {' '.join(args)}` failed ({process.returncode}):\n{text[-3000:]}"
            )
        return text


class Containers:
    """Docker SDK actions on one project's containers, addressed by service name."""

    def __init__(self, project: str):
        self.project = project
        # The engine may be older than the SDK's default API version: negotiate.
        self._client = docker.from_env(version="auto", timeout=60)

    def container(self, service: str) -> Container:
        found = self._client.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.project}",
                    f"com.docker.compose.service={service}",
                ]
            },
        )
        if not found:
            raise StackError(f"no container for service {service!r} in project {self.project}")
        return found[0]

    def network(self, name: str = "lab") -> str:
        return f"{self.project}_{name}"

    async def kill(self, service: str, signal: str = "SIGKILL") -> None:
        await asyncio.to_thread(self.container(service).kill, signal)

    async def stop(self, service: str, timeout: int = 5) -> None:
        await asyncio.to_thread(self.container(service).stop, timeout=timeout)

    async def start(self, service: str) -> None:
        await asyncio.to_thread(self.container(service).start)

    async def restart(self, service: str, timeout: int = 5) -> None:
        await asyncio.to_thread(self.container(service).restart, timeout=timeout)

    async def pause(self, service: str) -> None:
        await asyncio.to_thread(self.container(service).pause)

    async def unpause(self, service: str) -> None:
        await asyncio.to_thread(self.container(service).unpause)

    async def disconnect(self, service: str, network: str = "lab") -> None:
        net = self._client.networks.get(self.network(network))
        await asyncio.to_thread(net.disconnect, self.container(service), force=True)

    async def connect(
        self, service: str, network: str = "lab", *, ipv4_address: str | None = None
    ) -> None:
        net = self._client.networks.get(self.network(network))
        await asyncio.to_thread(
            net.connect, self.container(service), aliases=[service], ipv4_address=ipv4_address
        )

    async def exec(self, service: str, command: list[str]) -> str:
        """Run a command in a service's container; its output, or StackError if it failed."""

        def run() -> tuple[int, bytes]:
            result = self.container(service).exec_run(command)
            return result.exit_code, result.output

        code, output = await asyncio.to_thread(run)
        text = output.decode(errors="replace")
        if code != 0:
            raise StackError(f"{service}: `{' '.join(command)}` failed ({code}): {text[-500:]}")
        return text

    async def published(self, service: str, container_port: int) -> str:
        """host:port where a service's TCP port is published (always on 127.0.0.1). Read
        from the engine, not `docker compose port`: one API call instead of a process."""
        container = await asyncio.to_thread(self.container, service)
        bindings = (container.attrs["NetworkSettings"].get("Ports") or {}).get(
            f"{container_port}/tcp"
        )
        if not bindings:
            raise StackError(f"{service}: port {container_port} is not published (yet)")
        return f"127.0.0.1:{bindings[0]['HostPort']}"

    async def logs(self, service: str) -> str:
        """The service container's whole log, stdout and stderr, each line timestamped."""
        try:
            container = await asyncio.to_thread(self.container, service)
            return (await asyncio.to_thread(container.logs, timestamps=True)).decode(
                errors="replace"
            )
        except (StackError, docker.errors.APIError) as exc:
            return f"(no log: {exc})\n"

    async def state(self, service: str) -> str:
        """What the engine says of the service's container: "running", or how it ended
        ("exited with code 1"), with its last log lines when it is not running."""
        container = await asyncio.to_thread(self.container, service)
        state = container.attrs["State"]
        if state.get("Running"):
            return "running"
        tail = (await asyncio.to_thread(container.logs, tail=15)).decode(errors="replace")
        return f"{state.get('Status')} with code {state.get('ExitCode')}; its last lines:\n{tail}"

    async def address(self, service: str, network: str = "lab") -> str:
        """The service container's IPv4 address on one of the project's networks."""
        container = await asyncio.to_thread(self.container, service)
        networks = container.attrs["NetworkSettings"]["Networks"]
        try:
            return networks[self.network(network)]["IPAddress"]
        except KeyError:
            raise StackError(f"{service} is not on network {network!r}") from None

    async def run_helper(
        self,
        name: str,
        image: str,
        command: list[str],
        *,
        timeout: float,
        check: bool = True,
        **options: Any,
    ) -> str:
        """Run a short-lived container for the project (labelled with it and its run, so
        teardown's leftover check and `peerlab clean` see it; removed when it exits, or
        killed after `timeout`); its output. A non-zero exit raises StackError, or with
        `check=False` returns what it printed on stderr. `options` go to the Docker SDK's
        run."""
        name = f"{self.project}-{name}"

        def run() -> bytes:
            try:
                return self._client.containers.run(
                    image,
                    command,
                    name=name,
                    labels={
                        PROJECT_LABEL: self.project,
                        **_labels.get(self.project, {RUN_LABEL: self.project}),
                    },
                    remove=True,
                    stdout=True,
                    stderr=True,
                    **options,
                )
            except ContainerError as exc:
                if check:
                    raise StackError(
                        f"helper container {name} `{' '.join(command)}` exited "
                        f"{exc.exit_status}: {(exc.stderr or b'').decode(errors='replace')[-500:]}"
                    ) from None
                return exc.stderr or b""

        try:
            output = await asyncio.wait_for(asyncio.to_thread(run), timeout)
        except TimeoutError:
            with contextlib.suppress(NotFound):
                await asyncio.to_thread(
                    lambda: self._client.containers.get(name).remove(force=True)
                )
            raise StackError(f"helper container {name} ran over {timeout:g}s") from None
        return output.decode(errors="replace")

    async def bridge(self, network: str) -> str:
        """The Linux bridge of one of the project's networks (its option, or br-<id>)."""
        net = await asyncio.to_thread(self._client.networks.get, self.network(network))
        return bridge_name(net.attrs)

    def claim_prefix(self, rng: random.Random) -> str:
        """A free "10.X" prefix for the run's networks (scenarios/subnets.py)."""
        return claim_prefix(self._client, rng)

    def leftovers(self) -> list[str]:
        """Containers, networks and volumes of this project still present (should be none)."""
        label = f"com.docker.compose.project={self.project}"
        return (
            [
                f"container {c.name}"
                for c in self._client.containers.list(all=True, filters={"label": label})
            ]
            + [f"network {n.name}" for n in self._client.networks.list(filters={"label": label})]
            + [f"volume {v.name}" for v in self._client.volumes.list(filters={"label": label})]
        )

    def close(self) -> None:
        self._client.close()
