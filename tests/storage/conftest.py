"""Store fixtures: every contract test runs against SQLite and a real local PostgreSQL.

PostgreSQL: ``M6REC_TEST_POSTGRES_URL`` when set; else a throwaway server is started on
127.0.0.1 (``initdb`` + ``pg_ctl``, installed with apt when absent) and stopped at the end of the
session. The PostgreSQL tests are skipped, with the reason, only when that is impossible.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(dirs[-1]) if dirs else None


def _install_postgres() -> str | None:
    """apt-get install postgresql; returns why it failed, or None."""
    if not shutil.which("apt-get"):
        return "pg_ctl not found and no apt-get to install PostgreSQL"
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True,
                       capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as e:
        return f"apt-get install postgresql failed: {e}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_postgres(tmp: Path):
    """(url, stop) of a fresh server on 127.0.0.1, or raise RuntimeError saying why not."""
    bindir = _pg_bin()
    if bindir is None:
        why = _install_postgres()
        bindir = _pg_bin()
        if bindir is None:
            raise RuntimeError(why or "PostgreSQL binaries not found after apt-get install")
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: use the postgres system user
        if not shutil.which("runuser"):
            raise RuntimeError("running as root and no runuser to start postgres as another user")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError as e:
            raise RuntimeError("running as root and there is no 'postgres' system user") from e
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(tmp, "postgres")
    data, port = tmp / "data", _free_port()

    def run(*args: str) -> None:
        res = subprocess.run(as_user + list(args), capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {res.stderr.strip()[-500:]}")

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "m6rec", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "log"), "-w", "-t", "60",
        "-o", f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=on", "start")

    def stop() -> None:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                  "stop"], capture_output=True, timeout=60)

    return f"postgresql://m6rec@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="session")
def postgres_url():
    yield from postgres_server()


def postgres_server():
    """Yields the URL of M6REC_TEST_POSTGRES_URL or of a throwaway local server (stopped and
    removed after); skips the test when PostgreSQL cannot be started."""
    url = os.environ.get("M6REC_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    tmp = Path(tempfile.mkdtemp(prefix="m6rec-pg-"))
    try:
        url, stop = start_postgres(tmp)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"PostgreSQL unavailable: {e}")
    try:
        yield url
    finally:
        stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _reset_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS events, items, users")


@pytest.fixture
def pg_url(postgres_url):
    """The local PostgreSQL, emptied."""
    _reset_postgres(postgres_url)
    return postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    url = request.getfixturevalue("postgres_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def store(store_url):
    from m6rec.storage import open_store

    s = open_store(store_url)
    yield s
    s.close()
