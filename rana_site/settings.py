"""RANA settings: every value comes from the environment (see .env.example).

Local defaults just work (SQLite, local-memory cache, Celery's broker in folders under var/).
With DEBUG=0 the secrets must be given; a missing one stops start-up with its name.
"""

import base64
import datetime
import hashlib
import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from rana_site import broker_fs
from rana_site.proxies import parse_trusted_proxies

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# The .env file fills in what the environment does not set; RANA_ENV_FILE names another file,
# or none when empty (the test suite reads none, so a developer's .env cannot change it).
ENV_FILE = os.environ.get("RANA_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE:
    environ.Env.read_env(ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=True)

_DEV_SECRET_KEY = "rana-dev-insecure-secret-key-change-me-for-production-use-only-000"  # noqa: S105 (dev only; refused when DEBUG=0)


def _required(name: str, dev_default: str) -> str:
    """A secret: the dev default only while DEBUG is on, else fail naming the variable."""
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(f"{name} must be set when DEBUG=0 (see .env.example for how to generate one).")


SECRET_KEY = _required("SECRET_KEY", _DEV_SECRET_KEY)
if not DEBUG and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured("SECRET_KEY must be a random value of at least 50 characters.")


def _dev_fernet_key() -> str:
    digest = hashlib.sha256(("rana-fernet:" + SECRET_KEY).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


# Comma-separated Fernet keys, newest first (MultiFernet): encrypt with the first,
# decrypt with any. Separate from SECRET_KEY so either can be rotated alone.
RANA_ENCRYPTION_KEYS = [
    k.strip() for k in _required("RANA_ENCRYPTION_KEYS", _dev_fernet_key()).split(",") if k.strip()
]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Reverse proxies (IPs or CIDRs) whose X-Forwarded-For / X-Forwarded-Proto are believed; from
# any other peer those headers are removed before Django or axes read them (rana_site/proxies.py).
RANA_TRUSTED_PROXIES = env.list("RANA_TRUSTED_PROXIES", default=[])
try:
    RANA_TRUSTED_PROXY_NETWORKS = parse_trusted_proxies(RANA_TRUSTED_PROXIES)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None

# Upstream hosts that may resolve to private/loopback addresses (local models, test fakes).
RANA_ALLOWED_UPSTREAM_HOSTS = env.list("RANA_ALLOWED_UPSTREAM_HOSTS", default=[])
# Images callers send by URL: hosts that may be private (never inherited from the upstream list,
# since callers, not operators, choose image URLs), the largest image, and how long a fetch may take.
RANA_ALLOWED_IMAGE_HOSTS = env.list("RANA_ALLOWED_IMAGE_HOSTS", default=[])
RANA_IMAGE_MAX_BYTES = env.int("RANA_IMAGE_MAX_BYTES", default=5 * 1024 * 1024)
RANA_IMAGE_FETCH_TIMEOUT_S = env.float("RANA_IMAGE_FETCH_TIMEOUT_S", default=10.0)
# Alert webhooks (alerts app): hosts that may be private (its own list, like the image hosts).
RANA_ALLOWED_WEBHOOK_HOSTS = env.list("RANA_ALLOWED_WEBHOOK_HOSTS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "adminsortable2",
    "axes",
    "django_celery_beat",
    "providers",
    "playground",
    "dashboards",
    "gateway",
    "alerts",
    "batches",
]

MIDDLEWARE = [
    "rana_site.proxies.TrustedProxyMiddleware",  # first: nothing may read an untrusted proxy header
    "django.middleware.security.SecurityMiddleware",
    "rana_site.db_busy.DatabaseBusyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as axes asks: turns a locked-out login into the 429 page
]

# Login throttling (django-axes): after RANA_LOGIN_FAILURE_LIMIT failed logins for one username,
# or from one client address, logging in is refused (429) for RANA_LOGIN_COOLOFF_MIN minutes;
# the admin's login is covered too. The database handler: one count shared by every worker on
# SQLite and PostgreSQL alike, whichever cache is configured (the cache handler on the default
# local-memory cache would count per worker and forget on restart). Attempts made while locked
# out are not recorded, so a flood adds no rows once locked, and the lock ends on time.
# Unlock early: the admin's "Access attempts", or manage.py axes_reset_username NAME / axes_reset_ip IP.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("RANA_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env.float("RANA_LOGIN_COOLOFF_MIN", default=15))
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_TIME.total_seconds() <= 0:
    raise ImproperlyConfigured("RANA_LOGIN_FAILURE_LIMIT and RANA_LOGIN_COOLOFF_MIN must be positive.")
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one over the limit locks
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "rana_site.proxies.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False  # no banner at every start; failures are still logged (name and address masked)

ROOT_URLCONF = "rana_site.urls"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

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

WSGI_APPLICATION = "rana_site.wsgi.application"
ASGI_APPLICATION = "rana_site.asgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    # WAL lets the ledger writer and readers work side by side; a writer waits for another up
    # to the busy timeout, and immediate transactions take the write lock at BEGIN, so a
    # transaction never fails half-way on a lock upgrade (rana_site/db_busy.py handles the rest).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.float("RANA_SQLITE_BUSY_TIMEOUT_S", default=20.0),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "rana",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise serves from finders; no warning
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env.str(
            "RANA_STATICFILES_STORAGE",
            default="whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage",
        )
    },
}

# Celery (background work; rana_site/celery.py). The broker is Redis when REDIS_URL is set, else
# folders on this machine under RANA_CELERY_DIR (rana_site/broker_fs.py: kombu's filesystem
# transport, plus redelivery of what a worker that died had taken). A task is acknowledged once
# it has run (acks_late), one reserved per worker process; after a worker dies it runs again:
# on Redis once RANA_BROKER_VISIBILITY_TIMEOUT_S has passed since it was taken (keep that above
# the longest task time limit), on the folders as soon as another worker polls. No results are
# stored: tasks log what they did. Schedules live in the database (django-celery-beat, admin).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
RANA_CELERY_DIR = Path(env.str("RANA_CELERY_DIR", default=str(VAR_DIR / "celery")))
RANA_BROKER_VISIBILITY_TIMEOUT_S = env.int("RANA_BROKER_VISIBILITY_TIMEOUT_S", default=3600)
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "rana_site.broker_fs:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = broker_fs.transport_options(RANA_CELERY_DIR)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": RANA_BROKER_VISIBILITY_TIMEOUT_S,
        # look for messages of dead workers every few seconds, not every 100 s (kombu's default)
        "unacked_restore_interval": max(1, min(10, RANA_BROKER_VISIBILITY_TIMEOUT_S // 4)),
        "unacked_restore_throttle": 1,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The queue tasks are sent to (and workers take from) unless told otherwise: one per RANA install
# sharing a Redis, or per test worker.
CELERY_TASK_DEFAULT_QUEUE = env.str("RANA_CELERY_QUEUE", default="celery")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)  # tests only
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CONCURRENCY = env.int("RANA_CELERY_CONCURRENCY", default=1)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE

# Alerts (alerts app; evaluated by alerts.tasks.alerts_evaluate on the beat schedule, every
# 30 s by default, editable in the admin): a failed delivery is retried RANA_ALERT_RETRIES times,
# the first after RANA_ALERT_RETRY_BASE_S, doubling up to RANA_ALERT_RETRY_CAP_S; each webhook
# POST may take RANA_ALERT_WEBHOOK_TIMEOUT_S. E-mail goes through Django's EMAIL_* settings.
RANA_ALERT_RETRIES = env.int("RANA_ALERT_RETRIES", default=6)
RANA_ALERT_RETRY_BASE_S = env.float("RANA_ALERT_RETRY_BASE_S", default=30.0)
RANA_ALERT_RETRY_CAP_S = env.float("RANA_ALERT_RETRY_CAP_S", default=3600.0)
RANA_ALERT_WEBHOOK_TIMEOUT_S = env.float("RANA_ALERT_WEBHOOK_TIMEOUT_S", default=10.0)
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="rana@localhost")

# Batch runs (batches/): a runner heartbeats its batch every second; a redelivered task takes a
# batch over once its heartbeat is older than this (the runner died).
RANA_BATCH_LEASE_S = env.float("RANA_BATCH_LEASE_S", default=30.0)
# Ledger retention (providers.tasks.ledger_retention, daily): completions and their attempts
# older than this many days are deleted; the dashboards' rollups are kept. 0 keeps everything.
RANA_RETENTION_DAYS = env.int("RANA_RETENTION_DAYS", default=90)
# Request bodies kept by chains with body logging on go sooner (0: as long as their completions).
RANA_BODY_RETENTION_DAYS = env.int("RANA_BODY_RETENTION_DAYS", default=30)
for _name in ("RANA_RETENTION_DAYS", "RANA_BODY_RETENTION_DAYS"):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(f"{_name} must be 0 (keep forever) or a number of days.")

# Ledger: attempts are written by a write-behind buffer flushed at this interval.
RANA_LEDGER_FLUSH_MS = env.int("RANA_LEDGER_FLUSH_MS", default=50)
RANA_LEDGER_MODE = env.str("RANA_LEDGER_MODE", default="buffered")  # or "sync", "memory"
# Where each serving process journals its ledger rows before they reach the database (local disk).
RANA_JOURNAL_DIR = env.str("RANA_JOURNAL_DIR", default=str(VAR_DIR / "journal"))

# Benchmarks only: when set, each served worker probes its event loop's lag and writes the
# histogram to a file in this folder (gateway.api.loop_lag; bench/gateway_overhead.py).
RANA_LOOP_LAG_DIR = env.str("RANA_LOOP_LAG_DIR", default="")

if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Safe to set: TrustedProxyMiddleware removes this header unless a RANA_TRUSTED_PROXIES peer sent it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# LOG_FORMAT: "text" (the default) or "json" (one JSON object a line, and one `rana.completion`
# line per finished request: rana_site/logs.py, providers/services/observe.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "providers.secrets.RedactingFilter"}},
    "formatters": {"json": {"()": "rana_site.logs.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["redact"],
            **({"formatter": "json"} if LOG_FORMAT == "json" else {}),
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# Prometheus /metrics (README "Metrics, traces and logs"): off unless RANA_METRICS=1; then only
# for a bearer RANA_METRICS_TOKEN and/or a client in RANA_METRICS_ALLOW (IPs or CIDRs, the client
# address as RANA_TRUSTED_PROXIES tells it); with neither, loopback clients only. Several
# workers: scripts/serve keeps their series in RANA_METRICS_DIR (emptied at start).
RANA_METRICS = env.bool("RANA_METRICS", default=False)
RANA_METRICS_TOKEN = env.str("RANA_METRICS_TOKEN", default="")
RANA_METRICS_ALLOW = env.list("RANA_METRICS_ALLOW", default=[])
try:
    RANA_METRICS_ALLOW_NETWORKS = parse_trusted_proxies(
        RANA_METRICS_ALLOW or ([] if RANA_METRICS_TOKEN else ["127.0.0.1", "::1"]), "RANA_METRICS_ALLOW"
    )
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
RANA_METRICS_DIR = env.str("RANA_METRICS_DIR", default=str(VAR_DIR / "metrics"))

# OpenAI-compatible API (/v1/): the largest request body accepted (413 past it).
RANA_API_MAX_BODY_BYTES = env.int("RANA_API_MAX_BODY_BYTES", default=8 * 1024 * 1024)
# Seconds a client has to send a request's whole body (408, connection closed, past it).
RANA_API_BODY_TIMEOUT_S = env.float("RANA_API_BODY_TIMEOUT_S", default=10.0)
# The most chat messages one request may carry (400 naming `messages` past it).
RANA_API_MAX_MESSAGES = env.int("RANA_API_MAX_MESSAGES", default=10_000)
# /v1/ requests one worker serves at once, counted once their body is read (503 + Retry-After past it).
RANA_MAX_CONCURRENCY = env.int("RANA_MAX_CONCURRENCY", default=512)
# The largest upstream response body RANA reads per attempt, decoded (bad_response past it).
RANA_UPSTREAM_MAX_BYTES = env.int("RANA_UPSTREAM_MAX_BYTES", default=16 * 1024 * 1024)

# Serving (scripts/serve -> rana_site/serve.py -> granian): where, how many worker processes,
# the open connections one worker holds (granian's backpressure: past it, new connections wait
# in the listen backlog), the time a client has to send a request's head (idle keep-alive
# connections are closed after it too), and how long a graceful stop waits for in-flight
# requests before killing a worker.
RANA_HOST = env.str("RANA_HOST", default="127.0.0.1")
RANA_PORT = env.int("RANA_PORT", default=8000)
RANA_WORKERS = env.int("RANA_WORKERS", default=2)
RANA_MAX_CONNECTIONS = env.int("RANA_MAX_CONNECTIONS", default=2048)
RANA_HEADER_TIMEOUT_S = env.float("RANA_HEADER_TIMEOUT_S", default=10.0)
RANA_SHUTDOWN_TIMEOUT_S = env.int("RANA_SHUTDOWN_TIMEOUT_S", default=30)

# Global spend limits in USD across every chain (optional).
RANA_GLOBAL_DAILY_BUDGET_USD = env.str("RANA_GLOBAL_DAILY_BUDGET_USD", default="") or None
RANA_GLOBAL_MONTHLY_BUDGET_USD = env.str("RANA_GLOBAL_MONTHLY_BUDGET_USD", default="") or None
# Budgets hold each request's estimated cost while it runs (providers.services.budget): the
# output allowance of a request without max_tokens, and the interval over which the refusals
# of one spent budget (per chain and caller) are written as one sampled ledger row.
RANA_BUDGET_DEFAULT_OUTPUT_TOKENS = env.int("RANA_BUDGET_DEFAULT_OUTPUT_TOKENS", default=4096)
RANA_BUDGET_REFUSAL_SAMPLE_S = env.float("RANA_BUDGET_REFUSAL_SAMPLE_S", default=10.0)

# Circuit breaker per provider + model (providers/services/breaker.py), shared by every process
# through Redis when REDIS_URL is set: on or off; the consecutive transient failures that open a
# circuit, or the failure rate (percent) over a sliding window (seconds, at most 600) once it
# holds this many calls; how long it stays open (doubled on each failed probe, up to the cap),
# and the cooldown after an auth or quota error. A chain can override all but the last.
RANA_BREAKER_ENABLED = env.bool("RANA_BREAKER_ENABLED", default=True)
RANA_BREAKER_THRESHOLD = env.int("RANA_BREAKER_THRESHOLD", default=5)
RANA_BREAKER_FAILURE_RATE_PCT = env.float("RANA_BREAKER_FAILURE_RATE_PCT", default=50.0)
RANA_BREAKER_WINDOW_S = env.float("RANA_BREAKER_WINDOW_S", default=60.0)
RANA_BREAKER_MIN_CALLS = env.int("RANA_BREAKER_MIN_CALLS", default=20)
RANA_BREAKER_COOLDOWN_S = env.float("RANA_BREAKER_COOLDOWN_S", default=30.0)
RANA_BREAKER_COOLDOWN_CAP_S = env.float("RANA_BREAKER_COOLDOWN_CAP_S", default=300.0)
RANA_BREAKER_LONG_COOLDOWN_S = env.float("RANA_BREAKER_LONG_COOLDOWN_S", default=300.0)
if not (0 < RANA_BREAKER_WINDOW_S <= 600 and 0 < RANA_BREAKER_FAILURE_RATE_PCT <= 100):
    raise ImproperlyConfigured(
        "RANA_BREAKER_WINDOW_S must be in (0, 600] and RANA_BREAKER_FAILURE_RATE_PCT in (0, 100]."
    )

# Dashboards: percentiles are exact (nearest rank over raw rows) up to this many answers in
# the filtered range, and read from the rollups' histograms above it.
RANA_DASHBOARDS_EXACT_PERCENTILE_ROWS = env.int("RANA_DASHBOARDS_EXACT_PERCENTILE_ROWS", default=20_000)
