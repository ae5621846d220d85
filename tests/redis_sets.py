"""Redis as it is deployed, started by the tests: a master, a replica and three sentinels.

From the same ``redis-server`` the other tests start (Debian's, which
``make test`` installs), on loopback and free ports, in a directory of the
test's own (DESIGN.md section 14). Sentinel mode is ``redis-server CONF
--sentinel``; a sentinel rewrites its configuration file, so each gets one.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from .conftest import free_port, redis_server_binary

CLUSTER_PORTS_BELOW = 55535  # a node's bus port is its port plus 10,000

__all__ = ["ClusterSet", "SentinelSet"]

SERVICE = "wsevents"


def _client(port: int) -> Any:
    import redis

    return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)


def _pid(port: int) -> int:
    """The process id of the redis-server answering on ``port`` (ours, or one that took it)."""
    return int(_client(port).info("server")["process_id"])


def _wait(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout} s (last: {last!r})")


class _Servers:
    """redis-server processes by port, SIGKILLed together at the end."""

    processes: dict[int, subprocess.Popen[bytes]]

    def start(self) -> None:
        """Start every server and wait until they work together; if they do not, none is
        left running (a Popen left to the garbage collector fails the next test)."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
        for process in self.processes.values():
            process.wait(timeout=10)
        self.processes.clear()


class SentinelSet(_Servers):
    """A master, its replica and three sentinels watching them as ``SERVICE``.

    Failover is quick, as the fault tests need: a master is down after
    ``down_after`` ms without an answer (1 s), and two sentinels agree. A set
    shared by tests that kill nothing gives a longer one, so that a loaded
    machine's pause is not taken for a dead master.
    """

    def __init__(self, directory: Path, down_after: int = 1000) -> None:
        self.down_after = down_after
        self.binary = redis_server_binary()
        self.directory = directory
        ports = distinct_ports(5)
        self.ports = ports[:2]  # the master's, then the replica's
        self.sentinel_ports = ports[2:]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def _spawn(self, port: int, *args: str) -> None:
        self.processes[port] = subprocess.Popen(
            [self.binary, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.directory,
        )

    def _server(self, port: int, *extra: str) -> None:
        data = self.directory / str(port)
        data.mkdir(exist_ok=True)
        self._spawn(
            port, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", str(data), *extra,
        )  # fmt: skip

    def _start(self) -> None:
        master, replica = self.ports
        self._server(master)
        self._server(replica, "--replicaof", "127.0.0.1", str(master))
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after}\n"
                f"sentinel failover-timeout {SERVICE} 3000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self._spawn(port, str(config), "--sentinel")
        _wait("the replica in sync", lambda: self._linked(replica))
        for port in self.sentinel_ports:  # a sentinel asks the master for replicas every 10 s
            _wait(
                "each sentinel to know the others and the replica",
                lambda p=port: self._sees(p),
                timeout=45,
            )

    def _linked(self, replica: int) -> bool:
        info = _client(replica).info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sees(self, sentinel: int) -> bool:
        client = _client(sentinel)
        others = client.execute_command("SENTINEL", "SENTINELS", SERVICE)
        replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
        return len(others) == 2 and len(replicas) == 1

    def master(self) -> int:
        """The port of the master the sentinels name now."""
        _, port = _client(self.sentinel_ports[0]).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
        )
        return int(port)

    def kill_master(self) -> int:
        """SIGKILL the master; return its port."""
        port = self.master()
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        return port

    def cut_off_master(self) -> int:
        """Make the master refuse the sentinels (a password they do not have), alive and
        serving the connections it has: to the sentinels it is down. Returns its port."""
        port = self.master()
        client = _client(port)
        client.config_set("requirepass", "cut-off")  # connections made from now on
        for connection in client.client_list():  # and the sentinels' own, made before
            if connection["name"].startswith("sentinel-"):
                client.client_kill_filter(_id=connection["id"])
        return port

    def wait_failover(self, old: int, timeout: float = 20.0) -> int:
        """Wait until the sentinels name another master than ``old``; return its port."""
        return int(_wait("a failover", lambda: self.master() != old and self.master(), timeout))


def distinct_ports(count: int) -> list[int]:
    """``count`` free ports, all different (the kernel may hand one out twice while
    nothing listens on it yet)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def cluster_port(taken: Collection[int] = ()) -> int:
    """A free port whose bus port (the port plus 10,000) is a port too, and free, and
    neither of them one of ``taken`` nor its bus port: the nodes of one set differ."""
    import socket

    while True:
        port = free_port()
        if port >= CLUSTER_PORTS_BELOW or {port, port + 10_000, port - 10_000} & set(taken):
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


class ClusterSet(_Servers):
    """A Redis Cluster of three primaries, each with a replica: six redis-servers.

    ``--cluster-enabled yes`` and ``redis-cli --cluster create``, as an
    operator makes one; a node is taken for failed after ``node_timeout`` ms
    (1 s), and its replica promoted.
    """

    def __init__(self, directory: Path, node_timeout: int = 1000) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.node_timeout = node_timeout
        self.ports: list[int] = []
        for _ in range(6):
            self.ports.append(cluster_port(self.ports))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports[:3])
        return f"redis+cluster://{hosts}"

    def _start(self) -> None:
        cli = self._cli()
        for port in self.ports:
            self._launch(port)
        for index in range(len(self.ports)):
            self._answering(index)
        subprocess.run(
            [
                cli, "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", "1", "--cluster-yes",
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for port in self.ports:  # and every node knows every replica for one
            _wait("the cluster to be ok on every node", lambda p=port: self._formed(p), 30)

    def _launch(self, port: int) -> None:
        data = self.directory / f"node-{port}"
        data.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(data), "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout),
                "--cluster-replica-validity-factor", "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _answering(self, index: int) -> None:
        """Wait until node ``index`` answers. One that exited found its port or bus port
        taken since it was chosen (the suites of three Pythons run side by side): it is
        started again on new ones, three times at most."""
        for attempt in range(3):
            port = self.ports[index]
            process = self.processes[port]
            _wait(
                "a cluster node to answer",
                lambda p=port, q=process: q.poll() is not None or _pid(p) == q.pid,
                45,
            )
            if process.poll() is None:
                return
            del self.processes[port]
            if attempt < 2:
                self.ports[index] = cluster_port(self.ports)
                self._launch(self.ports[index])
        raise RuntimeError(f"a cluster node exited three times, last on port {port}")

    def _cli(self) -> str:
        """redis-cli, beside a redis-server 7 or newer (sharded pub/sub); else the test is
        skipped, saying what to install (``make test`` installs Debian's)."""
        import re
        import shutil

        import pytest

        version = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=True
        ).stdout
        found = re.search(r"v=(\d+)\.", version)
        cli = shutil.which("redis-cli") or str(Path(self.binary).with_name("redis-cli"))
        if found is None or int(found.group(1)) < 7 or not Path(cli).exists():
            pytest.skip(
                f"Redis Cluster needs redis-server 7 or newer and redis-cli; found "
                f"{self.binary} ({version.strip()}): `make redis` installs Debian's"
            )
        return cli

    @staticmethod
    def _ok(port: int) -> bool:
        info = _client(port).execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    @classmethod
    def _formed(cls, port: int) -> bool:
        nodes = _client(port).execute_command("CLUSTER", "NODES").decode()
        return cls._ok(port) and nodes.count("slave") == 3

    def primaries(self) -> list[int]:
        """The ports of the primaries, as the cluster says now."""
        shards = _client(self.alive()).execute_command("CLUSTER", "NODES")
        text = shards.decode() if isinstance(shards, bytes) else str(shards)
        found = []
        for line in text.splitlines():
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2] and len(fields) > 8:
                found.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(found)

    def alive(self) -> int:
        """The port of a node that is up."""
        return next(port for port, process in self.processes.items() if process.poll() is None)

    def owner(self, key: str) -> int:
        """The port of the primary that owns ``key``'s slot, as the cluster says now."""
        client = _client(self.alive())
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for first, last, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return int(primary[1])
        raise LookupError(f"no primary owns slot {slot}")

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``."""
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def wait_promoted(self, old: int, timeout: float = 20.0) -> None:
        """Wait until three primaries serve every slot again, ``old`` not among them."""

        def promoted() -> bool:
            return (
                len(self.primaries()) == 3
                and old not in self.primaries()
                and self._ok(self.alive())
            )

        _wait("a replica promoted in the failed primary's place", promoted, timeout)

    def move_slot(self, key: str, target: int) -> None:
        """Migrate ``key``'s slot, keys included, to the primary on ``target``, as
        ``redis-cli --cluster reshard`` does."""
        self.begin_migration(key, target)
        self.end_migration(key, target)

    def begin_migration(self, key: str, target: int) -> None:
        """Mark ``key``'s slot as migrating to ``target``: its owner answers ASK for the
        keys it does not hold."""
        source = self.owner(key)
        slot = int(_client(source).execute_command("CLUSTER", "KEYSLOT", key))
        source_id = _client(source).execute_command("CLUSTER", "MYID").decode()
        target_id = _client(target).execute_command("CLUSTER", "MYID").decode()
        _client(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        _client(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)

    def end_migration(self, key: str, target: int) -> None:
        """Move the keys of ``key``'s slot to ``target``, and give it the slot."""
        source = self.owner(key)
        slot = int(_client(source).execute_command("CLUSTER", "KEYSLOT", key))
        target_id = _client(target).execute_command("CLUSTER", "MYID").decode()
        while keys := _client(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            _client(source).execute_command(
                "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys
            )
        for port in (target, source, *self.primaries()):
            _client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
