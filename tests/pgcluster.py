"""A throwaway PostgreSQL server for tests: initdb in a temporary directory, listening on a Unix
socket there and on 127.0.0.1 at a free port, stopped and removed at the end.

PostgreSQL refuses to run as root, so as root the server programs run as `nobody` (the data
directory is theirs); otherwise they run as the current user. The binaries are looked up on
PATH, then in `pg_config --bindir`, then in Debian's /usr/lib/postgresql/<version>/bin.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

SUPERUSER = "postgres"


class PgUnavailable(RuntimeError):
    """The server cannot be set up here; the message says why and what to install."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and psql."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2] or 0)
    )
    candidates += [Path(p) for p in reversed(debian)]
    for cand in candidates:
        if all((cand / prog).is_file() for prog in ("initdb", "pg_ctl", "postgres", "psql")):
            return cand
    raise PgUnavailable(
        "PostgreSQL server programs (initdb, pg_ctl, postgres, psql) were not found on PATH, "
        "in `pg_config --bindir` or in /usr/lib/postgresql/*/bin; install them "
        "(Debian/Ubuntu: apt-get install -y postgresql)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgCluster:
    bindir: Path
    base: Path  # holds data/, the Unix socket and server.log
    port: int
    uid: int | None  # run server programs as this user (when we are root)
    gid: int | None

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    @classmethod
    def start(cls) -> PgCluster:
        bindir = find_bindir()
        base = Path(tempfile.mkdtemp(prefix="forensics-pg-"))
        uid = gid = None
        if os.geteuid() == 0:
            try:
                nobody = pwd.getpwnam("nobody")
            except KeyError:
                raise PgUnavailable("running as root and there is no user 'nobody'") from None
            uid, gid = nobody.pw_uid, nobody.pw_gid
            os.chown(base, uid, gid)
        os.chmod(base, 0o700)
        cluster = cls(bindir, base, free_port(), uid, gid)
        try:
            cluster._run(
                "initdb", "-D", str(cluster.data), "-U", SUPERUSER, "--auth-local=trust",
                "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            with (cluster.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"\nport = {cluster.port}\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{base}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 40\nshared_buffers = 32MB\n"
                    "password_encryption = 'scram-sha-256'\n"
                )
            cluster._run(
                "pg_ctl", "-D", str(cluster.data), "-l", str(cluster.log), "-w", "-t", "60",
                "start",
            )  # fmt: skip
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _run(self, prog: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs: dict = {}
        if self.uid is not None:
            kwargs = {"user": self.uid, "group": self.gid, "extra_groups": []}
        try:
            proc = subprocess.run(
                [str(self.bindir / prog), *args],
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
                cwd=self.base,
                **kwargs,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PgUnavailable(f"{prog} could not run: {exc}") from None
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise PgUnavailable(
                f"{prog} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n"
                f"{proc.stderr}\n{log}"
            )

    def stop(self) -> None:
        """Stop the server (if it runs) and remove everything; never raises."""
        try:
            if (self.data / "postmaster.pid").exists():
                try:
                    self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
                except PgUnavailable:
                    pid = int((self.data / "postmaster.pid").read_text().split()[0])
                    os.kill(pid, signal.SIGKILL)  # the server this cluster started
        except (OSError, ValueError, IndexError):
            pass
        shutil.rmtree(self.base, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """Over the Unix socket (trust authentication)."""
        return f"host={self.base} port={self.port} dbname={dbname} user={user}"

    def tcp_url(self, dbname: str, user: str, password: str | None = None) -> str:
        """Over TCP on 127.0.0.1 (scram-sha-256 password authentication)."""
        auth = f"{user}:{password}@" if password is not None else f"{user}@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kw) -> psycopg.Connection:
        return psycopg.connect(self.dsn(dbname), autocommit=True, **kw)

    def psql(self, *args: str, cwd: Path, env: dict[str, str] | None = None):
        """Run psql (as the current user: it only needs the socket)."""
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(
            [str(self.bindir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,
            env={**base_env, **(env or {})},
        )
