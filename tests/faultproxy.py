"""A loopback TCP proxy that puts network faults between Redis clients and one Redis server.

What it owns: a listening socket on 127.0.0.1 (a free port, ``proxy.port``), every connection accepted
on it together with the matching upstream connection to the server it was given (loopback only; any
other address is refused), one event-loop thread that moves the bytes (``selectors``, non-blocking
sockets) and, while ``run_schedule`` runs, one schedule thread that picks faults at random. ``stop()``
closes all of it and joins both threads with a deadline. Stdlib only.

A *link* is one accepted client connection plus its upstream connection, numbered 1, 2, 3... in the
order accepted. Fault kinds, each applied to one link:

- ``pass``: nothing happens; recorded anyway so a schedule's sequence of kinds stays complete.
- ``drop_reply``: the link is armed; the next bytes the server sends on it are discarded and the link
  is closed at once (FIN to the client, upstream closed). The command ran on the server but its reply
  never reaches the client: the "outcome unknown" case. The link is never left open after dropping
  bytes, as the client would then read the next reply as the answer to the wrong command.
- ``black_hole(d)``: nothing moves in either direction on the link for ``d`` seconds (bytes wait
  unread in the kernel buffers), so the client times out; then the link is reset. Whatever the client
  does, only a new connection works again.
- ``reset``: the client socket is closed with an RST (SO_LINGER on, timeout 0), the upstream closed.

And one global mode: ``partition(d)`` (or ``set_mode("blackhole")``) black-holes every current link
and every link accepted while it lasts; ``heal()`` (or ``set_mode("pass")``, or the end of ``d``)
resets every link that lived through it, and later links pass normally.

Every fault applied is recorded in ``proxy.events`` as ``(time, kind, connection number)`` (time in
seconds since start; connection 0 for the global mode) and counted in ``proxy.counts``. The schedule
draws its kinds from ``random.Random`` seeded with ``proxy.seed`` (chosen from ``os.urandom`` when not
given, and printed at start), so a failing run can be replayed; ``proxy.plan(n)`` is the sequence of
kinds any schedule run with that seed applies, whatever the timing.

Note for redis-py clients: the pool checks an idle connection before handing it out and silently
reconnects if it was closed, so a fault on an *idle* connection is usually invisible to the caller;
only a fault hitting a command in flight surfaces as ConnectionError/TimeoutError.
"""

from __future__ import annotations

import ipaddress
import math
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, NamedTuple, TypeVar

T = TypeVar("T")

KINDS = ("pass", "drop_reply", "black_hole", "reset")
DEFAULT_SCHEDULE_KINDS = ("drop_reply", "reset", "black_hole")

#: one recv; also the point past which a direction stops reading until its peer drains (backpressure)
CHUNK = 65536
BUFFER_LIMIT = 1 << 20
#: the loop wakes at least this often, so a stop request or a due deadline is never missed for long
TICK_S = 0.1
CONNECT_TIMEOUT_S = 1.0
CALL_TIMEOUT_S = 5.0
_WAKE = "wake"


class FaultEvent(NamedTuple):
    t: float
    kind: str
    conn: int


@dataclass(eq=False)
class _Link:
    number: int
    client: socket.socket
    upstream: socket.socket
    #: bytes waiting to be written to each side (keyed by side name)
    out: dict[str, bytearray] = field(default_factory=lambda: {"client": bytearray(), "upstream": bytearray()})
    drop_next_reply: bool = False
    #: monotonic time at which a black hole ends (math.inf: held until the partition heals)
    hole_until: float | None = None
    closed: bool = False

    def sock(self, side: str) -> socket.socket:
        return self.client if side == "client" else self.upstream

    @property
    def healthy(self) -> bool:
        return not (self.closed or self.drop_next_reply or self.hole_until is not None)


def _other(side: str) -> str:
    return "upstream" if side == "client" else "client"


def _loopback_address(host: str, port: int) -> tuple[str, int]:
    """Resolve ``host`` and refuse anything but loopback: the proxy never talks to another machine."""
    family, _, _, _, address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0]
    ip = str(address[0])
    if family != socket.AF_INET or not ipaddress.ip_address(ip).is_loopback:
        raise ValueError(f"upstream {host}:{port} is not a loopback address ({ip})")
    return ip, port


def _rst_close(sock: socket.socket) -> None:
    # Linger on with a zero timeout makes close() send an RST and drop unsent data, instead of a FIN.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy:
    """A fault-injecting proxy from ``127.0.0.1:<port>`` to one loopback Redis server."""

    def __init__(self, upstream_host: str, upstream_port: int, *, seed: int | None = None) -> None:
        self.upstream = _loopback_address(upstream_host, upstream_port)
        self.seed: int = int.from_bytes(os.urandom(8), "big") if seed is None else seed
        # Connections are picked by their own stream, so the kinds a schedule applies (``plan``) do
        # not depend on how many connections happened to be open at each tick.
        self._kind_rng = random.Random(f"{self.seed}/kinds")
        self._conn_rng = random.Random(f"{self.seed}/conns")
        self._events: list[FaultEvent] = []
        self._counts: Counter[str] = Counter()
        self._record_lock = threading.Lock()
        self._links: dict[int, _Link] = {}
        self._accepted = 0
        self._partition_until: float | None = None
        self._calls: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._calls_lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self._loop: threading.Thread | None = None
        self._schedule: threading.Thread | None = None
        self._schedule_stop = threading.Event()
        self._t0 = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        if self._loop is not None:
            raise RuntimeError("FaultProxy already started")
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self._port = int(self._listener.getsockname()[1])  # kept: the number stays readable after stop()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._t0 = time.monotonic()
        self._loop = threading.Thread(target=self._run, name=f"faultproxy-{self.port}", daemon=True)
        self._loop.start()
        # Printed so pytest shows it with a failing test's output: rerun with FaultProxy(..., seed=...).
        print(f"FaultProxy {self.url} -> {self.upstream[0]}:{self.upstream[1]} seed={self.seed}", file=sys.stderr)
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the schedule, close every socket, join the threads; returns within about ``timeout``."""
        deadline = time.monotonic() + timeout
        self.stop_schedule(timeout=timeout / 2)
        self._stopping.set()
        self._wake()
        if self._loop is not None and self._loop is not threading.current_thread():
            self._loop.join(max(0.1, deadline - time.monotonic()))
        if self._loop is None or not self._loop.is_alive():
            self._close_all()  # idempotent; also covers a proxy that was never started

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxy not started")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def alive_threads(self) -> list[threading.Thread]:
        return [t for t in (self._loop, self._schedule) if t is not None and t.is_alive()]

    # -- observation ---------------------------------------------------------------------------

    @property
    def events(self) -> list[FaultEvent]:
        with self._record_lock:
            return list(self._events)

    @property
    def counts(self) -> Counter[str]:
        with self._record_lock:
            return Counter(self._counts)

    @property
    def accepted(self) -> int:
        """How many client connections were accepted so far (the last connection number)."""
        return self._accepted

    def connections(self) -> list[int]:
        """Numbers of the links currently open (faulted or not)."""
        return self._call(lambda: sorted(self._links))

    @property
    def mode(self) -> Literal["blackhole", "pass"]:
        return "pass" if self._partition_until is None else "blackhole"

    def plan(self, n: int, kinds: Sequence[str] = DEFAULT_SCHEDULE_KINDS) -> list[str]:
        """The first ``n`` kinds every ``run_schedule(kinds=kinds)`` with this seed applies, in order."""
        rng = random.Random(f"{self.seed}/kinds")
        return [rng.choice(kinds) for _ in range(n)]

    # -- faults on one connection (conn=None: the most recently accepted open link) ------------

    def apply(self, kind: str, conn: int | None = None, *, black_hole_s: float = 0.3) -> int:
        """Apply fault ``kind`` to link ``conn``; returns the link's number once the fault is in place."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {KINDS}")
        return self._call(lambda: self._apply(kind, self._pick(conn), black_hole_s))

    def drop_reply(self, conn: int | None = None) -> int:
        return self.apply("drop_reply", conn)

    def black_hole(self, duration_s: float, conn: int | None = None) -> int:
        return self.apply("black_hole", conn, black_hole_s=duration_s)

    def reset(self, conn: int | None = None) -> int:
        return self.apply("reset", conn)

    # -- global mode ---------------------------------------------------------------------------

    def partition(self, duration_s: float | None = None) -> None:
        """Black-hole every link, current and new, until ``heal()`` or for ``duration_s``."""
        until = math.inf if duration_s is None else time.monotonic() + duration_s
        self._call(lambda: self._partition(until))

    def heal(self) -> None:
        self._call(self._heal)

    def set_mode(self, mode: Literal["blackhole", "pass"]) -> None:
        if mode == "blackhole":
            self.partition()
        elif mode == "pass":
            self.heal()
        else:
            raise ValueError(f"unknown mode {mode!r}")

    # -- random schedule -----------------------------------------------------------------------

    def run_schedule(
        self,
        interval_s: float = 0.15,
        kinds: Sequence[str] = DEFAULT_SCHEDULE_KINDS,
        *,
        black_hole_s: float = 0.3,
        duration_s: float | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        """Every ``interval_s``, apply a fault drawn from ``kinds`` to a random healthy link.

        Runs in a daemon thread until ``stop_schedule()``, ``stop()``, ``stop_event`` or ``duration_s``.
        A tick with no healthy link (open, not armed, not black-holed) applies nothing and draws nothing.
        """
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds:
            raise ValueError(f"bad schedule kinds {kinds!r}")
        if self._schedule is not None and self._schedule.is_alive():
            raise RuntimeError("a schedule is already running")
        self._kind_rng = random.Random(f"{self.seed}/kinds")  # each run replays ``plan`` from its start
        self._schedule_stop = threading.Event()
        deadline = math.inf if duration_s is None else time.monotonic() + duration_s
        args = (interval_s, tuple(kinds), black_hole_s, deadline, stop_event, self._schedule_stop)
        self._schedule = threading.Thread(target=self._schedule_loop, args=args, daemon=True,
                                          name=f"faultproxy-{self.port}-schedule")
        self._schedule.start()

    def stop_schedule(self, timeout: float = 2.0) -> None:
        self._schedule_stop.set()
        if self._schedule is not None and self._schedule is not threading.current_thread():
            self._schedule.join(timeout)

    def _schedule_loop(self, interval_s: float, kinds: tuple[str, ...], black_hole_s: float, deadline: float,
                       external: threading.Event | None, stop: threading.Event) -> None:
        # stop.wait is the schedule's pace (and its prompt exit), not a way to synchronise with anything.
        while not stop.wait(interval_s):
            if self._stopping.is_set() or time.monotonic() >= deadline or (external is not None and external.is_set()):
                return
            try:
                self._call(lambda: self._scheduled_fault(kinds, black_hole_s))
            except (RuntimeError, TimeoutError):
                return  # the proxy stopped under us

    def _scheduled_fault(self, kinds: tuple[str, ...], black_hole_s: float) -> None:
        candidates = sorted(n for n, link in self._links.items() if link.healthy)
        if not candidates:
            return
        kind = self._kind_rng.choice(kinds)
        self._apply(kind, self._links[self._conn_rng.choice(candidates)], black_hole_s)

    # -- calls into the loop thread ------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread and wait for it: all socket and link state is touched only there."""
        if self._loop is None or self._stopping.is_set():
            raise RuntimeError("FaultProxy is not running")
        if threading.current_thread() is self._loop:
            return fn()
        future: Future[Any] = Future()
        with self._calls_lock:
            self._calls.append((fn, future))
        self._wake()
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            try:
                result: T = future.result(timeout=TICK_S)
                return result
            except TimeoutError:
                # A call queued just as the loop ended would otherwise wait for an answer that never comes.
                if not self._loop.is_alive():
                    raise RuntimeError("FaultProxy stopped") from None
                if time.monotonic() > deadline:
                    raise

    def _wake(self) -> None:
        try:
            if self._wake_w is not None:
                self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already full of wake-ups, or closed: either way the loop needs no more

    def _run_calls(self) -> None:
        with self._calls_lock:
            calls, self._calls = self._calls, []
        for fn, future in calls:
            try:
                future.set_result(fn())
            except Exception as e:  # handed to the caller, which re-raises it in its own thread
                future.set_exception(e)

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._sel is not None
        try:
            while not self._stopping.is_set():
                for key, mask in self._sel.select(self._next_timeout()):
                    self._dispatch(key, mask)
                self._run_calls()
                self._expire(time.monotonic())
        finally:
            self._close_all()

    def _next_timeout(self) -> float:
        deadlines = [link.hole_until for link in self._links.values() if link.hole_until is not None]
        if self._partition_until is not None:
            deadlines.append(self._partition_until)
        soonest = min(deadlines, default=math.inf) - time.monotonic()
        return max(0.0, min(TICK_S, soonest))

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data is None:
            self._accept()
        elif key.data == _WAKE:
            self._drain_wake()
        else:
            link, side = key.data
            if not link.closed and mask & selectors.EVENT_WRITE:
                self._flush(link, side)
            if not link.closed and mask & selectors.EVENT_READ:
                self._pump(link, side)

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(CHUNK):
                pass
        except (BlockingIOError, OSError):
            pass

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, OSError):
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT_S)
            except OSError:
                _rst_close(client)  # the server is down: the client sees what it would see without us
                continue
            client.setblocking(False)
            upstream.setblocking(False)
            self._accepted += 1
            link = _Link(self._accepted, client, upstream)
            self._links[link.number] = link
            if self._partition_until is not None:
                link.hole_until = math.inf
            self._update(link)

    def _pump(self, link: _Link, side: str) -> None:
        """Read what ``side`` sent and pass it on (or drop it, for an armed drop_reply)."""
        try:
            data = link.sock(side).recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._close(link, rst=True)
            return
        if not data:
            # A peer hung up: pass on what is already buffered for the other side, best effort, then close.
            self._flush(link, _other(side))
            self._close(link)
        elif side == "upstream" and link.drop_next_reply:
            self._close(link)  # the reply is discarded with the link: nothing after it could be trusted
        else:
            link.out[_other(side)] += data
            self._flush(link, _other(side))

    def _flush(self, link: _Link, side: str) -> None:
        buf = link.out[side]
        try:
            while buf:
                sent = link.sock(side).send(buf)
                del buf[:sent]
        except BlockingIOError:
            pass
        except OSError:
            self._close(link, rst=True)
            return
        self._update(link)

    def _update(self, link: _Link) -> None:
        """Register each socket for what it can do now: nothing while black-holed, else read unless its
        peer's buffer is full, and write while its own buffer has bytes."""
        for side in ("client", "upstream"):
            events = 0
            if link.hole_until is None:
                if len(link.out[_other(side)]) < BUFFER_LIMIT:
                    events |= selectors.EVENT_READ
                if link.out[side]:
                    events |= selectors.EVENT_WRITE
            self._register(link.sock(side), events, (link, side))

    def _register(self, sock: socket.socket, events: int, data: object) -> None:
        assert self._sel is not None
        registered = sock in self._sel.get_map()
        if events and registered:
            self._sel.modify(sock, events, data)
        elif events:
            self._sel.register(sock, events, data)
        elif registered:
            self._sel.unregister(sock)

    def _close(self, link: _Link, *, rst: bool = False) -> None:
        if link.closed:
            return
        link.closed = True
        self._links.pop(link.number, None)
        for sock in (link.client, link.upstream):
            if self._sel is not None and sock in self._sel.get_map():
                self._sel.unregister(sock)
        if rst:
            _rst_close(link.client)
        else:
            link.client.close()
        link.upstream.close()

    def _expire(self, now: float) -> None:
        if self._partition_until is not None and self._partition_until <= now:
            self._heal()
        for link in [link for link in self._links.values() if (link.hole_until or math.inf) <= now]:
            self._close(link, rst=True)

    def _close_all(self) -> None:
        for link in list(self._links.values()):
            self._close(link, rst=True)
        for fn_future in self._take_calls():
            fn_future.set_exception(RuntimeError("FaultProxy stopped"))
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self._sel is not None:
            self._sel.close()

    def _take_calls(self) -> Iterable[Future[Any]]:
        with self._calls_lock:
            calls, self._calls = self._calls, []
        return [future for _, future in calls if not future.done()]

    # -- applying faults (loop thread only) ----------------------------------------------------

    def _pick(self, conn: int | None) -> _Link:
        if conn is None:
            if not self._links:
                raise LookupError("no open connection through the proxy")
            return self._links[max(self._links)]
        if conn not in self._links:
            raise LookupError(f"connection {conn} is not open (open: {sorted(self._links)})")
        return self._links[conn]

    def _apply(self, kind: str, link: _Link, black_hole_s: float) -> int:
        if kind == "drop_reply":
            link.drop_next_reply = True
        elif kind == "black_hole":
            # Keep the later deadline: a partition's hold (math.inf) is not shortened by a shorter hole.
            link.hole_until = max(link.hole_until or 0.0, time.monotonic() + black_hole_s)
            self._update(link)
        elif kind == "reset":
            self._close(link, rst=True)
        self._record(kind, link.number)
        return link.number

    def _partition(self, until: float) -> None:
        self._partition_until = until
        for link in self._links.values():
            link.hole_until = math.inf
            self._update(link)
        self._record("partition", 0)

    def _heal(self) -> None:
        if self._partition_until is None:
            return
        self._partition_until = None
        # Bytes held during the partition were never delivered; resetting is the honest end of it.
        for link in [link for link in self._links.values() if link.hole_until == math.inf]:
            self._close(link, rst=True)
        self._record("heal", 0)

    def _record(self, kind: str, conn: int) -> None:
        with self._record_lock:
            self._events.append(FaultEvent(round(time.monotonic() - self._t0, 6), kind, conn))
            self._counts[kind] += 1
