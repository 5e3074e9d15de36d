"""config/gunicorn.py, which the Dockerfile and docker-compose.yml run: settings gunicorn knows,
sync workers (one request per connection, see the module), sizes from the environment."""

import runpy
import types
from pathlib import Path

from gunicorn.config import Config

PATH = Path(__file__).resolve().parent.parent / "config" / "gunicorn.py"


def _settings() -> dict:
    names = runpy.run_path(str(PATH)).items()
    return {k: v for k, v in names if not k.startswith("_") and not isinstance(v, types.ModuleType)}


def test_gunicorn_settings_are_known_to_gunicorn(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    cfg = Config()
    for name, value in _settings().items():
        cfg.set(name, value)  # an unknown name raises
    assert cfg.worker_class_str == "sync"
    assert cfg.workers == 4 and cfg.timeout == 300
    assert cfg.address == [("0.0.0.0", 8000)]


def test_gunicorn_sizes_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "7")
    monkeypatch.setenv("GUNICORN_BIND", "127.0.0.1:9000")
    monkeypatch.setenv("GUNICORN_TIMEOUT", "60")
    settings = _settings()
    assert (settings["workers"], settings["bind"], settings["timeout"]) == (7, "127.0.0.1:9000", 60)
