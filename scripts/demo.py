"""`make demo`: the whole product on this machine, as a new user would run it.

Starts Redis if it is down, migrates, creates a demo admin, starts an embed worker, an
index worker and beat, imports 2,000 Fashion-MNIST garments through them, prints the
top 10 for a held-out query and writes its sheet, then serves the storefront and admin
on 127.0.0.1:8000 until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
DATA = Path(os.environ.get("LOOKALIKE_DATA_DIR", ROOT / "var")).resolve()
ENV = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "LOOKALIKE_DATA_DIR": str(DATA),
       "PYTHONPATH": str(ROOT)}
BROKER = ENV.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=ENV, check=True)


def ensure_redis() -> None:
    """Start a local Redis if nothing answers (the broker the workers use)."""
    if BROKER.startswith("redis://127.0.0.1:6379"):
        subprocess.run([str(ROOT / "scripts" / "ensure-redis.sh")], check=True)
    redis.Redis.from_url(BROKER).ping()


def ensure_admin() -> tuple[str, str]:
    """A superuser 'demo' whose password is kept in var/demo-admin.txt across runs."""
    secret_file = DATA / "demo-admin.txt"
    if secret_file.exists():
        password = secret_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(12)
        secret_file.write_text(password + "\n")
        secret_file.chmod(0o600)
    code = (
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        "user, _ = User.objects.get_or_create(username='demo', defaults={'email': 'demo@example.com'})\n"
        "user.is_staff = user.is_superuser = True\n"
        f"user.set_password({password!r})\n"
        "user.save()\n"
    )
    manage("shell", "-c", code)
    return "demo", password


def start(name: str, *argv: str) -> subprocess.Popen:
    log = (DATA / "logs" / f"{name}.log").open("ab")
    return subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, sig)


def stop(processes: list[subprocess.Popen]) -> None:
    """Warm shutdown of the workers and beat (each leads its own process group)."""
    for proc in processes:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)


def write_query_image(path: Path) -> None:
    from similarity.fashion_mnist import load_split, to_photo

    images, _ = load_split("test")
    to_photo(images[1], size=224).save(path)  # a held-out pullover: not in the catalog


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=200, help="garments per class (10 classes)")
    parser.add_argument("--no-serve", action="store_true", help="stop after the sheet")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "logs").mkdir(exist_ok=True)
    ensure_redis()
    say("Migrating the database")
    manage("migrate", "--noinput", "-v", "0")
    user, password = ensure_admin()

    celery = [PY, "-m", "celery", "-A", "workers.app"]
    processes = [
        start("worker-embed", *celery, "worker", "-Q", "embed", "-c", "1", "-n", "embed@%h", "-l", "info"),
        start("worker-index", *celery, "worker", "-Q", "index", "-c", "1", "-n", "index@%h", "-l", "info"),
        start("beat", *celery, "beat", "-l", "info"),
    ]
    print(f"workers and beat started; logs in {DATA / 'logs'}")
    try:
        say(f"Importing {args.per_class * 10} Fashion-MNIST garments through the workers")
        manage("import_garments", "--fashion-mnist", "--split", "train",
               "--per-class", str(args.per_class), "--skip-existing")

        # Fits the category-aware projection (LOOKALIKE_SPACE=lda-blend) on the catalog and
        # rewrites every list in it: what the nightly beat rebuild does.
        say("Full rebuild: fit the projection on the catalog's categories, rewrite every list")
        manage("rebuild_similarity")

        query = DATA / "demo-query.png"
        sheet = DATA / "demo-sheet.png"
        write_query_image(query)
        say(f"Top 10 for a held-out photo ({query})")
        manage("similar", str(query), "-k", "10", "--sheet", str(sheet))

        if args.no_serve:
            return 0
        say(f"Serving http://127.0.0.1:{args.port}/  (admin: http://127.0.0.1:{args.port}/admin/)")
        print(f"admin login: {user} / {password}")
        print(f"search by photo: http://127.0.0.1:{args.port}/search/   Ctrl-C to stop")
        # The web server stays in our process group, so Ctrl-C reaches it directly.
        web = subprocess.Popen([PY, "manage.py", "runserver", f"127.0.0.1:{args.port}", "--noreload"],
                               cwd=ROOT, env=ENV)
        try:
            web.wait()
        finally:
            if web.poll() is None:
                web.terminate()
                web.wait(timeout=20)
    except KeyboardInterrupt:
        print("\nstopping the workers and beat…")
    finally:
        stop(processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
