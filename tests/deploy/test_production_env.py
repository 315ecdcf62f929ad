"""Production settings a deployment changes through the environment: cookie flags, trusted
origins (HTTP on a LAN host, HTTPS behind a proxy), and static files through WhiteNoise."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHOW = (
    "import json; from django.conf import settings as s; print(json.dumps({"
    "'session': s.SESSION_COOKIE_SECURE, 'csrf': s.CSRF_COOKIE_SECURE, 'origins': s.CSRF_TRUSTED_ORIGINS, "
    "'middleware': s.MIDDLEWARE, 'static': s.STORAGES['staticfiles']['BACKEND'], "
    "'exempt': s.SECURE_REDIRECT_EXEMPT}))"
)


def production(tmp_path: Path, **env: str) -> dict:
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "config.settings.production", "LOOKALIKE_DATA_DIR": str(tmp_path),
        "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "shop.example.com", **env,
    }
    result = subprocess.run([sys.executable, "-c", f"import django; django.setup()\n{SHOW}"], cwd=REPO,
                            env=clean, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cookies_are_secure_unless_the_environment_serves_plain_http(tmp_path):
    assert production(tmp_path)["session"] is True
    plain = production(tmp_path, SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false")
    assert (plain["session"], plain["csrf"]) == (False, False)


def test_trusted_origins_come_from_the_environment(tmp_path):
    got = production(tmp_path, CSRF_TRUSTED_ORIGINS="https://shop.example.com, https://shop.example.com:8443")
    assert got["origins"] == ["https://shop.example.com", "https://shop.example.com:8443"]
    assert production(tmp_path)["origins"] == []


def test_static_files_through_whitenoise_and_health_exempt_from_redirect(tmp_path):
    got = production(tmp_path)
    assert got["middleware"][:2] == ["django.middleware.security.SecurityMiddleware",
                                     "whitenoise.middleware.WhiteNoiseMiddleware"]
    assert got["static"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert got["exempt"] == ["^healthz/$"]
