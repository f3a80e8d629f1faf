"""PgBouncer in transaction pooling mode: the local stand-in for RDS Proxy.

Like the proxy it multiplexes client sessions over a few server connections at transaction
boundaries, checks the client's password itself, and refuses startup parameters it does not know
("unsupported startup parameter: options"), as RDS Proxy refuses command-line options. Used by
the AWS-shaped run in the tests and, by hand, in front of any PostgreSQL (README, "Through
PgBouncer"):

    python -m local.pgbouncer --server postgresql://postgres@/postgres?host=/path/to/socket/dir

Debian ships it as the `pgbouncer` package (PgBouncer 1.18 in bookworm).
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

NOT_INSTALLED = "PgBouncer is not installed: apt-get install pgbouncer (Debian), or put it on PATH"


def find_pgbouncer() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer") if Path(p).exists()), None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """One PgBouncer child process in front of the server `server_url` names; always stop() it."""

    def __init__(
        self,
        server_url: str,
        workdir: Path | None = None,
        *,
        password: str | None = None,
        client_idle_timeout_s: int = 0,
        server_idle_timeout_s: int = 600,
        port: int = 0,
        iam_users: Iterable[str] = (),
    ) -> None:
        parts = urlsplit(server_url)
        query = parse_qs(parts.query)
        self.user = parts.username or "postgres"
        # Clients authenticate to PgBouncer with this password (as functions do to the proxy with
        # the secret's); PgBouncer logs in to the server with the same pair.
        self.password = password or parts.password or secrets.token_urlsafe(16)
        self._server_host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        self._server_port = parts.port or 5432
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="pq-pgbouncer-"))
        # As RDS Proxy's IdleClientTimeout (0: never; PgBouncer's default) and the pool's own closing of
        # server connections idle this long (PgBouncer's default 600 s).
        self.client_idle_timeout_s = client_idle_timeout_s
        self.server_idle_timeout_s = server_idle_timeout_s
        # Users RDS Proxy would log in with an IAM token (end-to-end IAM authentication): PgBouncer cannot
        # check a SigV4 signature, so it lets them in whatever their password, and logs in to the server as
        # them (a server that trusts local connections, as the tests' does).
        self.iam_users = tuple(iam_users)
        self.host = "127.0.0.1"
        self._requested_port = port  # 0: any free port
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, database: str, *, password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql://{quote(self.user, safe='')}:{secret}@{self.host}:{self.port}/{database}?sslmode=disable"

    def _users(self) -> list[tuple[str, str]]:
        return [(self.user, self.password), *((user, "") for user in self.iam_users)]

    def _run_as(self) -> str | None:
        """PgBouncer refuses to run as root: run it as the owner of the server's socket directory."""
        if os.geteuid() != 0:
            return None
        owner = Path(self._server_host).stat().st_uid if self._server_host.startswith("/") else 0
        return pwd.getpwuid(owner).pw_name if owner != 0 else "nobody"

    def _write_config(self, run_as: str | None) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        userlist = self.workdir / "userlist.txt"
        # (a trusted user must still be one PgBouncer knows: in the auth file, with no password)
        userlist.write_text("".join(f'"{user}" "{password}"\n' for user, password in self._users()))
        hba = self.workdir / "hba.conf"
        trusted = f"host all {','.join(self.iam_users)} {self.host}/32 trust\n" if self.iam_users else ""
        hba.write_text(f"{trusted}host all all {self.host}/32 scram-sha-256\n")
        config = self.workdir / "pgbouncer.ini"
        config.write_text(
            f"""[databases]
* = host={self._server_host} port={self._server_port}

[pgbouncer]
listen_addr = {self.host}
listen_port = {self.port}
unix_socket_dir =
auth_type = hba
auth_hba_file = {hba}
auth_file = {userlist}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
; Nothing is ignored: a client that sends `options` (or any parameter PgBouncer does not track)
; is refused at startup, as RDS Proxy refuses command-line options.
ignore_startup_parameters =
; Its own health check on server connections idle this long; the AWS-shaped run tells it apart.
server_check_query = select 1
server_check_delay = 30
client_idle_timeout = {self.client_idle_timeout_s}
server_idle_timeout = {self.server_idle_timeout_s}
"""
        )
        for path in (userlist, hba, config):
            path.chmod(0o600)
            if run_as is not None:
                entry = pwd.getpwnam(run_as)
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return config

    def start(self, timeout_s: float = 10.0) -> PgBouncer:
        binary = find_pgbouncer()
        if binary is None:
            raise RuntimeError(NOT_INSTALLED)
        self.port = self._requested_port or _free_port()
        run_as = self._run_as()
        config = self._write_config(run_as)
        argv = [binary, *(["-u", run_as] if run_as else []), str(config)]
        with open(self.workdir / "pgbouncer.log", "ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {(self.workdir / 'pgbouncer.log').read_text()[-2000:]}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on {self.host}:{self.port}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # "safe shutdown": lets running transactions finish
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="PgBouncer in transaction mode in front of a PostgreSQL server")
    parser.add_argument("--server", required=True, help="the server's DSN (user, host or socket dir, port)")
    parser.add_argument("--database", default="payments", help="the database to print a DATABASE_URL for")
    parser.add_argument("--port", type=int, default=0, help="the port to listen on (default: a free one)")
    args = parser.parse_args()
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0 to 65535")

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # `kill` stops PgBouncer too, as Ctrl-C does
    with PgBouncer(args.server, port=args.port) as bouncer:
        print(f"PgBouncer (transaction pooling) on {bouncer.host}:{bouncer.port}; Ctrl-C stops it", flush=True)
        print(f"DATABASE_URL={bouncer.url(args.database)}", flush=True)
        try:
            while bouncer._process is not None and bouncer._process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
