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
        # Not the current app: shared tasks (`process_transaction.delay`) resolve to the current
        # app, and this bare client would send them to Redis for the rest of the session.
        self.client = Celery(broker=broker, set_as_current=False)

    def send(self, task_name: str, *args, **kwargs):
        return self.client.send_task(task_name, args=args, kwargs=kwargs, queue=self.queue)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, predicate, *, timeout: float = 60.0, interval: float = 0.1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.log()[-4000:]}")
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout} s; worker log:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _worker_start(*, queue: str, broker: str, log_path: Path, pool: str = "solo", env: dict | None = None):
    """A `celery worker` subprocess consuming `queue`; returns once it says it is ready."""
    environment = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "test-only-secret-key"),
        **(env or {}),
    }
    pool_options = ["--pool=solo"] if pool == "solo" else [f"--pool={pool}", "--concurrency=1"]
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            *pool_options,
            "--loglevel=INFO",
            "-Q",
            queue,
            "-n",
            f"{log_path.stem}-{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=environment,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()  # the child holds its own descriptor
    worker = WorkerProcess(queue, broker, process, log_path)
    try:
        worker.wait_until(lambda: "ready." in worker.log(), timeout=60)
    except BaseException:
        worker.stop()
        raise
    return worker


def _require_redis(broker: str) -> None:
    if not _redis_reachable(broker):
        if os.environ.get("LOYALTY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Redis is not reachable at {broker}")
        pytest.skip(f"Redis is not reachable at {broker}")


@pytest.fixture
def celery_workers(transactional_db, tmp_path):
    """Start real `celery worker` processes, all consuming one fresh Redis queue of their own:
    `celery_workers()` starts one (`pool="prefork"` for a pool with one child, `env={...}` for
    extra environment) and returns a handle; a second call starts another on the same queue
    (e.g. to take over from a killed one). All are stopped at the end of the test."""
    broker = redis_url()
    _require_redis(broker)
    queue = f"e2e-{uuid.uuid4().hex[:10]}"
    started: list[WorkerProcess] = []

    def start(*, pool: str = "solo", env: dict | None = None) -> WorkerProcess:
        worker = _worker_start(
            queue=queue, broker=broker, log_path=tmp_path / f"worker{len(started) + 1}.log", pool=pool, env=env
        )
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
        connection.close()


@pytest.fixture
def celery_worker_process(celery_workers):
    """Start a real `celery worker` on its own Redis queue; returns a handle to send tasks to it."""
    return celery_workers()
