"""Amends settings, read from the environment.

Defaults give the embedded mode: SQLite under var/, jobs run in-process and a
sandbox mail backend. Set DATABASE_URL, REDIS_URL and ESP_* for production.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from config.env import envbool, envint, envlist, envsecret

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("AMENDS_VAR_DIR", BASE_DIR / "var"))

# "production" switches on the HTTPS and cookie hardening that check --deploy wants.
PROFILE = os.environ.get("AMENDS_PROFILE", "development")
PRODUCTION = PROFILE == "production"

DEBUG = envbool("DEBUG", default=not PRODUCTION)
SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-only-for-the-embedded-demo-0123456789"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000")
COMPANY_NAME = os.environ.get("COMPANY_NAME", "Amends demo retailer")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    "anymail",
    "axes",
    "django_htmx",
    "incidents",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Default-deny: every view needs a logged-in user unless marked public.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so it sees the outcome of the authentication backends.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "incidents.context_processors.amends",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    # One test database per process, so parallel runs on one server never collide.
    DATABASES["default"]["TEST"] = {"NAME": f"test_amends_{os.getpid()}"}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "amends.sqlite3",
            # IMMEDIATE takes the write lock when a transaction starts, so two
            # writers queue instead of failing half-way (the audit chain relies on it).
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
            # A file (not :memory:) so threaded tests share it; per process so runs never collide.
            "TEST": {"NAME": VAR_DIR / f"test-{os.getpid()}.sqlite3"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Queue --------------------------------------------------------------------
# Without REDIS_URL, jobs run in-process after the transaction commits.
REDIS_URL = os.environ.get("REDIS_URL", "")
RQ_QUEUES = {
    name: {"URL": REDIS_URL or "redis://127.0.0.1:6379/0", "DEFAULT_TIMEOUT": 900}
    for name in ("default", "send", "webhooks", "exports")
}
RQ_SHOW_ADMIN_LINK = bool(REDIS_URL)
# rq's forking worker, with the jobs' code loaded before the first fork (config/workers.py).
RQ = {"WORKER_CLASS": "config.workers.Worker"}

# --- Auth ---------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "incidents:list"
LOGOUT_REDIRECT_URL = "login"

# Five failures lock out for 15 minutes, even with the right password.
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("AXES_COOLOFF_MINUTES", default=15))
# Either a username or an address with 5 failures is locked (spraying many names from one host too).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# Fifteen minutes from the fifth failure, not extended by attempts during the lockout.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_PROXY_COUNT = envint("PROXY_COUNT", default=0)
# Axes reads PROXY_COUNT only through django-ipware, and without it sees the proxy's own
# address: behind a load balancer, five failures by anyone locked everyone out. Our own
# resolver (also the verification page's rate limit) honours PROXY_COUNT.
AXES_CLIENT_IP_CALLABLE = "config.ratelimit.client_ip"

# --- Internationalisation -----------------------------------------------------
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
MEDIA_ROOT = VAR_DIR / "media"

# --- Mail ---------------------------------------------------------------------
# Django 6.1 mailers. The embedded default keeps every message in the sandbox
# outbox; production names an anymail backend (ESP_BACKEND) or SMTP.
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "care@amends.example")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# The production profile never falls back to a development-only backend: without
# MAIL_BACKEND it hands mail to an SMTP relay (EMAIL_HOST, localhost by default).
MAIL_BACKEND = os.environ.get("MAIL_BACKEND") or (
    SMTP_BACKEND if PRODUCTION else "campaigns.mail.SandboxBackend"
)
MAILERS = {"default": {"BACKEND": MAIL_BACKEND}}
if MAIL_BACKEND == SMTP_BACKEND:
    _use_tls = envbool("EMAIL_USE_TLS", default=False)
    MAILERS["default"]["OPTIONS"] = {
        "host": os.environ.get("EMAIL_HOST", "localhost"),
        "port": envint("EMAIL_PORT", default=587 if _use_tls else 25),
        "username": os.environ.get("EMAIL_HOST_USER", ""),
        "password": envsecret("EMAIL_HOST_PASSWORD"),
        "use_tls": _use_tls,
        "timeout": envint("EMAIL_TIMEOUT", default=30),
    }
ANYMAIL = {
    key: value
    for key, value in {
        "POSTMARK_SERVER_TOKEN": envsecret("POSTMARK_SERVER_TOKEN"),
        "POSTMARK_API_URL": os.environ.get("POSTMARK_API_URL"),
        "MAILGUN_API_KEY": envsecret("MAILGUN_API_KEY"),
        "MAILGUN_SENDER_DOMAIN": os.environ.get("MAILGUN_SENDER_DOMAIN"),
        "MAILGUN_API_URL": os.environ.get("MAILGUN_API_URL"),
        "MAILGUN_WEBHOOK_SIGNING_KEY": envsecret("MAILGUN_WEBHOOK_SIGNING_KEY"),
        # "user:password" for the webhooks' HTTP basic auth. Several, comma-separated
        # (in WEBHOOK_SECRET or WEBHOOK_SECRETS), while rotating: the ESP may use any of
        # them until it is switched over. See docs/tracking.md.
        "WEBHOOK_SECRET": [
            s.strip()
            for s in f"{envsecret('WEBHOOK_SECRET')},{envsecret('WEBHOOK_SECRETS')}".split(",")
            if s.strip()
        ],
    }.items()
    if value
}

# --- API ----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Default-deny: each API view names the permission it needs.
    "DEFAULT_PERMISSION_CLASSES": ["incidents.access.DenyAll"],
    "DEFAULT_PAGINATION_CLASS": "incidents.api_common.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "incidents.api_common.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"user": "600/min", "anon": "60/min"},
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Amends API",
    "DESCRIPTION": "Incidents, audiences, apologies, sending, tracking and evidence.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `status`; name each enum after its model, not "StatusEnum".
    "ENUM_NAME_OVERRIDES": {
        "IncidentStatusEnum": "incidents.models.incident.Status",
        "IncidentSeverityEnum": "incidents.models.incident.Severity",
    },
}

# --- Security -----------------------------------------------------------------
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "frame-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", default=12 * 3600)

HTTPS = envbool("HTTPS", default=PRODUCTION)
if HTTPS:
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if envbool("BEHIND_PROXY", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# /healthz is probed over plain HTTP by load balancers.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# --- Amends -------------------------------------------------------------------
# Hours after becoming aware of a personal-data breach to notify the regulator (GDPR Art. 33).
REGULATOR_DEADLINE_HOURS = 72
REGULATOR_WARNING_HOURS = envint("REGULATOR_WARNING_HOURS", default=24)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}
TEST_RUNNER = "config.testrunner.PytestRunner"

# Key for address pseudonyms in audit entries and exports. Keep it stable: changing
# it makes old and new pseudonyms of the same person differ.
PSEUDONYM_KEY = envsecret("PSEUDONYM_KEY")

# --- Send log ---
# Uploads above this size are refused before anything is stored (2 GiB).
SENDLOG_MAX_UPLOAD_BYTES = envint("SENDLOG_MAX_UPLOAD_BYTES", default=2 * 1024**3)
# A longer line (or CSV row) is reported as a bad row and skipped, never held in memory.
SENDLOG_MAX_LINE_BYTES = envint("SENDLOG_MAX_LINE_BYTES", default=64 * 1024)
# Rows per committed batch of a file import: memory use and progress granularity.
SENDLOG_BATCH_ROWS = envint("SENDLOG_BATCH_ROWS", default=50_000)
SENDLOG_API_MAX_ROWS = envint("SENDLOG_API_MAX_ROWS", default=10_000)
# prune_sendlog deletes send log entries sent longer ago than this.
SENDLOG_RETENTION_DAYS = envint("SENDLOG_RETENTION_DAYS", default=400)
# Seconds a send log import job may run on a worker before rq stops it.
SENDLOG_IMPORT_JOB_TIMEOUT = envint("SENDLOG_IMPORT_JOB_TIMEOUT", default=4 * 3600)

# --- Bulk work ---
# work_mem for the big sorts of an audience freeze or preview (PostgreSQL only),
# set per transaction so the rest of the workload keeps the server default.
BULK_WORK_MEM = os.environ.get("BULK_WORK_MEM", "256MB")
# A freeze of up to this many send-log messages happens during the request; a larger
# one runs as a background job (about 26 s for 1.2M messages on 2 cores).
AUDIENCE_FREEZE_INLINE_MAX_MESSAGES = envint("AUDIENCE_FREEZE_INLINE_MAX_MESSAGES", default=50_000)
AUDIENCE_FREEZE_JOB_TIMEOUT = envint("AUDIENCE_FREEZE_JOB_TIMEOUT", default=3600)

# --- Messages ---
# A message part (subject, text or HTML of one locale) holds at most this much source.
MESSAGE_MAX_TEMPLATE_BYTES = envint("MESSAGE_MAX_TEMPLATE_BYTES", default=64 * 1024)
# One rendered message (subject + text + HTML) larger than this is refused.
MESSAGE_MAX_RENDERED_BYTES = envint("MESSAGE_MAX_RENDERED_BYTES", default=256 * 1024)
# Test sends go only to these addresses (comma-separated).
MESSAGE_TEST_SEED_LIST = [
    address.lower()
    for address in envlist("MESSAGE_TEST_SEED_LIST", default=["seed@amends.example"])
]
# Approvals a version needs before it can be sent, per incident severity
# ("SEV1=2,SEV2=1,default=1"). Never fewer than one, whatever is set here.
MESSAGE_APPROVALS_REQUIRED = {"SEV1": 2, "default": 1} | {
    key.strip(): int(value)
    for key, _, value in (
        item.partition("=") for item in envlist("MESSAGE_APPROVALS_REQUIRED", default=[])
    )
}
# The locale new messages fall back to when a person's locale has no variant.
MESSAGE_DEFAULT_FALLBACK_LOCALE = os.environ.get("MESSAGE_DEFAULT_FALLBACK_LOCALE", "en")

# --- Production must-haves ---
# Without these, production would run with forgeable webhooks (anyone could post
# bounces and suppress real customers) or with pseudonyms that change whenever
# SECRET_KEY is rotated. Refuse to start instead.
if PRODUCTION:
    _missing = [
        name
        for name, value in (
            ("PSEUDONYM_KEY", PSEUDONYM_KEY),
            ("WEBHOOK_SECRET", ANYMAIL.get("WEBHOOK_SECRET")),
        )
        if not value
    ]
    if _missing:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"The production profile needs {' and '.join(_missing)} (or {_missing[0]}_FILE)."
        )

# --- Sending ---
# See docs/sending.md. Defaults suit the embedded demo and a small ESP account.
# Messages per second per campaign, across all workers (a campaign can set its own).
SEND_RATE_LIMIT = envint("SEND_RATE_LIMIT", default=50)
# Deliveries per rq job: 250 jobs for a 1M-recipient campaign. Each job costs its work
# horse about 75 ms of CPU before and after its messages (fork, three database connections
# whose backends start cold, the templates compiled), so fewer, larger jobs send faster:
# 4,000 sent 5% more a second than 2,000 (docs/performance.md, session 10).
SEND_BATCH_SIZE = envint("SEND_BATCH_SIZE", default=4000)
# ESP calls a worker keeps in flight at once (one thread and one ESP connection each).
SEND_CONCURRENCY = envint("SEND_CONCURRENCY", default=8)
# ...but only while calls wait on the ESP: a job sends from its own thread, with no pool,
# while its ESP calls take less than this (a local relay, anymail's test backend).
SEND_INLINE_CALL_SECONDS = float(os.environ.get("SEND_INLINE_CALL_SECONDS", "0.003"))
# Once a job found the ESP slower than that, every job starts with the pool for this long
# instead of learning it again (one probe costs two calls made one after the other).
SEND_SLOW_ESP_SECONDS = float(os.environ.get("SEND_SLOW_ESP_SECONDS", "60"))
# A sending thread marks its next few rows handed over in one go: as many as it sends in
# about SEND_GROUP_SECONDS (one, against a slow ESP), at most SEND_GROUP_MAX. A killed
# worker leaves at most that much of each thread's work `uncertain` (docs/sending.md).
SEND_GROUP_SECONDS = float(os.environ.get("SEND_GROUP_SECONDS", "0.05"))
SEND_GROUP_MAX = envint("SEND_GROUP_MAX", default=32)
# A claimed delivery belongs to its worker this long; after it, the sweeper decides.
# Must exceed the ESP timeout (ANYMAIL REQUESTS_TIMEOUT, 30 s) by a wide margin.
SEND_LEASE_SECONDS = envint("SEND_LEASE_SECONDS", default=300)
# ESP calls per delivery before a transient error (5xx, no connection) becomes `failed`.
SEND_MAX_ATTEMPTS = envint("SEND_MAX_ATTEMPTS", default=5)
# Backoff after a transient error: base × 2^(attempt−1) seconds, at most the cap.
SEND_RETRY_BASE_SECONDS = float(os.environ.get("SEND_RETRY_BASE_SECONDS", "2"))
SEND_RETRY_MAX_SECONDS = envint("SEND_RETRY_MAX_SECONDS", default=600)
# A 429 without a usable Retry-After waits this long.
SEND_RETRY_AFTER_DEFAULT_SECONDS = envint("SEND_RETRY_AFTER_DEFAULT_SECONDS", default=30)
# A job waits this long itself for its next due delivery; longer waits go to the sweeper.
SEND_MAX_INLINE_WAIT_SECONDS = envint("SEND_MAX_INLINE_WAIT_SECONDS", default=60)
# How often a worker re-reads its campaign's status (pause and cancel reach it within this).
SEND_CONTROL_CHECK_SECONDS = float(os.environ.get("SEND_CONTROL_CHECK_SECONDS", "1"))
# Auto-pause: over a worker's last SEND_ERROR_WINDOW ESP calls, more errors than this share.
SEND_ERROR_WINDOW = envint("SEND_ERROR_WINDOW", default=50)
SEND_ERROR_PAUSE_RATIO = float(os.environ.get("SEND_ERROR_PAUSE_RATIO", "0.5"))
# Seconds an rq send job may run.
SEND_JOB_TIMEOUT = envint("SEND_JOB_TIMEOUT", default=3600)
# The sweeper re-enqueues a running campaign's due work when no worker claimed any this long.
SWEEP_STALE_SECONDS = envint("SWEEP_STALE_SECONDS", default=120)
# Prefix of the Redis keys for rate tokens and ESP holds.
SEND_REDIS_PREFIX = os.environ.get("SEND_REDIS_PREFIX", "amends:send")

# --- Tracking ---
# ESP webhooks and what their events do; see docs/tracking.md.
# The ESPs' own webhook signatures, checked by anymail on top of WEBHOOK_SECRET.
ANYMAIL.update(
    {
        key: value
        for key in (
            "MAILERSEND_SIGNING_SECRET",
            "MAILTRAP_TRACKING_SECRET",
            "MANDRILL_WEBHOOK_KEY",
            "POSTAL_WEBHOOK_KEY",
            "RESEND_SIGNING_SECRET",
            "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY",
            "UNISENDER_GO_API_KEY",
        )
        if (value := envsecret(key))
    }
    | ({"MANDRILL_WEBHOOK_URL": v} if (v := os.environ.get("MANDRILL_WEBHOOK_URL")) else {})
)
# Events per transaction of the apply job (a few queries per chunk, not per event).
TRACKING_APPLY_CHUNK = envint("TRACKING_APPLY_CHUNK", default=1000)
# A web process queues the apply job at most once per this many seconds (later requests
# within it leave the push to a timer at its end); the sweeper queues it for events left
# unapplied longer than APPLY_FORGOTTEN_SECONDS.
APPLY_PUSH_SECONDS = float(os.environ.get("APPLY_PUSH_SECONDS", "0.05"))
APPLY_FORGOTTEN_SECONDS = envint("APPLY_FORGOTTEN_SECONDS", default=30)
# The apply job waits this long before it looks, so one job applies a whole burst.
APPLY_GATHER_SECONDS = float(os.environ.get("APPLY_GATHER_SECONDS", "0.5"))
# A soft bounce sends the same delivery again, up to this many times, after the delay
# (doubling each time); then it is final and the person is unreachable.
SOFT_BOUNCE_RETRIES = envint("SOFT_BOUNCE_RETRIES", default=2)
SOFT_BOUNCE_RETRY_DELAY_SECONDS = envint("SOFT_BOUNCE_RETRY_DELAY_SECONDS", default=1800)
# A deferral means the ESP itself is still trying; sending again could deliver twice.
# On: a deferral counts as a soft bounce (retried by the policy above).
DEFERRAL_RETRY = envbool("DEFERRAL_RETRY", default=False)
# The embedded sandbox simulates ESP events for what it "sends" (docs/tracking.md).
if MAIL_BACKEND == "campaigns.mail.SandboxBackend":
    MAILERS["default"]["OPTIONS"] = {"simulate_events": envbool("SANDBOX_EVENTS", default=True)}

# --- Verification and metrics ---
# See docs/operations.md ("Verification page", "Metrics and alerts").
# The public page where customers check an apology's code, printed in apologies as
# {{ verification_url }}. Serve it over https in production: a page that says
# "genuine" over plain http can be forged by anyone on the way.
VERIFICATION_URL = os.environ.get("VERIFICATION_URL") or f"{SITE_URL.rstrip('/')}/verify/"
# Code look-ups per client address (IPv6: per /64) in each window; more get a 429.
# Codes carry 50 random bits, so this limits load, not guessing (docs/verification.md).
VERIFY_RATE_LIMIT = envint("VERIFY_RATE_LIMIT", default=20)
VERIFY_RATE_WINDOW_SECONDS = envint("VERIFY_RATE_WINDOW_SECONDS", default=600)
# Counters every web process must share (rate limits, the metrics' watermarks): Redis
# when there is one. "default" stays Django's own per-process cache.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "shared": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "amends:shared",
            "TIMEOUT": None,
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "shared"}
    ),
}
# Bearer tokens Prometheus scrapes /metrics with (comma-separated while rotating).
# Without one, only a logged-in user with incidents.view_metrics (Admin) can read it.
METRICS_TOKENS = [t.strip() for t in envsecret("METRICS_TOKEN").split(",") if t.strip()]

# --- Contact and follow-up ---
# See docs/contact.md. A delivery still `sent` (no delivered, bounce or other ESP event)
# this long after it was handed to the ESP is "unconfirmed": listed, exported, counted.
RECONCILE_UNCONFIRMED_AFTER_MINUTES = envint("RECONCILE_UNCONFIRMED_AFTER_MINUTES", default=60)
# The incident dashboard reads a per-incident snapshot of its counts; an older one is
# refreshed (inline up to DASHBOARD_INLINE_MAX_PEOPLE people, else by a queued job).
DASHBOARD_SNAPSHOT_MAX_AGE_SECONDS = envint("DASHBOARD_SNAPSHOT_MAX_AGE_SECONDS", default=5)
DASHBOARD_INLINE_MAX_PEOPLE = envint("DASHBOARD_INLINE_MAX_PEOPLE", default=20_000)
DASHBOARD_POLL_SECONDS = envint("DASHBOARD_POLL_SECONDS", default=5)
# People one bulk action (assign, record, waive) may change at once.
CONTACT_BULK_MAX = envint("CONTACT_BULK_MAX", default=10_000)

# --- Evidence export ---
# Where evidence packs are written (one directory per export, plus its zip). Keep it
# off the web server's static paths: packs are served only through the download views.
EXPORT_ROOT = Path(os.environ.get("EXPORT_ROOT", VAR_DIR / "exports"))
# Days a pack can be downloaded; expire_exports then deletes its files.
EXPORT_TTL_DAYS = envint("EXPORT_TTL_DAYS", default=7)
# Affected people per ledger COPY (PostgreSQL). Each chunk scans the deliveries, events and
# records of the whole incident again, so large; progress is reported within a chunk anyway.
EXPORT_CHUNK_PEOPLE = envint("EXPORT_CHUNK_PEOPLE", default=1_000_000)
# The ledger of an incident this large is written in EXPORT_STREAMS parallel COPY streams
# (PostgreSQL), each on its own connection, all in one snapshot.
EXPORT_STREAMS = envint("EXPORT_STREAMS", default=2)
EXPORT_STREAMS_MIN_PEOPLE = envint("EXPORT_STREAMS_MIN_PEOPLE", default=100_000)
# A pseudonymised ledger of an incident this large is kept as finished lines between
# exports (PostgreSQL; incidents/export/ledger_kept.py), so later exports read instead of join.
EXPORT_KEEP_MIN_PEOPLE = envint("EXPORT_KEEP_MIN_PEOPLE", default=50_000)
# Seconds an export job may run on a worker (a million people: 15–60 s, see docs/performance.md).
EXPORT_JOB_TIMEOUT = envint("EXPORT_JOB_TIMEOUT", default=3600)
# The printable report lists at most this many timeline entries; the CSV/JSONL has them all.
EXPORT_REPORT_MAX_TIMELINE = envint("EXPORT_REPORT_MAX_TIMELINE", default=2000)
