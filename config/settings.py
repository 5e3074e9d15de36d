"""Prefhub settings: one file, driven by environment variables (see the table in README.md).

Defaults give a working local app with nothing installed but Python: SQLite under var/, a Celery
broker on the filesystem, a generated secret key. Production sets DATABASE_URL, CELERY_BROKER_URL,
SECRET_KEY and DEBUG=0.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def envint(name: str, default: str) -> int:
    value = os.getenv(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.getenv(name, default).split(",") if part.strip()]


def envsecret(name: str) -> str | None:
    """Read NAME, or the file named by NAME_FILE (Docker secrets)."""
    path = os.getenv(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.getenv(name)


VAR_DIR = Path(os.getenv("PREFHUB_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DEBUG", "1")


def _secret_key() -> str:
    key = envsecret("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off (or SECRET_KEY_FILE).")
    # Local use: generate once and keep it, so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = os.getenv("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "annotate",
    "feedback_api",
    "rewards",
    "judges",
    "routing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Before anything reads a body (CsrfViewMiddleware reads a POST's form): it knows the user.
    "config.middleware.RequestSizeLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.HtmxLoginRedirectMiddleware",
    # Last, as django-axes asks: turns a login refused by a lockout into config.lockout's page.
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy on every response (django-csp): scripts and styles only from our own
# static files (no inline script, no style attributes), images from here and data: only (a
# project that loads images in responses widens img-src on its annotate page), no plugins, no
# framing, forms post only here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

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

# Database: SQLite under var/ unless DATABASE_URL says otherwise (postgres://... uses psycopg 3).
DATABASE_URL = os.getenv("DATABASE_URL", f"sqlite:///{VAR_DIR / 'prefhub.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", "0"))
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write at the same time: WAL and a busy timeout.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The assignment engine's hot statements bind on the server and are prepared on their first
    # run in each connection (annotate.assignment_sql); Django's own queries are unaffected. Off
    # behind a connection pooler in transaction mode that cannot keep prepared statements.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        0 if envbool("DB_PREPARED_STATEMENTS", "1") else None
    )
# Test databases are per test run (several runs may share a machine): a file for SQLite, not
# :memory:, so that a real Celery worker process in the tests sees the test data.
_TEST_DB = os.getenv("PREFHUB_TEST_DB", f"test_prefhub_{os.getpid()}")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"{_TEST_DB}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": _TEST_DB}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# "rendered": Markdown rendered to HTML, keyed by a hash of the text (annotate/rendering.py), so
# that a page load does not render. In each process's memory by default; any cache backend works.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "rendered": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "prefhub-rendered",
        "OPTIONS": {"MAX_ENTRIES": envint("RENDER_CACHE_ENTRIES", "2000")},
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Reverse proxies in front of the app that each append the client's address to X-Forwarded-For;
# 0: the client is REMOTE_ADDR and the header is ignored (a client could write any address there).
# The login lockout and the API's per-address throttle both count by this address.
NUM_PROXIES = envint("NUM_PROXIES", "0")

# Login lockout (django-axes), on the login page, the admin's and the API token endpoint: failed
# logins are counted in the database (one count for every server process) per username and per
# client address. At LOGIN_FAILURE_LIMIT failures, that username and that address cannot log in,
# not even with the right password, until LOGIN_COOLOFF_SECONDS pass without a failed attempt
# (an attempt while locked out is a failure, and a success does not clear the count).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", "10")
AXES_COOLOFF_TIME = timedelta(seconds=envint("LOGIN_COOLOFF_SECONDS", "900"))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "config.lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "config.lockout.lockout_response"
AXES_VERBOSE = False  # its start-up banner on every manage.py command and worker

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "annotate:project-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.getenv("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request without it
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.getenv("MEDIA_ROOT", VAR_DIR / "media"))
# Reward-model runs (checkpoints, saved models, download zips): under MEDIA_ROOT, so the web and
# the training worker share them through one volume.
REWARDS_DIR = Path(os.getenv("REWARDS_DIR", MEDIA_ROOT / "rewards"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploads: anything past 2.5 MB is spooled to a temporary file, never held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", str(10 * 1024 * 1024))
# Largest import file accepted (bytes), through every door: UI, API and CLI.
IMPORT_MAX_BYTES = envint("IMPORT_MAX_BYTES", str(1024 * 1024 * 1024))
# Request bodies (config/middleware.py): a request that declares a Content-Length over its limit
# is refused (413) unread, and one whose files pass the limit as they arrive is refused before
# more of them is written. With a login the files may hold IMPORT_MAX_BYTES (the body that plus
# DATA_UPLOAD_MAX_MEMORY_SIZE of form fields); without one (a login form, a token request) the
# whole body is small.
ANONYMOUS_REQUEST_MAX_BYTES = envint("ANONYMOUS_REQUEST_MAX_BYTES", str(1024 * 1024))
FILE_UPLOAD_HANDLERS = [
    "config.middleware.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Uploads at least this large run as a Celery job; smaller ones are imported during the request.
IMPORT_ASYNC_BYTES = envint("IMPORT_ASYNC_BYTES", str(2 * 1024 * 1024))
IMPORT_BATCH_SIZE = envint("IMPORT_BATCH_SIZE", "2000")

# Celery. The default broker needs no server: kombu's filesystem transport under var/broker, made
# safe for several processes by config/broker.py (registered in config/celery.py). The host is
# ignored; naming one keeps kombu from warning on every connection.
CELERY_BROKER_URL = os.getenv("CELERY_BROKER_URL", "filesystem://localhost/")
CELERY_RESULT_BACKEND = os.getenv("CELERY_RESULT_BACKEND", f"file://{VAR_DIR / 'celery-results'}")


def broker_transport_options(url: str, *, folder: Path, key_prefix: str = "") -> dict:
    """Kombu's options for a broker URL. The filesystem transport keeps its messages under
    `folder` (created here); Redis keys get `key_prefix`, so that several installs (or test runs)
    can share one Redis without taking each other's tasks."""
    if url.startswith("filesystem://"):
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    if url.startswith(("redis://", "rediss://", "redis+socket://")):
        # Longer than any task's time limit (imports: 6 h): Redis gives a message that is not
        # acked by then to another worker, and acks_late tasks ack only when they finish.
        options: dict = {"visibility_timeout": 8 * 3600}
        if key_prefix:
            options["global_keyprefix"] = key_prefix
        return options
    return {}


CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(
    CELERY_BROKER_URL,
    folder=Path(os.getenv("CELERY_BROKER_DIR", VAR_DIR / "broker")),
    key_prefix=os.getenv("CELERY_BROKER_KEY_PREFIX", ""),
)
if CELERY_RESULT_BACKEND.startswith("file://"):
    Path(CELERY_RESULT_BACKEND.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", "0")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", "7200")
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", "7000")
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Training runs go to their own worker (GPU, concurrency 1): `celery -A config worker -Q training`.
CELERY_TASK_ROUTES = {
    "rewards.train_run": {"queue": "training"},
    # The learned router's training embeds responses with MiniLM: torch, the training worker.
    "routing.train_router": {"queue": "training"},
}
# The learned router (routing/learning.py): the double-labelled items it needs before it replaces
# the confidence policy (from bench/route.py's learning curve), and how many new ones since its
# last training make a routing pass after a judge run train it again.
ROUTING_ROUTER_MIN_ITEMS = envint("ROUTING_ROUTER_MIN_ITEMS", "200")
ROUTING_RETRAIN_EVERY = envint("ROUTING_RETRAIN_EVERY", "100")
# Whether the router's training task embeds responses (MiniLM on the training worker's CPU/GPU:
# about 100 responses a second on 2 CPU cores); off, the router learns without that feature.
ROUTING_ROUTER_EMBEDDINGS = envbool("ROUTING_ROUTER_EMBEDDINGS", "1")
# Training: a run's worker refreshes its heartbeat at least this often (seconds) while it trains;
# a "running" run whose heartbeat is older than REWARDS_HEARTBEAT_TIMEOUT is taken to be orphaned
# (its worker died) and is resumed from its last checkpoint by the next training worker to start.
REWARDS_HEARTBEAT_S = envint("REWARDS_HEARTBEAT_S", "10")
REWARDS_HEARTBEAT_TIMEOUT = envint("REWARDS_HEARTBEAT_TIMEOUT", "60")
# Starts of one run (the first and its resumes); a run that kills its worker every time stops.
REWARDS_MAX_ATTEMPTS = envint("REWARDS_MAX_ATTEMPTS", "3")
REWARDS_TIME_LIMIT = envint("REWARDS_TIME_LIMIT", str(24 * 3600))
# Folders whose model subfolders any project admin may train from (rewards/base_models.py);
# besides these, only the packaged model and registered models the user may read.
REWARDS_ALLOWED_MODEL_ROOTS = [Path(p) for p in envlist("REWARDS_ALLOWED_MODEL_ROOTS", "")]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "feedback_api.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's three, with its JSON parser refusing bodies nested too deeply (feedback_api.parsers).
    "DEFAULT_PARSER_CLASSES": [
        "feedback_api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    # Requests per minute per user (token or session) and per client address for anonymous ones
    # (API_THROTTLE_* below); past it, 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": [
        "feedback_api.throttling.AnonThrottle",
        "feedback_api.throttling.UserThrottle",
    ],
    "NUM_PROXIES": NUM_PROXIES,
}
# API requests per minute (0: no limit), counted in the default cache: each server process's
# memory, so each gunicorn worker counts on its own.
API_THROTTLE_USER_PER_MINUTE = envint("API_THROTTLE_USER_PER_MINUTE", "600")
API_THROTTLE_ANON_PER_MINUTE = envint("API_THROTTLE_ANON_PER_MINUTE", "120")
# Seconds a server process remembers an API token's user (0: look it up on every request). A
# revoked token stops working at once in the process that revoked it, within this in the others.
API_TOKEN_CACHE_SECONDS = envint("API_TOKEN_CACHE_SECONDS", "5")
# The OpenAPI schema (/api/v1/schema/) and Swagger UI (/api/v1/docs/): for logged-in users only
# unless this is on (feedback_api/docs.py).
API_DOCS_PUBLIC = envbool("API_DOCS_PUBLIC", "0")
SPECTACULAR_SETTINGS = {
    "TITLE": "Prefhub API",
    "DESCRIPTION": "Preference data for aligning language models.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "feedback_api.docs.throttled_responses",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files: the docs page works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a "status" with its own choices: each enum is named after its model.
    "ENUM_NAME_OVERRIDES": {
        # Imports' and dataset versions' statuses, named as before the judges came.
        "StatusEnum": "annotate.models.ImportJob.Status",
        "JudgeRunStatusEnum": "judges.models.JudgeRun.Status",
        "JudgmentStatusEnum": "judges.models.Judgment.Status",
        "VerdictStatusEnum": "judges.models.Verdict.Status",
    },
}

if not DEBUG:
    SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", "1")
    CSRF_COOKIE_SECURE = envbool("SECURE_COOKIES", "1")


def proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """Django's SECURE_PROXY_SSL_HEADER from a header name (`X-Forwarded-Proto`): a request that
    carries it with the value `https` came over HTTPS to the proxy. Empty: no such header."""
    if not name:
        return None
    return ("HTTP_" + name.upper().replace("-", "_"), "https")


# HTTPS behind a TLS proxy. The proxy must set (not pass on) this header: a client that can send
# it to the app directly can claim HTTPS. Off with DEBUG on: runserver has no proxy in front.
SECURE_PROXY_SSL_HEADER = proxy_ssl_header(
    os.getenv("SECURE_PROXY_SSL_HEADER", "" if DEBUG else "X-Forwarded-Proto").strip()
)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "0")
# The container healthcheck asks http://127.0.0.1:8000/health/ from inside: no redirect for it.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
# HSTS: browsers remember to use HTTPS only for this many seconds. Hard to undo: start small.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", "0")
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "0")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "0")

# /health/ (config/health.py): anyone gets a liveness answer (a database query); staff and
# monitors sending `Authorization: Bearer <HEALTH_TOKEN>` get the broker and worker checks, whose
# result (a worker ping waits up to a second) is kept this many seconds in the default cache.
HEALTH_TOKEN = envsecret("HEALTH_TOKEN") or ""
HEALTH_CACHE_SECONDS = envint("HEALTH_CACHE_SECONDS", "15")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
}

# Judges (judges/runner.py): copies of a run's work task on the "judges" queue (each leases up to
# the judge's max_concurrency call slots, shared across all of them); how long a claimed pass or
# slot stays leased without a heartbeat; attempts before a pass is given up.
JUDGES_TASKS_PER_RUN = envint("JUDGES_TASKS_PER_RUN", "2")
JUDGES_LEASE_S = envint("JUDGES_LEASE_S", "60")
JUDGES_HEARTBEAT_S = envint("JUDGES_HEARTBEAT_S", "5")
JUDGES_HEARTBEAT_TIMEOUT = envint("JUDGES_HEARTBEAT_TIMEOUT", "60")
JUDGES_MAX_ATTEMPTS = envint("JUDGES_MAX_ATTEMPTS", "5")
