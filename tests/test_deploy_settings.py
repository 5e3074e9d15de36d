"""Production settings: `manage.py check --deploy` is clean when the HTTPS variables are set."""

import io
import runpy

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import override_settings

HTTPS_SETTINGS = [
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
]
HTTPS_ENV = [
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
]


def production_settings(monkeypatch, tmp_path, **env) -> dict:
    """config/settings.py read afresh with DEBUG=0 and these environment variables."""
    production = {
        "DEBUG": "0",
        "SECRET_KEY": "a-production-secret-key-of-fifty-or-more-characters-0123456789",
        "ALLOWED_HOSTS": "prefhub.example.org",
        "PREFHUB_VAR_DIR": str(tmp_path),
        **env,
    }
    for name in [*HTTPS_ENV, "SECURE_COOKIES"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in production.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(django_settings.BASE_DIR / "config" / "settings.py"))


def deploy_check(values: dict) -> str:
    """What `manage.py check --deploy --tag security` says with these settings' HTTPS values
    (other apps' checks are not what these tests are about)."""
    out, err = io.StringIO(), io.StringIO()
    with override_settings(**{name: values[name] for name in HTTPS_SETTINGS}):
        call_command("check", deploy=True, tags=["security"], stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def test_check_deploy_is_clean_of_https_warnings_with_the_variables_set(monkeypatch, tmp_path):
    values = production_settings(
        monkeypatch,
        tmp_path,
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
    )
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    output = deploy_check(values)
    for warning in ("W004", "W005", "W008", "W012", "W016", "W021"):
        assert f"security.{warning}" not in output, output


def test_without_the_variables_check_deploy_warns_of_hsts_and_the_redirect(monkeypatch, tmp_path):
    output = deploy_check(production_settings(monkeypatch, tmp_path))
    assert "security.W004" in output
    assert "security.W008" in output


@pytest.mark.parametrize(
    "name, expected",
    [
        (None, ("HTTP_X_FORWARDED_PROTO", "https")),
        ("X-Forwarded-Ssl-Proto", ("HTTP_X_FORWARDED_SSL_PROTO", "https")),
        ("", None),
    ],
)
def test_the_proxy_ssl_header_is_configurable(monkeypatch, tmp_path, name, expected):
    env = {} if name is None else {"SECURE_PROXY_SSL_HEADER": name}
    assert production_settings(monkeypatch, tmp_path, **env)["SECURE_PROXY_SSL_HEADER"] == expected


def test_the_healthcheck_is_not_redirected_to_https(client, db, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/health/").status_code == 200
    assert client.get("/login/").status_code == 301
