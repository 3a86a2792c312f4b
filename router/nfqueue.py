"""The router's shaper service: applies LinkFaults to the traffic it forwards, per direction.

"up" is traffic forwarded LAN -> WAN, "down" WAN -> LAN. Two backends:

- nfqueue (any kernel with NFQUEUE, e.g. these VMs, which have no netem): the packets of a
  direction are queued to this process, a LinkShaper (router/shaper.py) decides when each
  one leaves, and the verdicts are issued at those times from the asyncio loop. NFQUEUE
  cannot clone a packet, so a duplicate is a copy of the raw IP packet sent through a raw
  socket right after the original is accepted.
- netem (kernels that have it, faults netem can express): a netem qdisc on the direction's
  egress interface, its arguments from `netem_args`.

Where the queues sit, and why (each point was seen to matter in a test lab):
- "up" is queued in raw PREROUTING, before conntrack. Queued any later, a new flow's first
  packet waits in the delay line with an unconfirmed conntrack entry, every packet of the
  flow that arrives meanwhile gets an entry of its own, and a symmetric NAT
  (SNAT --random-fully) gives each of them a different port.
- "down" is queued in mangle POSTROUTING, after the filter (a mark set in mangle FORWARD,
  where the input interface is known, selects it). At raw PREROUTING its destination is
  still the router's WAN address, so forwarded and local traffic look alike.
- Copies leave through OUTPUT, past the filter's FORWARD chain; so a copy is only made of a
  packet that the filter let through, in mangle POSTROUTING: a "down" packet there
  directly, an "up" packet marked for duplication when released, by a third queue.
  (Queued in FORWARD instead, a "udp-blocked" router leaked every duplicated packet.)
- An "up" copy matches the original's conntrack entry and is source-NATed like it. A
  "down" copy (already de-NATed) would clash with that entry's reply tuple and be dropped,
  so it carries a mark that a raw OUTPUT rule exempts from conntrack.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import logging
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from peerlab.router.shaper import LinkFaults, LinkShaper, ShaperCounters, Trace, parse_trace

log = logging.getLogger(__name__)

BACKENDS = ("auto", "nfqueue", "netem")
DIRECTIONS = ("up", "down")
QUEUE_NUMBERS = {"up": 1, "down": 2}
DUPLICATE_QUEUE = 3  # where "up" packets marked for duplication are copied
TRACE_DIR = Path(__file__).with_name("traces")

# Firewall marks, in bits nobody else in the router uses.
MARK_MASK = 0x7000_0000
DOWN_MARK = 0x1000_0000  # forwarded WAN -> LAN, set in mangle FORWARD
DUPLICATE_MARK = 0x2000_0000  # an "up" packet released to be copied
UNTRACKED_COPY_MARK = 0x4000_0000  # a "down" copy, kept out of conntrack

# Packets the kernel may hold for us (waiting for a verdict or unread). Each takes a slot
# while it sits in the delay line, so this bounds delay x packet rate (10 s at 1000 pkt/s).
QUEUE_MAX_LEN = 10_000
# The netlink socket's receive buffer: big enough that the kernel queue fills (and drops
# new packets) before the socket overflows, which would strand a packet without a verdict.
SOCKET_BUFFER = 32 * 1024 * 1024
# NetfilterQueue copies at most this much of a packet (its MaxCopySize).
COPY_RANGE = 4016
# Netlink messages handled per event-loop turn, so that a flood cannot starve the timers
# that release delayed packets.
READ_BUDGET = 64


def load_trace(name: str) -> Trace:
    """A trace by name from router/traces/ (".trace" optional) or by absolute path."""
    path = Path(name)
    if not path.is_absolute():
        if path.name != name or name in (".", ".."):
            raise ValueError(
                f"trace: expected the name of a trace in router/traces/ or an absolute path, "
                f"got {name!r}"
            )
        path = TRACE_DIR / (name if name.endswith(".trace") else f"{name}.trace")
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        shipped = ", ".join(sorted(p.stem for p in TRACE_DIR.glob("*.trace")))
        raise ValueError(
            f"trace: no trace {name!r}: expected one of {shipped} "
            "or an absolute path inside the router container"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"trace: cannot read {name!r} ({path}): {error}") from None
    return parse_trace(text, name)


def netem_args(faults: LinkFaults) -> list[str]:
    """The `tc qdisc replace dev IF root ...` arguments that make netem apply `faults`.

    Raises ValueError for what netem cannot express: a trace, and reordering together with
    a delay (netem sends its reordered packets early instead of holding them back)."""
    if faults.trace is not None:
        raise ValueError(
            f"trace: netem cannot replay a trace ({faults.trace.name!r}); "
            "expected the nfqueue backend"
        )
    args = ["netem"]
    if faults.rate_kbit is not None:
        # netem's limit also counts the packets in its delay line; the closest it has.
        args += ["limit", str(faults.queue_packets)]
    if faults.reorder:
        if faults.delay_ms:
            raise ValueError(
                f"reorder: netem cannot hold packets back with delay_ms {faults.delay_ms:g} "
                "(it sends its reordered packets early); expected delay_ms 0 or the nfqueue "
                "backend"
            )
        # No delay: delaying every packet by the gap and sending the others at once
        # (netem's "reorder") holds back exactly the chosen ones.
        args += ["delay", _ms(faults.reorder_gap_ms), "reorder", _percent(1 - faults.reorder)]
    elif faults.delay_ms:
        args += ["delay", _ms(faults.delay_ms)]
        if faults.jitter_ms:
            args.append(_ms(faults.jitter_ms))  # netem's default jitter is uniform, as ours
    if faults.loss:
        args += ["loss", "random", _percent(faults.loss)]
    ge = faults.gilbert_elliott
    if ge is not None:
        args += ["loss", "gemodel"] + [_percent(v) for v in (ge.p, ge.r, ge.loss_bad, ge.loss_good)]
    if faults.duplicate:
        args += ["duplicate", _percent(faults.duplicate)]
    if faults.rate_kbit is not None:
        args += ["rate", f"{faults.rate_kbit:g}kbit"]
    elif faults.jitter_ms:
        # With a rate netem times each packet from the previous one's send time, which keeps
        # the order; without one, jitter reorders. A rate far above any link here costs
        # nothing else.
        args += ["rate", "10gbit"]
    return args


def _ms(value: float) -> str:
    return f"{value:g}ms"


def _percent(probability: float) -> str:
    return f"{probability * 100:g}%"


class ShaperService:
    """Faults per direction on a router with interfaces `lan_if` and `wan_if`."""

    def __init__(self, lan_if: str, wan_if: str, seed: int, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
        self._backend = backend
        self._lan_if, self._wan_if = lan_if, wan_if
        self._egress = {"up": wan_if, "down": lan_if}
        # Each direction draws from its own stream; both are fixed by the router's seed.
        self._seeds = {"up": 2 * seed, "down": 2 * seed + 1}
        self._has_netem = False
        self._faults: dict[str, LinkFaults] = {}
        self._in_use: dict[str, str] = {}  # direction -> backend currently applied
        self._shaped: dict[str, _ShapedQueue] = {}
        self._copiers: dict[str, _DuplicateQueue | _CopySender] = {}  # who makes duplicates
        self._rules: dict[str, list[list[str]]] = {}
        # Counters outlive the shapers and queues they come from: /counters is cumulative.
        self._retired = {d: ShaperCounters() for d in DIRECTIONS}
        self._io = {d: _IoCounters() for d in DIRECTIONS}

    async def start(self) -> None:
        self._has_netem, reason = await _probe_netem()
        if self._backend == "netem" and not self._has_netem:
            raise RuntimeError(
                f"backend: netem was asked for but this kernel has no netem ({reason}); "
                "expected ROUTER_SHAPER=auto or nfqueue"
            )

    def kernel_has_netem(self) -> bool:
        return self._has_netem

    async def set_faults(self, direction: str, faults: dict) -> str:
        """Apply `faults` (LinkFaults JSON) to `direction`; returns the backend used.
        {} clears the direction (and returns the backend that faults would use)."""
        _check_direction(direction)
        link_faults = LinkFaults.from_json(faults, load_trace=load_trace)
        backend = self._choose_backend(link_faults)
        if link_faults == LinkFaults():
            await self.clear_faults(direction)
            return backend
        if self._in_use.get(direction) not in (None, backend):
            await self.clear_faults(direction)
        if backend == "netem":
            await _run(
                "tc", "qdisc", "replace", "dev", self._egress[direction], "root",
                *netem_args(link_faults),
            )  # fmt: skip
            self._in_use[direction] = "netem"
        else:
            await self._apply_nfqueue(direction, link_faults)
        self._faults[direction] = link_faults
        return backend

    async def clear_faults(self, direction: str) -> None:
        """Remove the direction's faults; packets it holds leave at once, in order."""
        _check_direction(direction)
        backend = self._in_use.pop(direction, None)
        self._faults.pop(direction, None)
        if backend == "netem":
            await _run("tc", "qdisc", "del", "dev", self._egress[direction], "root")
        elif backend == "nfqueue":
            # Rules first: no new packet reaches a queue that is being closed.
            for rule in reversed(self._rules.pop(direction, [])):
                await _run("iptables", "-w", "-t", rule[0], "-D", *rule[1:])
            shaped = self._shaped.pop(direction, None)
            if shaped is not None:
                shaped.close()
                self._retired[direction].add(shaped.shaper.counters)
            copier = self._copiers.pop(direction, None)
            if copier is not None:
                copier.close()

    def faults(self) -> dict:
        return {d: self._faults[d].to_json() if d in self._faults else {} for d in DIRECTIONS}

    def counters(self) -> dict:
        """Per direction: the backend in use (None: no faults) and cumulative counters of
        the nfqueue backend (netem keeps its own: `tc -s qdisc show`)."""
        result = {}
        for direction in DIRECTIONS:
            counters = ShaperCounters()
            counters.add(self._retired[direction])
            shaped = self._shaped.get(direction)
            if shaped is not None:
                counters.add(shaped.shaper.counters)
            result[direction] = {
                "backend": self._in_use.get(direction),
                **asdict(counters),
                **asdict(self._io[direction]),
            }
        return result

    async def close(self) -> None:
        for direction in DIRECTIONS:
            await self.clear_faults(direction)

    def _choose_backend(self, faults: LinkFaults) -> str:
        if self._backend == "nfqueue":
            return "nfqueue"
        if self._backend == "netem":
            netem_args(faults)  # raises, naming the field, if netem cannot do it
            return "netem"
        if not self._has_netem:
            return "nfqueue"
        try:
            netem_args(faults)
        except ValueError:
            return "nfqueue"
        return "netem"

    async def _apply_nfqueue(self, direction: str, faults: LinkFaults) -> None:
        shaper = LinkShaper(faults, self._seeds[direction])
        shaped = self._shaped.get(direction)
        if shaped is not None:
            # Packets already in the delay line keep their release times.
            self._retired[direction].add(shaped.shaper.counters)
            shaped.shaper = shaper
            return
        io = self._io[direction]
        self._in_use[direction] = "nfqueue"
        self._rules[direction] = []
        try:
            if direction == "up":
                copier = self._copiers[direction] = _DuplicateQueue(_CopySender(0, io), io)
            else:
                copier = self._copiers[direction] = _CopySender(UNTRACKED_COPY_MARK, io)
            self._shaped[direction] = _ShapedQueue(
                QUEUE_NUMBERS[direction], shaper, io, copier.release
            )
            for rule in self._nfqueue_rules(direction):
                await _run("iptables", "-w", "-t", rule[0], "-A", *rule[1:])
                self._rules[direction].append(rule)
        except (OSError, RuntimeError):
            await self.clear_faults(direction)  # no half-installed direction
            raise

    def _nfqueue_rules(self, direction: str) -> list[list[str]]:
        """(table, chain, rule...) to add; the module docstring says why they sit there."""
        lan, wan = self._lan_if, self._wan_if
        if direction == "up":
            marked = f"{DUPLICATE_MARK:#x}/{MARK_MASK:#x}"
            return [
                ["raw", "PREROUTING", "-i", lan, "-m", "addrtype", "--dst-type", "UNICAST",
                 "-j", "NFQUEUE", "--queue-num", str(QUEUE_NUMBERS["up"]), "--queue-bypass"],
                ["mangle", "POSTROUTING", "-o", wan, "-m", "mark", "--mark", marked,
                 "-j", "NFQUEUE", "--queue-num", str(DUPLICATE_QUEUE), "--queue-bypass"],
            ]  # fmt: skip
        down = f"{DOWN_MARK:#x}/{MARK_MASK:#x}"
        untracked = f"{UNTRACKED_COPY_MARK:#x}/{MARK_MASK:#x}"
        return [
            ["mangle", "FORWARD", "-i", wan, "-o", lan, "-j", "MARK", "--set-xmark", down],
            ["mangle", "POSTROUTING", "-o", lan, "-m", "mark", "--mark", down,
             "-j", "NFQUEUE", "--queue-num", str(QUEUE_NUMBERS["down"]), "--queue-bypass"],
            ["raw", "OUTPUT", "-m", "mark", "--mark", untracked, "-j", "NOTRACK"],
        ]  # fmt: skip


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected 'up' or 'down', got {direction!r}")


@dataclass(slots=True)
class _IoCounters:
    """What went wrong outside the shaper's model: duplicates that could not be sent,
    and netlink overflows (packets the kernel queued but could not tell us about)."""

    copy_errors: int = 0
    netlink_overflows: int = 0


class _BudgetedSocket:
    """The queue's netlink socket as NetfilterQueue.run_socket reads it, except that it
    reports "would block" after `left` messages: run() and run_socket() otherwise loop
    until the socket is empty, which under a flood never happens."""

    def __init__(self, fd: int, io: _IoCounters):
        self._socket = socket.fromfd(fd, socket.AF_NETLINK, socket.SOCK_RAW)
        self._io = io
        self.left = 0

    def recv(self, size: int) -> bytes:
        if self.left <= 0:
            raise BlockingIOError(errno.EAGAIN, "read budget spent")
        self.left -= 1
        try:
            return self._socket.recv(size, socket.MSG_DONTWAIT)
        except OSError as error:
            if error.errno == errno.ENOBUFS:
                # The kernel could not notify us of some packets: they wait for a verdict
                # that will never come, until the queue is unbound.
                self._io.netlink_overflows += 1
            raise

    def close(self) -> None:
        self._socket.close()


class _Queue:
    """A bound netfilter queue, read from the event loop."""

    def __init__(self, number: int, callback: Callable, io: _IoCounters):
        # Imported here so that the netem translation and the tests work where the library
        # (which builds from source against libnetfilter-queue) is not installed.
        from netfilterqueue import NetfilterQueue

        self._loop = asyncio.get_running_loop()
        self._queue = NetfilterQueue()
        self._queue.bind(number, callback, max_len=QUEUE_MAX_LEN, sock_len=SOCKET_BUFFER)
        self._reader = _BudgetedSocket(self._queue.get_fd(), io)
        self._loop.add_reader(self._queue.get_fd(), self.read, READ_BUDGET)

    def read(self, budget: int) -> None:
        """Handle up to `budget` queued packets."""
        self._reader.left = budget
        self._queue.run_socket(self._reader)

    def close(self) -> None:
        self._loop.remove_reader(self._queue.get_fd())
        self._queue.unbind()
        self._reader.close()


class _CopySender:
    """Sends copies of IPv4 packets, as they are, through a raw socket."""

    def __init__(self, mark: int, io: _IoCounters):
        self._io = io
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._socket.setblocking(False)
        if mark:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)

    def release(self, packet, copies: int) -> None:
        """Accept `packet`, then send its copies (the original goes first)."""
        packet.accept()
        for _ in range(copies):
            self.send(packet.get_payload())

    def send(self, payload: bytes) -> None:
        if len(payload) < 20 or len(payload) < int.from_bytes(payload[2:4], "big"):
            self._io.copy_errors += 1  # only a prefix was queued to us: no copy possible
            return
        try:
            self._socket.sendto(payload, (socket.inet_ntoa(payload[16:20]), 0))
        except OSError as error:
            self._io.copy_errors += 1
            log.warning("shaper: sending a duplicate failed: %s", error)

    def close(self) -> None:
        self._socket.close()


class _ShapedQueue:
    """A netfilter queue whose verdicts a LinkShaper times. `release(packet, copies)`
    accepts a packet and sees to its copies."""

    def __init__(
        self,
        number: int,
        shaper: LinkShaper,
        io: _IoCounters,
        release: Callable[[object, int], None],
    ):
        self.shaper = shaper
        self._release_packet = release
        self._loop = asyncio.get_running_loop()
        # Held packets as (release time, arrival number, packet, copies), earliest first,
        # and one timer for the earliest. Per-packet timers would not do: asyncio runs
        # timers due at the same time in no particular order, and the shaper gives equal
        # times to packets whose order it keeps.
        self._held: list[tuple[float, int, object, int]] = []
        self._arrivals = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._passthrough = False
        self._queue = _Queue(number, self._on_packet, io)

    def _on_packet(self, packet) -> None:
        if self._passthrough:
            packet.accept()
            return
        now = self._loop.time()
        size = packet.get_payload_len()
        if size >= COPY_RANGE:  # only a prefix was copied: the IP header has the real size
            size = int.from_bytes(packet.get_payload()[2:4], "big")
        releases = self.shaper.on_packet(now, size)
        if not releases:
            packet.drop()
            return
        # The shaper releases a copy together with its original (router/shaper.py).
        copies = len(releases) - 1
        if copies:
            packet.retain()  # the payload is needed after this callback returns
        heapq.heappush(self._held, (releases[0], next(self._arrivals), packet, copies))
        if releases[0] <= now:
            self._release_due()  # after any held packet due as well, in order
        elif self._timer is None or releases[0] < self._timer.when():
            self._arm()

    def _release_due(self) -> None:
        now = self._loop.time()
        while self._held and self._held[0][0] <= now:
            _when, _, packet, copies = heapq.heappop(self._held)
            self._release_packet(packet, copies)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = (
            self._loop.call_at(self._held[0][0], self._release_due) if self._held else None
        )

    def close(self) -> None:
        """Release every held packet now, in release order, and unbind the queue."""
        self._passthrough = True
        self._queue.read(QUEUE_MAX_LEN)  # packets queued before the rules went away
        if self._timer is not None:
            self._timer.cancel()
        while self._held:
            _when, _, packet, copies = heapq.heappop(self._held)
            self._release_packet(packet, copies)
        self._queue.close()


class _DuplicateQueue:
    """Copies the "up" packets released with DUPLICATE_MARK, after the router's filter let
    them through and before source NAT; the copy then matches the original's conntrack
    entry and is NATed like it."""

    def __init__(self, copies: _CopySender, io: _IoCounters):
        self._copies = copies
        self._queue = _Queue(DUPLICATE_QUEUE, self._on_packet, io)

    def release(self, packet, copies: int) -> None:
        """Accept an "up" packet, marked for this queue if it is to be copied."""
        if not copies:
            packet.accept()
            return
        packet.set_mark((packet.get_mark() & ~MARK_MASK) | DUPLICATE_MARK)
        packet.accept()
        # The kernel queued it here during accept(): pass it on now, before the shaper
        # releases the next packet, which would otherwise overtake it.
        self._queue.read(READ_BUDGET)

    def _on_packet(self, packet) -> None:
        packet.accept()  # first, so that a new flow's conntrack entry exists for the copy
        self._copies.send(packet.get_payload())

    def close(self) -> None:
        self._queue.read(QUEUE_MAX_LEN)
        self._queue.close()
        self._copies.close()


async def _probe_netem() -> tuple[bool, str]:
    """Whether netem works here, tried on a throwaway veth pair; and why not."""
    await _run("ip", "link", "add", "netemprobe0", "type", "veth", "peer", "name", "netemprobe1")
    try:
        await _run("tc", "qdisc", "add", "dev", "netemprobe0", "root", "netem")
    except RuntimeError as error:
        return False, str(error)
    finally:
        await _run("ip", "link", "del", "netemprobe0")
    return True, "tc qdisc add ... netem worked"


async def _run(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(argv)}` failed (exit {process.returncode}): {err.decode().strip()}"
        )
    return out.decode()
