"""Shared set-up for the benchmark scripts: a fresh PostgreSQL database, Django configured to
use it, a real gunicorn server on 127.0.0.1, and a latency recorder."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def use_database(name: str) -> str:
    """Point Django at a fresh database `name` (dropped first) and return its URL."""
    import psycopg

    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["API_THROTTLE_RATE"] = "100000000/min"
    os.environ.pop("CELERY_BROKER_URL", None)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


class Server:
    """gunicorn serving the app on 127.0.0.1:PORT with the bench database."""

    def __init__(self, port: int = 8090, workers: int = 3, extra_env: dict | None = None) -> None:
        self.port = port
        env = {**os.environ, "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1", **(extra_env or {})}
        self.process = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/gunicorn"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status in (200, 503):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Client:
    """One keep-alive HTTP connection with an API key."""

    def __init__(self, port: int, key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}

    def post(self, path: str, body: dict) -> tuple[int, dict, float]:
        payload = json.dumps(body)
        started = time.perf_counter()
        self.connection.request("POST", path, body=payload, headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - started
        return response.status, json.loads(data or b"{}"), elapsed


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000
    return f"p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   n={len(ordered)}"


WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT p50=%.3f p95=%.3f requests=%d non2xx=%d seconds=%.3f\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, summary.requests,
    summary.errors.status, summary.duration / 1e6))
end
"""


def wrk(port: int, script: str, *, connections: int, seconds: float, path: str = "/") -> dict:
    """Run wrk (C, so the load generator takes little CPU from the server) with a Lua script;
    returns p50/p95 in ms, requests, non-2xx answers and the duration."""
    import shutil
    import tempfile

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + WRK_REPORT)
    output = subprocess.run(
        [
            "wrk",
            "-t",
            str(connections),
            "-c",
            str(connections),
            "-d",
            f"{int(seconds)}s",
            "-s",
            handle.name,
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(handle.name)
    line = next(line for line in output.splitlines() if line.startswith("RESULT"))
    values = dict(part.split("=") for part in line.split()[1:])
    return {key: float(value) for key, value in values.items()}


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def paced(port: int, key: str, path: str, bodies, *, rate: float, seconds: float, clients: int) -> dict:
    """Send `rate` requests/s in all for `seconds` from `clients` threads, each on its own
    keep-alive connection, on a fixed schedule (a client that falls behind sends at once, so
    the rate offered does not drop when the server slows down, unlike a closed loop). `bodies`
    is an iterator of JSON texts. Returns p50/p95 latency in ms, requests, non-2xx answers and
    the seconds taken. The client costs a fraction of a millisecond of CPU per request."""
    import itertools
    import threading

    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]
    period = clients / rate
    started = time.perf_counter() + 0.2
    deadline = started + seconds

    def run(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
        for step in itertools.count():
            due = started + (step + offset / clients) * period
            if due >= deadline:
                break
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            with lock:
                body = next(bodies)
            sent = time.perf_counter()
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - sent
            with lock:
                latencies.append(elapsed)
                if response.status >= 300:
                    failures[0] += 1
        connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered) * 1000,
        "p95": ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000,
        "requests": len(ordered),
        "non2xx": failures[0],
        "seconds": time.perf_counter() - started,
    }


def cpu_seconds_by_process() -> dict[str, float]:
    """CPU seconds used so far by each kind of process on this machine (gunicorn, celery,
    postgres, redis, this bench and the wrk runs it waited for, other), from /proc: two calls
    around a run tell where its CPU went."""
    import collections

    kinds = ("gunicorn", "celery", "postgres", "redis-server", "wrk", "bench/")
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = collections.Counter()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                stat = handle.read()
            with open(f"/proc/{pid}/cmdline") as handle:
                command = handle.read().replace("\0", " ")
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        kind = next((kind for kind in kinds if kind in command or kind in stat[: stat.rindex(")")]), "other")
        # Own time and that of children already waited for: PostgreSQL backends that exit
        # (connections recycled) leave their CPU time with the postmaster, wrk with this bench.
        used[kind.rstrip("/")] += sum(map(int, fields[11:15])) / ticks
    return used


def cpu_split(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    """'gunicorn 0.71 cores, celery 0.62, …' between two cpu_seconds_by_process() calls."""
    spent = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in after}
    ranked = sorted(((used, kind) for kind, used in spent.items() if used > 0.05 * seconds), reverse=True)
    return ", ".join(f"{kind} {used / seconds:.2f}" for used, kind in ranked) + " (cores)"
