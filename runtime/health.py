"""One small HTTP server per process: /metrics, /healthz and /readyz, served from a thread.

Any long-running orderhub process (a faust stage, the ingest services, the notification sender,
the KPI collector) calls `serve_metrics` once, before it starts its own loop:

    server = serve_metrics(settings.metrics.host, port, registry, ready=my_check)
    ...
    server.close()

- `/metrics`: the given registry in the Prometheus text format (only that registry, no process
  or Python collectors);
- `/healthz`: 200 while the process is alive; pass `live` (e.g. `Heartbeat.check`) so that a
  blocked asyncio loop answers 503;
- `/readyz`: 200 when `ready()` says the process can do its work, else 503.

Both probes answer JSON `{"status": …, "reason": …}`. A check is a plain callable returning
`(ok, reason)`; it runs on the server's thread, so it must only read state (no I/O, no waiting):
the process's own loop keeps that state fresh.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app

from schemas.errors import ConfigurationError

log = logging.getLogger(__name__)
Check = Callable[[], tuple[bool, str]]


def always_ready() -> tuple[bool, str]:
    """The check of a process that is ready as soon as it serves (the default liveness)."""
    return True, "ok"


class Heartbeat:
    """Proof that an asyncio loop still runs: the loop beats, the HTTP thread reads the age."""

    def __init__(self, max_age_s: float = 30.0, every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`max_age_s`: a loop that has not beaten for this long counts as stuck (the clock
        starts now, so a process gets that long to start its loop); `every_s`: `run` beats
        this often."""
        self.max_age_s = max_age_s
        self.every_s = every_s
        self.clock = clock
        self.last = clock()

    def beat(self) -> None:
        self.last = self.clock()

    async def run(self) -> None:
        """Beat forever on the running loop (start it as a task of that loop)."""
        while True:
            self.beat()
            await asyncio.sleep(self.every_s)

    def check(self) -> tuple[bool, str]:
        age = self.clock() - self.last
        if age > self.max_age_s:
            return False, f"event loop has not run for {age:.0f} s"
        return True, "ok"


class MetricsServer:
    """A running server; `port` is the bound port (useful when 0 was asked for)."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.port: int = httpd.server_address[1]

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()


def serve_metrics(host: str, port: int, registry: CollectorRegistry, ready: Check,
                  live: Check = always_ready) -> MetricsServer:
    """Serve /metrics, /healthz and /readyz on host:port from a daemon thread; returns at once.

    `registry`: what /metrics exposes. `ready`: answers /readyz. `live`: answers /healthz
    (default: alive as long as this server answers). Raises ConfigurationError if the port
    cannot be bound.
    """
    server_class = _server_class(host)
    try:
        httpd = make_server(host, port, _routes(make_wsgi_app(registry), live, ready),
                            server_class, handler_class=_QuietHandler)
    except OSError as e:
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port}: {e.strerror or e} (another process on that "
            "port? choose another with --metrics-port, or 0 to disable)") from e
    thread = threading.Thread(target=httpd.serve_forever, name=f"metrics:{port}", daemon=True)
    thread.start()
    log.info("metrics, /healthz and /readyz on http://%s:%d", host, httpd.server_address[1])
    return MetricsServer(httpd, thread)


def _routes(metrics: WSGIApplication, live: Check, ready: Check) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in ("/metrics", "/"):
            return metrics(environ, start_response)
        if path == "/healthz":
            return _probe(start_response, live, "ok", "unhealthy")
        if path == "/readyz":
            return _probe(start_response, ready, "ready", "not ready")
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics, /healthz or /readyz\n"]

    return app


def _probe(start_response: StartResponse, check: Check, good: str, bad: str) -> list[bytes]:
    try:
        ok, reason = check()
    except Exception as e:  # a broken check must answer 503, never kill the server thread
        log.exception("health check failed")
        ok, reason = False, f"check failed: {type(e).__name__}: {e}"
    body = json.dumps({"status": good if ok else bad, "reason": reason}).encode()
    start_response("200 OK" if ok else "503 Service Unavailable",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _server_class(host: str) -> type[WSGIServer]:
    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    return Server


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: scrapes and probes every few seconds would drown the logs."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        pass
