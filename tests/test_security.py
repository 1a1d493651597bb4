"""Security posture: the production profile, response headers, cookies, sessions, health."""

import os
import re
import secrets
import subprocess
import sys
from importlib import import_module

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD

BASE_DIR = django_settings.BASE_DIR

# Settings that would change what the production profile decides; the deploy
# check must see the profile's own defaults, whatever the machine has set.
_PROFILE_OVERRIDES = (
    "DEBUG",
    "HTTPS",
    "BEHIND_PROXY",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "MAIL_BACKEND",
    "SECRET_KEY_FILE",
    "REDIS_URL",
    "PSEUDONYM_KEY",
    "PSEUDONYM_KEY_FILE",
    "WEBHOOK_SECRET",
    "WEBHOOK_SECRET_FILE",
)


def _csp_directives(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def _script_nonce(response) -> str:
    for value in _csp_directives(response)["script-src"]:
        if match := re.fullmatch(r"'nonce-([^']+)'", value):
            return match.group(1)
    raise AssertionError(f"no nonce in {response.headers['Content-Security-Policy']!r}")


def _log_in_through_the_form(client: Client, username: str, *, secure: bool = False):
    """GET the real login page, then POST its form with the CSRF token it handed out."""
    page = client.get("/login/", secure=secure)
    assert page.status_code == 200
    response = client.post(
        "/login/",
        {
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies[django_settings.CSRF_COOKIE_NAME].value,
        },
        secure=secure,
        # As a browser does; over HTTPS the CSRF check insists on a same-origin request.
        headers={"Origin": f"{'https' if secure else 'http'}://testserver"},
    )
    assert response.status_code == 302, "the login form did not accept the fixture password"
    return response


@pytest.fixture
def csrf_client():
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def https_on(settings):
    """What HTTPS=true turns on in settings.py, applied before the first request."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    return settings


# --- Production profile ---------------------------------------------------------


def test_production_profile_passes_every_deploy_check(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in _PROFILE_OVERRIDES}
    env.update(
        AMENDS_PROFILE="production",
        SECRET_KEY=secrets.token_urlsafe(64),
        PSEUDONYM_KEY=secrets.token_urlsafe(32),
        WEBHOOK_SECRET="esp:" + secrets.token_urlsafe(24),
        ALLOWED_HOSTS="amends.example",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/amends",
        AMENDS_NO_BOOTSTRAP="1",
        AMENDS_VAR_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output


@pytest.mark.parametrize("missing", ["PSEUDONYM_KEY", "WEBHOOK_SECRET"])
def test_production_profile_refuses_to_start_without_its_keys(tmp_path, missing):
    env = {key: value for key, value in os.environ.items() if key not in _PROFILE_OVERRIDES}
    env.update(
        AMENDS_PROFILE="production",
        SECRET_KEY=secrets.token_urlsafe(64),
        PSEUDONYM_KEY=secrets.token_urlsafe(32),
        WEBHOOK_SECRET="esp:" + secrets.token_urlsafe(24),
        ALLOWED_HOSTS="amends.example",
        AMENDS_NO_BOOTSTRAP="1",
        AMENDS_VAR_DIR=str(tmp_path),
    )
    env.pop(missing)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"The production profile needs {missing}" in result.stderr


def test_production_profile_refuses_to_start_without_a_secret_key(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in _PROFILE_OVERRIDES}
    env.pop("SECRET_KEY", None)
    env.update(
        AMENDS_PROFILE="production",
        ALLOWED_HOSTS="amends.example",
        AMENDS_NO_BOOTSTRAP="1",
        AMENDS_VAR_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


# --- Response headers -------------------------------------------------------------


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_pages_send_a_content_security_policy_without_unsafe_inline(client, url):
    response = client.get(url)

    assert response.status_code == 200
    directives = _csp_directives(response)
    for directive in ("default-src", "script-src", "style-src"):
        assert "'unsafe-inline'" not in directives[directive], directive
        assert "'unsafe-eval'" not in directives[directive], directive


def test_each_response_gets_its_own_script_nonce(client):
    # The admin login page loads scripts, so its policy carries the nonce they are tagged with.
    first = client.get("/admin/login/")
    second = client.get("/admin/login/")

    assert _script_nonce(first) != _script_nonce(second)
    for response in (first, second):
        assert f'nonce="{_script_nonce(response)}"' in response.content.decode()


def test_the_apps_own_scripts_carry_the_nonce_of_their_response(login, support_sam, incident):
    client = login(support_sam)
    url = reverse("incidents:audience", kwargs={"reference": incident.reference})
    first, second = client.get(url), client.get(url)

    assert first.status_code == second.status_code == 200
    assert _script_nonce(first) != _script_nonce(second)
    for response in (first, second):
        scripts = re.findall(r"<script\b[^>]*>", response.content.decode())
        assert scripts, "the audience page loads htmx"
        for tag in scripts:
            assert f'nonce="{_script_nonce(response)}"' in tag, tag


def test_content_security_policy_forbids_framing_and_foreign_forms(client):
    directives = _csp_directives(client.get("/login/"))

    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]


def test_pages_cannot_be_framed(client):
    response = client.get("/login/")

    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_https_responses_carry_strict_transport_security(https_on, client):
    response = client.get("/login/", secure=True)

    assert response.status_code == 200
    hsts = response.headers["Strict-Transport-Security"]
    assert "max-age=31536000" in hsts
    assert "includeSubDomains" in hsts


def test_plain_http_is_redirected_to_https_when_https_is_on(https_on, client):
    response = client.get("/login/")

    assert response.status_code == 301
    assert response.headers["Location"] == "https://testserver/login/"


def test_health_check_stays_on_plain_http_for_load_balancers(https_on, client, db):
    assert client.get("/healthz").status_code == 200


# --- Cookies and sessions ---------------------------------------------------------


def test_session_and_csrf_cookies_are_httponly_and_samesite_lax(csrf_client, support_sam):
    response = _log_in_through_the_form(csrf_client, "support_sam")

    for name in (django_settings.SESSION_COOKIE_NAME, django_settings.CSRF_COOKIE_NAME):
        cookie = response.cookies[name]
        assert cookie["httponly"], f"{name} is readable from JavaScript"
        assert cookie["samesite"] == "Lax", name
        assert not cookie["secure"], f"{name} is Secure on plain HTTP, so it would be lost"


def test_session_and_csrf_cookies_are_secure_when_https_is_on(https_on, csrf_client, support_sam):
    response = _log_in_through_the_form(csrf_client, "support_sam", secure=True)

    for name in (django_settings.SESSION_COOKIE_NAME, django_settings.CSRF_COOKIE_NAME):
        cookie = response.cookies[name]
        assert cookie["secure"], f"{name} would be sent over plain HTTP"
        assert cookie["httponly"], name
        assert cookie["samesite"] == "Lax", name


def test_login_issues_a_new_session_key(csrf_client, support_sam):
    # An attacker who planted a session id before login must not share the logged-in session.
    session = csrf_client.session
    session["planted"] = True
    session.save()
    before = session.session_key
    assert csrf_client.cookies[django_settings.SESSION_COOKIE_NAME].value == before

    _log_in_through_the_form(csrf_client, "support_sam")

    after = csrf_client.cookies[django_settings.SESSION_COOKIE_NAME].value
    assert after != before
    assert csrf_client.session.get("_auth_user_id") == str(support_sam.pk)
    assert not import_module(django_settings.SESSION_ENGINE).SessionStore().exists(before)


def test_login_form_rejects_a_post_without_a_csrf_token(csrf_client, support_sam):
    response = csrf_client.post("/login/", {"username": "support_sam", "password": PASSWORD})

    assert response.status_code == 403
    assert "_auth_user_id" not in csrf_client.session


def test_logout_needs_a_post(client, support_sam):
    client.force_login(support_sam)

    assert client.get("/logout/").status_code == 405
    assert "_auth_user_id" in client.session


# --- Health ---------------------------------------------------------------------


def test_health_check_answers_json_without_login(client, db):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    if django_settings.REDIS_URL:
        assert body["redis"] == "ok"
    else:
        assert body["redis"].startswith("not configured")


def test_health_check_reveals_no_secrets(client, db):
    body = client.get("/healthz").content.decode()

    assert django_settings.SECRET_KEY not in body
    assert "postgres://" not in body
    assert "redis://" not in body
