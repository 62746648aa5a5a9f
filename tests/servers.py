"""Real servers for integration tests: an ``mlflow server`` and a throwaway PostgreSQL cluster,
each on a free loopback port, each in its own process group that is stopped as a whole."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_group(process: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    """Stop ``process`` and everything it started (it leads its own session), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def wait_until(ready, process: subprocess.Popen, what: str, log: Path,
               timeout: float = 90) -> None:  # fmt: skip
    """Poll ``ready()`` until it is true; fail, with the end of the process's ``log``, if the
    process exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            state = (f"not ready after {timeout:.0f} s" if process.returncode is None
                     else f"exited with code {process.returncode}")  # fmt: skip
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} {state}:\n{tail}")
        time.sleep(0.5)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, cwd: str | os.PathLike,
                  artifacts: str | os.PathLike | None = None) -> Iterator[str]:  # fmt: skip
    """An ``mlflow server`` on ``backend_uri`` at a free 127.0.0.1 port; yields its URL.

    With ``artifacts``, the server keeps the runs' artifacts in that folder and clients send
    them over HTTP (``--artifacts-destination``), as a lab server does. Background job workers
    are off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``): nothing outlives the server.
    """
    port = free_port()
    bin_dir = os.path.dirname(sys.executable)
    command = [os.path.join(bin_dir, "mlflow"), "server", "--backend-store-uri", backend_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    if artifacts is not None:
        command += ["--artifacts-destination", str(artifacts)]
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",  # uvicorn
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # fmt: skip
    log = Path(cwd) / f"mlflow-server-{port}.log"
    with open(log, "wb") as output:  # its own process group: uvicorn workers stop with it
        server = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True,
                                  stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_until(healthy, server, f"mlflow server on {backend_uri}", log)
        yield url
    finally:
        stop_group(server)


def postgres_bin_dir() -> Path | None:
    """The folder of PostgreSQL's server programs: on ``PATH``, else Debian's versioned folder
    (``/usr/lib/postgresql/<version>/bin``, not on ``PATH``), the newest first."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    found.sort(key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def postgres_skip_reason() -> str | None:
    """Why a PostgreSQL cluster cannot be started here, or ``None``."""
    if postgres_bin_dir() is None:
        return ("PostgreSQL server not installed (no initdb on PATH or in "
                "/usr/lib/postgresql/*/bin): apt-get install postgresql")  # fmt: skip
    if os.geteuid() == 0 and _user("postgres") is None:
        return "running as root and there is no user 'postgres' to run the PostgreSQL server"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[cluster]')"
    return None


def _user(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


@contextlib.contextmanager
def postgres_database(name: str = "mlflow") -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free 127.0.0.1 port (no Unix socket), in a temporary
    folder, with database ``name``; yields its SQLAlchemy URL (driver psycopg 3, named: plain
    ``postgresql://`` means psycopg2 before SQLAlchemy 2.1). PostgreSQL refuses to run as root:
    as root, the server runs as user ``postgres`` (``runuser``)."""
    import psycopg

    bin_dir = postgres_bin_dir()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="recsys-postgres-"))
    if as_user:
        account = _user("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
    data = folder / "data"
    port = free_port()
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "--no-sync", "--encoding=UTF8"],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        log = folder / "postgres.log"
        with open(log, "wb") as output:
            server = subprocess.Popen(
                [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                 "-c", "fsync=off"],
                start_new_session=True, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_until(lambda: _accepts(port), server, "postgres", log)
            # autocommit: CREATE DATABASE cannot run inside a transaction
            with psycopg.connect(_dsn(port), autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{name}"')
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"
        finally:
            stop_group(server, signal.SIGINT)  # "fast" shutdown: SIGTERM waits for clients
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"


def _accepts(port: int) -> bool:
    import psycopg

    try:
        psycopg.connect(_dsn(port)).close()
        return True
    except psycopg.OperationalError:
        return False
