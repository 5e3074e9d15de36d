"""Settings for the test suite: the app's settings with a fast password hasher.

PBKDF2's 1M+ iterations per factory user were most of the suite's time (test_exports.py +
test_assignment.py: ~222 s with it, ~8 s without). Subprocesses started by tests (workers,
gunicorn) inherit DJANGO_SETTINGS_MODULE, so they verify the same hashes.
"""

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
