"""R1 Studio settings: read only from environment variables (see README)."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from r1studio.env import env_bool, env_choice, env_float, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

R1_ENV = env_choice("R1_ENV", "development", {"development", "production"})
PRODUCTION = R1_ENV == "production"

_DEV_SECRET_KEY = "r1studio-development-key-not-for-production"
SECRET_KEY = env_secret("SECRET_KEY", _DEV_SECRET_KEY)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

if PRODUCTION:
    if not SECRET_KEY or SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 32:
        raise ImproperlyConfigured(
            "R1_ENV=production needs SECRET_KEY (or SECRET_KEY_FILE) set to a random value of 32+ characters"
        )
    if DEBUG:
        raise ImproperlyConfigured("R1_ENV=production refuses DEBUG=1: it leaks settings and tracebacks")
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Where the embedded default keeps its SQLite file, broker queue, uploads and checkpoints.
DATA_DIR = Path(env_str("R1_DATA_DIR", str(BASE_DIR / "var"))).resolve()
UPLOAD_DIR = DATA_DIR / "uploads"
# Folders whose files a web or API user may name as a job's server path (uploads are always
# allowed). Empty by default: naming server paths is off until an operator lists roots.
IMPORT_ROOTS = [Path(root).resolve() for root in env_list("R1_IMPORT_ROOTS", [])]
STORAGE_ROOT = Path(env_str("R1_STORAGE_ROOT", str(DATA_DIR / "storage"))).resolve()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",  # full-text search lookups; inert on SQLite
    "django_htmx",
    "axes",
    "apps.core",
    "apps.datasets",
    "apps.jobs",
    "apps.training",
    "apps.rollouts",
    "apps.curation",
    "apps.decontam",
    "apps.dedup",
    "apps.api",
    "r1studio",  # the home page and the demo command, above every app
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "apps.core.middleware.CleanInputMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login unless its view is marked @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "apps.core.middleware.RoleRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "r1studio.urls"
WSGI_APPLICATION = "r1studio.wsgi.application"

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

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": {
                # WAL lets the web server read while a worker writes; IMMEDIATE avoids
                # "database is locked" on upgrade from a read to a write transaction.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Failed-login throttling (django-axes): lock a username+IP pair after repeated failures, and an
# address after more failures across usernames (apps.core.login_throttle).
AXES_HANDLER = "apps.core.login_throttle.LoginThrottle"
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 20, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "r1studio" / "static"]  # source assets; collected files go to STATIC_ROOT
WHITENOISE_USE_FINDERS = True

# Uploads: anything above this many bytes is refused while it streams in.
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_MB", 512, minimum=1) * 1024 * 1024
# A composition of more examples than this runs as a job (stage-3 scale would time a request out).
COMPOSE_IN_REQUEST_MAX = env_int("R1_COMPOSE_IN_REQUEST_MAX", 50_000, minimum=1)
# POST /api/score: up to SCORE_SYNC_MAX completions are scored in the request, more (up to SCORE_MAX_ITEMS) by a job.
SCORE_SYNC_MAX = env_int("R1_SCORE_SYNC_MAX", 64, minimum=1)
SCORE_MAX_ITEMS = env_int("R1_SCORE_MAX_ITEMS", 20_000, minimum=1)
# A request body (JSON, form fields; not uploaded files) is read into memory up to this size: Django's 2.5 MB
# would hold only a few hundred of the completions POST /api/score takes.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("R1_MAX_REQUEST_MB", 32, minimum=1) * 1024 * 1024
# What an import or ingest may expand to (zip and gzip contents, Parquet's uncompressed column data,
# checked before reading), and the longest line of a JSONL or CSV file: a bomb is refused, not read.
MAX_EXPANDED_BYTES = env_int("R1_MAX_EXPANDED_MB", 4096, minimum=1) * 1024 * 1024
MAX_LINE_BYTES = env_int("R1_MAX_LINE_MB", 16, minimum=1) * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "apps.core.uploads.LimitedUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# Celery: the Job row is the source of truth, so task results are not stored.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
EMBEDDED_BROKER = CELERY_BROKER_URL.startswith("filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(DATA_DIR / "broker"),
        "data_folder_out": str(DATA_DIR / "broker"),
        "control_folder": str(DATA_DIR / "broker" / "control"),  # not ./control in whatever folder it started
        "store_processed": False,
    }
    if EMBEDDED_BROKER
    else {}
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_ENABLE_REMOTE_CONTROL = not EMBEDDED_BROKER  # the filesystem transport has no fanout
CELERY_TIMEZONE = "UTC"

# A running job writes a heartbeat every JOB_HEARTBEAT_SECONDS; the reaper marks a
# running job failed once its heartbeat is older than JOB_STALE_SECONDS.
JOB_HEARTBEAT_SECONDS = env_float("JOB_HEARTBEAT_SECONDS", 2.0, minimum=0.1)
JOB_STALE_SECONDS = env_float("JOB_STALE_SECONDS", 60.0, minimum=1.0)
if JOB_STALE_SECONDS <= 2 * JOB_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("JOB_STALE_SECONDS must be more than twice JOB_HEARTBEAT_SECONDS")
_REAPER_INTERVAL = env_float("JOB_REAPER_INTERVAL_SECONDS", 30.0, minimum=0.5)
# An upload previewed and never ingested (or whose job was deleted) is removed after this long.
UPLOAD_MAX_AGE_SECONDS = env_float("R1_UPLOAD_MAX_AGE_HOURS", 24.0, minimum=0.01) * 3600
CELERY_BEAT_SCHEDULE = {
    # Each run expires when the next is due: a worker that was busy or away does not run a backlog of them.
    "reap-stale-jobs": {
        "task": "apps.jobs.tasks.reap_stale_jobs",
        "schedule": _REAPER_INTERVAL,
        "options": {"expires": _REAPER_INTERVAL},
    },
    "sweep-stale-uploads": {
        "task": "apps.jobs.tasks.sweep_stale_uploads",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
}

# Training jobs (apps.training.training): `accelerate launch` with one of
# workers/training/accelerate/*.yaml; checkpoints under STORAGE_ROOT/runs/job-<id>/.
TRAINING_ACCELERATE_CONFIG = env_choice(
    "R1_TRAINING_ACCELERATE_CONFIG", "cpu", {"cpu", "single_gpu", "multi_gpu_zero2", "multi_gpu_fsdp", "multi_node"}
)
TRAINING_PROCESSES = env_int("R1_TRAINING_PROCESSES", 0, minimum=0)  # 0: one per GPU the worker sees
TRAINING_CPU_THREADS = env_int("R1_TRAINING_CPU_THREADS", os.cpu_count() or 1, minimum=1)
# Several machines (multi_node): each machine's gpu worker says where it stands.
TRAINING_NODE = {
    "machines": env_int("R1_TRAINING_NUM_MACHINES", 1, minimum=1),
    "rank": env_int("R1_TRAINING_MACHINE_RANK", 0, minimum=0),
    "main_ip": env_str("R1_TRAINING_MAIN_PROCESS_IP", "127.0.0.1"),
    "main_port": env_int("R1_TRAINING_MAIN_PROCESS_PORT", 29500, minimum=1),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}
