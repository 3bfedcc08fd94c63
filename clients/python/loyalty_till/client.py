"""A till client that keeps the checkout independent of the loyalty API.

* Every call has a short timeout (2 s by default) and never raises on a network failure: methods
  return a `Result` whose `status` says what happened.
* Purchases that cannot be delivered (server unreachable, 5xx, 408/429, or a key problem 401/403)
  are spooled to a local SQLite file with their original `id` and sent later by `flush_spool()`.
  POST /transactions is idempotent on `id`, so re-sending is always safe.
* A local contact cache (SQLite) is fed from GET /contacts/changes by `sync_contacts()`, and
  `identify()` falls back to it when the server cannot answer.
"""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# Answers that say "try again later" rather than "this purchase is wrong": the purchase stays
# in the spool. 401/403 are here too: a revoked or misconfigured key must not lose receipts.
RETRYABLE_STATUSES = frozenset({401, 403, 408, 425, 429})

MATCH_KEY_TYPES = ("member_number", "mobile_phone", "email", "external_id")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS spool_errors (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    payload TEXT NOT NULL,
    http_status INTEGER,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    id TEXT PRIMARY KEY,
    member_number TEXT,
    mobile_phone TEXT,
    email TEXT,
    data TEXT NOT NULL,
    changed_at TEXT
);
CREATE INDEX IF NOT EXISTS contacts_member_number ON contacts (member_number);
CREATE INDEX IF NOT EXISTS contacts_mobile_phone ON contacts (mobile_phone);
CREATE INDEX IF NOT EXISTS contacts_email ON contacts (email);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Result:
    """What a call did. `status` is one of:

    * ``ok`` — the server (or, with ``source == "cache"``, the local cache) answered;
    * ``queued`` — the purchase is in the local spool and will be sent by `flush_spool()`;
    * ``unavailable`` — the server could not be reached (or answered 5xx) and there was no fallback;
    * ``not_found`` — the server says there is no such contact;
    * ``rejected`` — the server refused the request (4xx); see `error`.
    """

    status: str
    data: Any = None
    error: dict | None = None
    http_status: int | None = None
    source: str = "server"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class FlushReport:
    """Outcome of `flush_spool()`: ids sent, ids dropped (4xx, recorded in `spool_errors`), and how
    many are still waiting; `stopped` is True when it stopped early because the server was down."""

    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    remaining: int = 0
    stopped: bool = False


class _Unavailable(Exception):
    """The server could not be reached or did not answer in time."""


class TillClient:
    """Client for one till. `base_url` is the API root, e.g. ``https://loyalty.example/api/v1``;
    `database` is the local SQLite file holding the purchase spool and the contact cache."""

    def __init__(self, base_url: str, api_key: str, database: str, *, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.database = str(database)
        self.timeout = timeout
        with self._db() as db:
            db.executescript(_SCHEMA)

    # ------------------------------------------------------------------ local storage

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction: committed on success, rolled back on error."""
        connection = sqlite3.connect(self.database, timeout=5)
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    def _state_get(self, db: sqlite3.Connection, key: str, default: str = "") -> str:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    @staticmethod
    def _state_set(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, *, body: Any = None, query: dict | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body) for any HTTP answer; raises `_Unavailable` when there is none
        (connection refused, DNS, timeout, reset, garbage)."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Api-Key {self.api_key}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            try:
                status, raw = error.code, error.read()
            except (OSError, http.client.HTTPException) as exc:
                raise _Unavailable(str(exc)) from exc
            finally:
                error.close()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # URLError, ConnectionError and socket.timeout are all OSErrors.
            raise _Unavailable(str(exc)) from exc
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = {"status": status, "error": "INVALID_RESPONSE", "message": raw[:200].decode(errors="replace")}
        return status, decoded

    @staticmethod
    def _error_body(status: int, body: Any) -> dict:
        if isinstance(body, dict) and "error" in body:
            return body
        return {"status": status, "error": "HTTP_ERROR", "message": str(body)[:200]}

    # ------------------------------------------------------------------ purchases

    def send_purchase(self, purchase: dict) -> Result:
        """Send a purchase (the body of POST /transactions). Gives it an `id` (uuid4) when it has
        none; keep that id: it is what makes re-sending safe. Never raises on network trouble:
        ``ok`` (202 answer in `data`), ``queued`` (spooled for `flush_spool()`) or ``rejected``
        (4xx: the purchase itself is wrong, it is not spooled)."""
        purchase = dict(purchase)
        purchase.setdefault("id", str(uuid.uuid4()))
        try:
            status, body = self._request("POST", "/transactions", body=purchase)
        except _Unavailable as exc:
            self._spool(purchase, f"unavailable: {exc}")
            return Result("queued", data={"id": purchase["id"]}, error={"error": "UNAVAILABLE", "message": str(exc)})
        if 200 <= status < 300:
            return Result("ok", data=body, http_status=status)
        error = self._error_body(status, body)
        if status >= 500 or status in RETRYABLE_STATUSES:
            self._spool(purchase, json.dumps(error))
            return Result("queued", data={"id": purchase["id"]}, error=error, http_status=status)
        return Result("rejected", error=error, http_status=status)

    def _spool(self, purchase: dict, reason: str) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO spool (id, payload, queued_at, last_error) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET last_error = excluded.last_error",
                (str(purchase["id"]), json.dumps(purchase), time.time(), reason),
            )

    def spooled(self) -> list[dict]:
        """The purchases waiting to be sent, oldest first."""
        with self._db() as db:
            rows = db.execute("SELECT payload FROM spool ORDER BY queued_at, id").fetchall()
        return [json.loads(payload) for (payload,) in rows]

    def spool_errors(self) -> list[dict]:
        """Spooled purchases the server refused (4xx), with its error: for someone to look at."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, payload, http_status, error, failed_at FROM spool_errors ORDER BY seq"
            ).fetchall()
        return [
            {"id": id_, "purchase": json.loads(payload), "http_status": code, "error": json.loads(error), "at": at}
            for id_, payload, code, error, at in rows
        ]

    def flush_spool(self, *, limit: int | None = None) -> FlushReport:
        """Send spooled purchases, oldest first, with their original ids. A 2xx (including a replay
        of an earlier delivery) removes the row; a 4xx (also 409 IDEMPOTENCY_MISMATCH) removes it
        and records the error in `spool_errors`; no answer, 5xx, 408/429 or 401/403 stops the flush
        and keeps the rows for next time. Safe to call at any moment, as often as you like."""
        report = FlushReport()
        with self._db() as db:
            rows = db.execute("SELECT id, payload FROM spool ORDER BY queued_at, id").fetchall()
        for purchase_id, payload in rows[:limit] if limit is not None else rows:
            try:
                status, body = self._request("POST", "/transactions", body=json.loads(payload))
            except _Unavailable as exc:
                self._spool_attempt(purchase_id, f"unavailable: {exc}")
                report.stopped = True
                break
            if 200 <= status < 300:
                with self._db() as db:
                    db.execute("DELETE FROM spool WHERE id = ?", (purchase_id,))
                report.sent.append(purchase_id)
            elif status >= 500 or status in RETRYABLE_STATUSES:
                self._spool_attempt(purchase_id, json.dumps(self._error_body(status, body)))
                report.stopped = True
                break
            else:
                with self._db() as db:
                    db.execute(
                        "INSERT INTO spool_errors (id, payload, http_status, error, failed_at) VALUES (?, ?, ?, ?, ?)",
                        (purchase_id, payload, status, json.dumps(self._error_body(status, body)), time.time()),
                    )
                    db.execute("DELETE FROM spool WHERE id = ?", (purchase_id,))
                report.failed.append(purchase_id)
        with self._db() as db:
            report.remaining = db.execute("SELECT count(*) FROM spool").fetchone()[0]
        return report

    def _spool_attempt(self, purchase_id: str, reason: str) -> None:
        with self._db() as db:
            db.execute("UPDATE spool SET attempts = attempts + 1, last_error = ? WHERE id = ?", (reason, purchase_id))

    # ------------------------------------------------------------------ contacts

    def sync_contacts(self, *, page_size: int = 1000) -> Result:
        """Bring the local contact cache up to date from GET /contacts/changes, from the saved
        cursor until `has_more` is false. Each page is applied and its `next_cursor` saved in one
        SQLite transaction, so a crash resumes where it stopped. On 409 CURSOR_EXPIRED the cache
        and cursor are cleared and everything is downloaded again. ``ok`` with counts in `data`,
        or ``unavailable``/``rejected`` (the cache is left as it was, to be resumed later)."""
        counts = {"pages": 0, "upserted": 0, "deleted": 0, "restarted": False}
        while True:
            with self._db() as db:
                cursor = self._state_get(db, "contacts_cursor")
            try:
                status, body = self._request(
                    "GET", "/contacts/changes", query={"cursor": cursor, "page_size": page_size}
                )
            except _Unavailable as exc:
                return Result("unavailable", data=counts, error={"error": "UNAVAILABLE", "message": str(exc)})
            if status == 409 and isinstance(body, dict) and body.get("error") == "CURSOR_EXPIRED":
                if counts["restarted"]:  # expired twice in one run: give up for now
                    return Result("rejected", data=counts, error=body, http_status=status)
                self.clear_contacts()
                counts["restarted"] = True
                continue
            if status != 200:
                error = self._error_body(status, body)
                kind = "unavailable" if status >= 500 else "rejected"
                return Result(kind, data=counts, error=error, http_status=status)
            with self._db() as db:
                for change in body["results"]:
                    contact = change["contact"]
                    if change["kind"] == "erased" or set(contact) == {"id"}:
                        db.execute("DELETE FROM contacts WHERE id = ?", (str(contact["id"]),))
                        counts["deleted"] += 1
                    else:
                        self._contact_upsert(db, contact, change.get("changed_at"))
                        counts["upserted"] += 1
                self._state_set(db, "contacts_cursor", body["next_cursor"])
            counts["pages"] += 1
            if not body["has_more"]:
                return Result("ok", data=counts, http_status=status)

    @staticmethod
    def _contact_upsert(db: sqlite3.Connection, contact: dict, changed_at: str | None) -> None:
        email = contact.get("email")
        db.execute(
            "INSERT INTO contacts (id, member_number, mobile_phone, email, data, changed_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET member_number = excluded.member_number, "
            "mobile_phone = excluded.mobile_phone, email = excluded.email, data = excluded.data, "
            "changed_at = excluded.changed_at",
            (
                str(contact["id"]),
                contact.get("member_number"),
                _phone_key(contact.get("mobile_phone")),
                email.strip().lower() if email else None,
                json.dumps(contact),
                changed_at,
            ),
        )

    def clear_contacts(self) -> None:
        """Forget the cached contacts and the feed cursor (the next sync downloads everything)."""
        with self._db() as db:
            db.execute("DELETE FROM contacts")
            db.execute("DELETE FROM state WHERE key = 'contacts_cursor'")

    def cached_contact(self, match_key: str, match_key_type: str, source: str | None = None) -> dict | None:
        """The cached contact with this identifier, or None."""
        with self._db() as db:
            if match_key_type == "member_number":
                rows = db.execute("SELECT data FROM contacts WHERE member_number = ?", (match_key.strip(),))
            elif match_key_type == "email":
                rows = db.execute("SELECT data FROM contacts WHERE email = ?", (match_key.strip().lower(),))
            elif match_key_type == "mobile_phone":
                rows = db.execute("SELECT data FROM contacts WHERE mobile_phone = ?", (_phone_key(match_key),))
            elif match_key_type == "external_id":
                pattern = "%" + match_key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                rows = db.execute("SELECT data FROM contacts WHERE data LIKE ? ESCAPE '\\'", (pattern,))
            else:
                return None
            candidates = [json.loads(data) for (data,) in rows.fetchall()]
        if match_key_type == "external_id":
            candidates = [
                contact
                for contact in candidates
                if any(
                    ref.get("id") == match_key and (source is None or ref.get("source") == source)
                    for ref in contact.get("external_ids") or []
                )
            ]
        return candidates[0] if len(candidates) == 1 else None

    def identify(self, match_key: str, match_key_type: str, *, source: str | None = None) -> Result:
        """Find a contact by any identifier (checkout step 1). Asks the server; when it cannot
        answer, looks in the local cache (``ok`` with ``source == "cache"``), else ``unavailable``:
        carry on with the purchase anonymously or tagged with the identifier."""
        query = {"match_key": match_key, "match_key_type": match_key_type}
        if source is not None:
            query["source"] = source
        try:
            status, body = self._request("GET", "/contacts", query=query)
        except _Unavailable as exc:
            return self._identify_offline(
                match_key, match_key_type, source, {"error": "UNAVAILABLE", "message": str(exc)}
            )
        if status == 200 and isinstance(body, dict) and body.get("results"):
            return Result("ok", data=body["results"][0], http_status=status)
        if status == 404:
            return Result("not_found", error=self._error_body(status, body), http_status=status)
        if status >= 500 or status in RETRYABLE_STATUSES:
            return self._identify_offline(match_key, match_key_type, source, self._error_body(status, body))
        return Result("rejected", error=self._error_body(status, body), http_status=status)

    def _identify_offline(self, match_key: str, match_key_type: str, source: str | None, error: dict) -> Result:
        contact = self.cached_contact(match_key, match_key_type, source)
        if contact is not None:
            return Result("ok", data=contact, error=error, source="cache")
        return Result("unavailable", error=error, source="cache")


def _phone_key(phone: str | None) -> str | None:
    """A phone number reduced to its digits with a leading + (``0046…`` becomes ``+46…``), so
    ``+46 70-123 45 67`` and ``+46701234567`` match. National forms (``070…``) are not guessed."""
    if not phone:
        return None
    text = phone.strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    return digits


__all__ = ["FlushReport", "Result", "TillClient"]
