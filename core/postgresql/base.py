"""Django's PostgreSQL backend, with the per-request health check skipped for a connection that
a request released cleanly moments ago.

With CONN_HEALTH_CHECKS Django sends `SELECT 1` before the first query of every request: a
round trip that, on the checkout endpoints, costs as much as some of their real queries. A
connection that finished a request without errors less than HEALTH_CHECK_DELAY seconds ago
(PgBouncer's `server_check_delay` idea) is used as it is; one idle for longer is checked as
before. A server lost inside that window fails at most the one request that meets it; Django
then sees the error and replaces the connection (`close_if_unusable_or_obsolete`).
"""

from __future__ import annotations

import time

from django.core.signals import request_finished
from django.db import connections
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    released_at: float | None = None

    def mark_released(self) -> None:
        self.released_at = None if self.connection is None or self.errors_occurred else time.monotonic()

    def close(self) -> None:
        self.released_at = None
        super().close()

    def close_if_health_check_failed(self) -> None:
        delay = self.settings_dict.get("HEALTH_CHECK_DELAY", 0)
        if (
            self.connection is not None
            and not self.health_check_done
            and self.released_at is not None
            and time.monotonic() - self.released_at < delay
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()


def _mark_released(**kwargs) -> None:
    for connection in connections.all(initialized_only=True):
        if isinstance(connection, DatabaseWrapper):
            connection.mark_released()


# After Django's own request_finished handler (close_old_connections), which closes what is
# unusable or too old: what is still open here finished its request cleanly.
request_finished.connect(_mark_released, dispatch_uid="postgresql-mark-released")
