"""Fixtures for the till client tests: the real app served by gunicorn on 127.0.0.1, pointed at
the test database pytest-django created (the tests commit, so the server sees their rows)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLIENT_ROOT = Path(__file__).resolve().parent.parent  # clients/python
PROJECT_ROOT = CLIENT_ROOT.parent.parent
if str(CLIENT_ROOT) not in sys.path:
    sys.path.insert(0, str(CLIENT_ROOT))


def _database_url() -> str:
    from django.db import connection

    settings_dict = connection.settings_dict
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    return (
        f"postgres://{settings_dict['USER']}{password}@{settings_dict['HOST'] or '127.0.0.1'}:"
        f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """gunicorn on 127.0.0.1:`port`; `stop()` cuts the connection, `start()` brings it back."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "test-only-secret-key"),
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "API_THROTTLE_RATE": "100000/min",
        }
        self.env.pop("CELERY_BROKER_URL", None)  # purchases are processed in-process (eager)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self) -> None:
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--log-level",
                "warning",
            ],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{self.log_path.read_text(errors='replace')[-4000:]}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status in (200, 503):
                    connection.close()
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"gunicorn did not start:\n{self.log_path.read_text(errors='replace')[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def live_server_process(transactional_db, tmp_path):
    """A started LiveServer on a free port; stopped (and DB connections closed) at the end."""
    from django.db import connection

    server = LiveServer(free_port(), tmp_path / "gunicorn.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        connection.close()


@pytest.fixture
def api_key(transactional_db):
    """The plain text of a test-mode integration key."""
    from core.services import api_key_create

    _, raw = api_key_create(name="till", livemode=False)
    return raw
