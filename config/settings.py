"""One settings module, configured from the environment.

Embedded default (nothing set): SQLite file, local-memory cache, Celery tasks run in-process.
Production shape: DATABASE_URL=postgres://..., REDIS_URL=redis://..., CELERY_BROKER_URL=redis://...
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# Required outside DEBUG for every process that serves or works (gunicorn, Celery): a missing key
# stops it. One-off management commands (makemigrations, create_api_key, …) sign nothing that
# outlives them, so they may run with a throw-away key rather than fail.
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG:
        SECRET_KEY = "insecure-development-key-only-for-debug"
    elif os.environ.get("LOYALTY_MANAGEMENT_COMMAND") == "1":
        SECRET_KEY = secrets.token_urlsafe(50)
    else:
        raise ImproperlyConfigured("Set the SECRET_KEY environment variable (or DEBUG=1 for development).")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "unfold",
    "unfold.contrib.filters",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    # Our apps, lowest layer first: each may import only those above it.
    "core",
    "catalogue",
    "loyalty",
    "offers",
    "transactions",
    "orders",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.middleware.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # core.postgresql: the health check's SELECT 1 is skipped for a connection that finished a
    # request cleanly less than this many seconds ago (0 = check before every request).
    DATABASES["default"]["ENGINE"] = "core.postgresql"
    DATABASES["default"]["HEALTH_CHECK_DELAY"] = env.float("DATABASE_HEALTH_CHECK_DELAY", default=1.0)
    # Parameters bound by the server, and a statement run 5 times on a connection prepared
    # (planned once): the checkout and purchase paths run the same few statements all day, and
    # planning them was a quarter of PostgreSQL's time per purchase processed. Set to 0 behind
    # a pooler that cannot keep prepared statements (PgBouncer before 1.21 in transaction mode).
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        DATABASES["default"]["OPTIONS"].update(server_side_binding=True, prepare_threshold=5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"redact_personal_data": {"()": "core.log_filters.RedactPersonalData"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_personal_data"]}
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}

# --- API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["core.api.permissions.HasApiKeyScope"],
    "DEFAULT_THROTTLE_CLASSES": ["core.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env("API_THROTTLE_RATE", default="6000/min")},
    "DEFAULT_RENDERER_CLASSES": ["core.api.renderers.FastJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "core.api.exception_handler.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.ErrorDocumentingAutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Loyalty back-office API",
    "DESCRIPTION": (
        "The integrator API: contacts, wallets, offers, transactions, orders and the "
        "management surface. Authenticate with `Authorization: Api-Key lk_live_…` or "
        "`lk_test_…`. Every 4xx/5xx has the body `{status, error, message, parameters}`. "
        "Creating POSTs accept an `Idempotency-Key` header."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "ENUM_NAME_OVERRIDES": {},
}

# API keys: the prefix tells the mode. Keys are random and long, so one fast hash suffices.
API_KEY_LAST_USED_RESOLUTION = timedelta(seconds=60)
IDEMPOTENCY_RETENTION = timedelta(hours=env.int("IDEMPOTENCY_RETENTION_HOURS", default=24))
# Stored request/response payloads that may hold personal data (idempotency replays, outbox event
# payloads) are deleted after this many days whatever the horizons above (core.personal_data_purge).
PERSONAL_DATA_RETENTION_DAYS = env.int("PERSONAL_DATA_RETENTION_DAYS", default=30)
# An in-flight idempotency claim older than this is considered abandoned (its process died).
IDEMPOTENCY_IN_FLIGHT_TIMEOUT = timedelta(seconds=60)
# The contact change feed keeps superseded changes and erasure tombstones this long; a cursor
# older than a purged tombstone is refused (CURSOR_EXPIRED) and the client downloads again.
CONTACT_CHANGES_RETENTION_DAYS = env.int("CONTACT_CHANGES_RETENTION_DAYS", default=30)

PHONE_DEFAULT_REGION = env("PHONE_DEFAULT_REGION", default="SE")
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# How long a worker holds a delivery it is sending; a killed worker's delivery comes due again
# after it. Keep it above the timeout, or a slow receiver gets the message twice.
WEBHOOK_LEASE_SECONDS = env.int("WEBHOOK_LEASE_SECONDS", default=60)
# A worker drains queued purchases for at most this long per task, then hands over to a new one.
TRANSACTION_DRAIN_SECONDS = env.float("TRANSACTION_DRAIN_SECONDS", default=10.0)
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=20)
OFFER_LOCK_TTL_SECONDS = env.int("OFFER_LOCK_TTL_SECONDS", default=900)
# On PostgreSQL a ledger credit is one SQL statement (one round trip); off = the portable path.
LEDGER_SQL_FAST_PATH = env.bool("LEDGER_SQL_FAST_PATH", default=True)
MEMBER_NUMBER_PREFIX = env("MEMBER_NUMBER_PREFIX", default="7")

# --- Celery ----------------------------------------------------------------------------------
# No broker configured: run tasks in-process so the embedded default works without Redis.
CELERY_TASK_ALWAYS_EAGER = not env("CELERY_BROKER_URL", default="")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="") or "memory://localhost/"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes every database connection before and after each task unless
# this is set, and then only every this many tasks: a new PostgreSQL session per task (a drain,
# a webhook dispatch) cost a backend start and, every time, statements parsed and planned anew
# (a statement is prepared on its fifth run on a connection). config.celery handles connections
# around tasks the way Django does around requests instead (CONN_MAX_AGE, health checks).
CELERY_DB_REUSE_MAX = 2**62
# A message taken by a worker that dies without acknowledging it is delivered again after this
# many seconds (Redis). Must exceed the longest task; tests lower it to see a redelivery quickly.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "purge-idempotency-records": {"task": "core.idempotency_records_purge", "schedule": timedelta(hours=1)},
    "purge-personal-data": {"task": "core.personal_data_purge", "schedule": timedelta(hours=6)},
    "expire-lots": {"task": "loyalty.lots_expire_due", "schedule": timedelta(minutes=15)},
    "release-pending-points": {"task": "loyalty.pending_lots_release", "schedule": timedelta(minutes=15)},
    "review-tiers": {"task": "loyalty.tiers_review", "schedule": timedelta(hours=24)},
    "purge-contact-changes": {"task": "loyalty.contact_changes_purge", "schedule": timedelta(hours=6)},
    "release-offer-locks": {"task": "offers.locks_release", "schedule": timedelta(minutes=1)},
    "expire-issued-offers": {"task": "offers.issued_offers_expire", "schedule": timedelta(minutes=15)},
    "dispatch-webhooks": {"task": "core.webhooks_dispatch", "schedule": timedelta(seconds=10)},
    "sweep-queued-transactions": {"task": "transactions.sweep_queued", "schedule": timedelta(minutes=1)},
    "sweep-queued-events": {"task": "campaigns.sweep_queued_events", "schedule": timedelta(minutes=1)},
    "campaign-statuses": {"task": "campaigns.statuses_refresh", "schedule": timedelta(minutes=1)},
    "birthdays": {"task": "campaigns.birthdays_raise", "schedule": timedelta(hours=1)},
}

# --- Admin theme -----------------------------------------------------------------------------
UNFOLD = {
    "SITE_TITLE": "Loyalty back-office",
    "SITE_HEADER": "Loyalty",
    "SITE_SYMBOL": "loyalty",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "ENVIRONMENT": "core.admin.environment_badge",
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": True,
    },
}
