"""`make demo`: real agents on this machine talk through a real signaling server.

Starts `python -m peerlab.signaling` and N `python -m peerlab.peer` processes on loopback,
connects them in a full mesh through their control APIs, has every pair exchange every message type,
waits for every ack and prints a summary. No containers: `make test` has those.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from peerlab.scenarios.agent_client import AgentClient, AgentError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _start(
    name: str, args: list[str], env: dict[str, str], logs: Path
) -> asyncio.subprocess.Process:
    log = (logs / f"{name}.log").open("wb")
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, env={**os.environ, **env}, stdout=log, stderr=log
    )


async def _until_healthy(client: AgentClient, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (await client.health())["registered"]:
                return
        except AgentError:
            pass
        if time.monotonic() > deadline:
            raise AgentError(f"{client.name} not registered after {timeout:g}s")
        await asyncio.sleep(0.1)


async def _exchange(sender: AgentClient, receiver: AgentClient) -> int:
    """Every message type from sender to receiver; returns how many need an ack."""
    to, conv = receiver.name, "-".join(sorted((sender.name, receiver.name)))
    first = await sender.send(to, "text", conversation=conv, body=f"hi {to}, {sender.name} here")
    extra = await sender.send(to, "text", conversation=conv, body="typo, ignore")
    await sender.send(
        to, "edit", conversation=conv, target=first["id"], body=f"hello {to}, {sender.name} here"
    )
    await sender.send(
        to, "reaction", conversation=conv, target=first["id"], emoji="👋", action="add"
    )
    await sender.send(to, "delete", conversation=conv, target=extra["id"])
    await sender.send(to, "typing", conversation=conv, state="started")
    return 5


async def demo(peers: int) -> int:
    names = [f"peer{i + 1}" for i in range(peers)]
    secret = secrets.token_hex(16)
    logs = Path(tempfile.mkdtemp(prefix="peerlab-demo-"))
    signaling_port = _free_port()
    env = {"PEERLAB_SECRET": secret}
    processes = [
        await _start(
            "signaling",
            ["-m", "peerlab.signaling", "--host", "127.0.0.1", "--port", str(signaling_port)],
            env,
            logs,
        )
    ]
    ports = {name: _free_port() for name in names}
    for name in names:
        processes.append(
            await _start(
                name,
                [
                    "-m",
                    "peerlab.peer",
                    "--id",
                    name,
                    "--control-port",
                    str(ports[name]),
                    "--signaling",
                    f"ws://127.0.0.1:{signaling_port}",
                    "--event-log",
                    str(logs / f"{name}.jsonl"),
                ],
                env,
                logs,
            )
        )
    print(f"started signaling server and {peers} agents (logs in {logs})")
    try:
        async with aiohttp.ClientSession() as session:
            agents = {n: AgentClient(n, f"http://127.0.0.1:{ports[n]}", session) for n in names}
            await asyncio.gather(*(_until_healthy(a) for a in agents.values()))
            started = time.monotonic()
            pairs = list(itertools.combinations(agents.values(), 2))
            links = await asyncio.gather(*(x.connect(y.name) for x, y in pairs))
            print(f"full mesh of {len(pairs)} links up in {time.monotonic() - started:.2f}s")
            counts = {
                (s.name, r.name): await _exchange(s, r)
                for s, r in itertools.permutations(agents.values(), 2)
            }
            rows = []
            for (s, r), count in counts.items():
                acked = await agents[s].wait("acked", count=count, peer=r, timeout=15)
                rtts = sorted(e["t_wall"] * 1000 - e["message"]["timestamp"] for e in acked)
                delivered = await agents[r].events(kind="delivered", peer=s)
                typing = await agents[r].events(
                    kind="received", peer=s, **{"message.type": "typing"}
                )
                rows.append((s, r, len(delivered), len(acked), len(typing), rtts[len(rtts) // 2]))
            mismatched = []
            for x, y in pairs:
                conv = "-".join(sorted((x.name, y.name)))
                if (await x.history(y.name, conv))["entries"] != (await y.history(x.name, conv))[
                    "entries"
                ]:
                    mismatched.append(conv)
            print(
                f"\n{'from':<8}{'to':<8}{'delivered':>10}{'acked':>7}{'typing':>8}"
                f"{'ack p50 ms':>12}"
            )
            for s, r, delivered, acked, typing, p50 in rows:
                print(f"{s:<8}{r:<8}{delivered:>10}{acked:>7}{typing:>8}{p50:>12.1f}")
            pair_types = {
                link["candidate_pair"]["local"]["type"]
                for link in links
                if link.get("candidate_pair")
            }
            print(f"\ncandidate types in use: {', '.join(sorted(pair_types)) or 'unknown'}")
            ok = not mismatched and all(d == a == 5 and t == 1 for _, _, d, a, t, _ in rows)
            print(
                "histories identical on both ends of every link"
                if not mismatched
                else f"histories differ: {mismatched}"
            )
            print("demo OK" if ok else "demo FAILED")
            for agent in agents.values():
                await agent.shutdown()
            return 0 if ok else 1
    except AgentError as exc:
        print(f"demo FAILED: {exc}\nlogs: {logs}", file=sys.stderr)
        return 1
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        await asyncio.gather(*(p.wait() for p in processes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=3)
    sys.exit(asyncio.run(demo(parser.parse_args().peers)))


if __name__ == "__main__":
    main()
