"""Fixtures for end-to-end tests: real Celery worker processes on Redis, pointed at the test
database that pytest-django created (so the worker sees what the test committed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/1"


def _redis_reachable(url: str) -> bool:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


def _database_url() -> str:
    settings_dict = connection.settings_dict
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    return (
        f"postgres://{settings_dict['USER']}{password}@{settings_dict['HOST'] or '127.0.0.1'}:"
        f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
    )


class WorkerProcess:
    def __init__(self, queue: str, broker: str, process: subprocess.Popen, log_path: Path) -> None:
        self.queue = queue
        self.broker = broker
        self.process = process
        self.log_path = log_path
        self.client = Celery(broker=broker)

    def send(self, task_name: str, *args, **kwargs):
        return self.client.send_task(task_name, args=args, kwargs=kwargs, queue=self.queue)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, predicate, *, timeout: float = 30.0, interval: float = 0.1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.log()[-4000:]}")
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout} s; worker log:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """Start a real `celery worker` on its own Redis queue; yields a handle to send tasks to it."""
    broker = redis_url()
    if not _redis_reachable(broker):
        if os.environ.get("LOYALTY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Redis is not reachable at {broker}")
        pytest.skip(f"Redis is not reachable at {broker}")
    queue = f"e2e-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "test-only-secret-key"),
    }
    log_path = tmp_path / "worker.log"
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    worker = WorkerProcess(queue, broker, process, log_path)
    try:
        worker.wait_until(lambda: "ready." in worker.log(), timeout=60)
        yield worker
    finally:
        worker.stop()
        log_file.close()
        connection.close()
