"""A real Prometheus for tests: Debian's `prometheus` package, run as a plain process.

The binary is the one on PATH, else ORDERHUB_TEST_PROMETHEUS, else Debian's package fetched with
`apt-get download` and unpacked with `dpkg-deb -x` into ~/.cache/orderhub/prometheus-<version>/
(no root needed once cached, no service started). Nothing is skipped: without a binary the
caller fails with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

PACKAGE = "prometheus"


class PrometheusUnavailable(RuntimeError):
    """No Prometheus binary could be found or fetched; the message says what to do."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orderhub"


def find_prometheus() -> Path:
    """The Prometheus binary to run, fetching Debian's package into the cache if needed."""
    configured = os.environ.get("ORDERHUB_TEST_PROMETHEUS")
    if configured:
        return Path(configured)
    on_path = shutil.which("prometheus")
    if on_path:
        return Path(on_path)
    cached = sorted(cache_dir().glob("prometheus-*/usr/bin/prometheus"))
    if cached:
        return cached[-1]
    return _unpack(_download())


def _download() -> Path:
    """`apt-get download prometheus` into a scratch dir (an `apt-get update` first if apt's
    lists do not know the package yet)."""
    work = Path(tempfile.mkdtemp(prefix="orderhub-prometheus-"))
    result = _run(["apt-get", "download", PACKAGE], work)
    if result.returncode != 0 and os.geteuid() == 0:
        _run(["apt-get", "update"], work)
        result = _run(["apt-get", "download", PACKAGE], work)
    debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
    if result.returncode != 0 or not debs:
        raise PrometheusUnavailable(
            f"cannot get Debian's {PACKAGE} package: `apt-get download {PACKAGE}` said "
            f"{(result.stderr or result.stdout).strip()[-500:]!r}. Install it "
            f"(`apt-get install {PACKAGE}`) or set ORDERHUB_TEST_PROMETHEUS to a binary.")
    return debs[-1]


def _unpack(deb: Path) -> Path:
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], deb.parent).stdout.strip()
    target = cache_dir() / f"prometheus-{version.replace(':', '_') or 'unknown'}"
    scratch = Path(tempfile.mkdtemp(prefix="unpack-", dir=_ensure(cache_dir())))
    result = _run(["dpkg-deb", "-x", str(deb), str(scratch)], deb.parent)
    binary = scratch / "usr" / "bin" / "prometheus"
    if result.returncode != 0 or not binary.exists():
        raise PrometheusUnavailable(f"cannot unpack {deb}: {result.stderr.strip()[-500:]}")
    if not target.exists():  # another test run may have unpacked it meanwhile
        scratch.rename(target)
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(deb.parent, ignore_errors=True)
    return target / "usr" / "bin" / "prometheus"


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(cmd: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=300)
    except FileNotFoundError as e:
        raise PrometheusUnavailable(f"{cmd[0]} is not installed ({e}); this needs a Debian "
                                    "system or ORDERHUB_TEST_PROMETHEUS") from e


def scrape_config(targets: Mapping[str, str], interval_s: float = 1.0,
                  honor_labels: Sequence[str] = ("kpi",)) -> dict[str, Any]:
    """One job per process `name -> host:port`, its series labelled stage=<name>, as
    deploy/prometheus/prometheus.yml does; the `honor_labels` jobs keep a `stage` label of their
    own (orderhub_kpi_dead_letters{stage}) instead of having it renamed exported_stage."""
    every = f"{interval_s:g}s"
    return {
        "global": {"scrape_interval": every, "scrape_timeout": every,
                   "evaluation_interval": every},
        "scrape_configs": [
            {"job_name": name, "honor_labels": name in honor_labels,
             "static_configs": [{"targets": [address], "labels": {"stage": name}}]}
            for name, address in targets.items()],
    }


class Prometheus:
    """A Prometheus process on a loopback port, storing into `home`; query it over HTTP."""

    def __init__(self, binary: Path, home: Path, port: int) -> None:
        self.binary = binary
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def start(self, config: dict[str, Any], timeout: float = 30.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))  # YAML is a superset of JSON
        self.log = (self.home / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [str(self.binary), f"--config.file={path}",
             f"--storage.tsdb.path={self.home / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout:.0f}s: {self.logs()}")

    def logs(self) -> str:
        path = self.home / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()

    def api(self, path: str, **params: str | Sequence[str]) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer."""
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.loads(r.read())
        if body.get("status") != "success":
            raise AssertionError(f"prometheus answered {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector: [{"metric": {labels}, "value": [ts, "v"]}, …]."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def values(self, expr: str, label: str) -> dict[str, float]:
        """`expr` as label value -> sample value (one series per value of `label`)."""
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}

    def series(self, match: str) -> list[dict[str, str]]:
        return list(self.api("series", **{"match[]": match}))

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])
