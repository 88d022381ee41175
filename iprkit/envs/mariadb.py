"""A throwaway MariaDB server on loopback, for the InterCode-SQL env and the tests.

Debian's ``mariadb-server`` is started with ``--no-defaults``, its data under a
temporary folder, listening on 127.0.0.1 at a free port. The Spider dump is loaded as
root; agents connect as a read-only user (``SELECT`` on the task databases only), so
no agent query can change what later episodes see. Users with their own server pass
its URL instead (``mysql://user:password@host:port``).
"""

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from iprkit.errors import IprkitError

RO_USER, RO_PASSWORD = "iprkit_ro", "iprkit_ro"


def _which(*names: str) -> str | None:
    for n in names:
        for d in (None, "/usr/sbin", "/usr/local/sbin"):
            p = shutil.which(n, path=d) if d else shutil.which(n)
            if p:
                return p
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalMariaDB:
    """Start, load and stop a private MariaDB server. Use as a context manager."""

    def __init__(self, workdir: str | Path | None = None, port: int | None = None):
        self.server = _which("mariadbd", "mysqld")
        self.install_db = _which("mariadb-install-db", "mysql_install_db")
        self.client = _which("mariadb", "mysql")
        if not (self.server and self.install_db and self.client):
            raise IprkitError("sql: no MariaDB server found. Install Debian's `mariadb-server` "
                              "(`apt-get install mariadb-server`), or pass the URL of your own server "
                              "(--sql-url / IPRKIT_SQL_URL, mysql://user:password@host:port).")
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="iprkit-mariadb-"))
        self.port = port or _free_port()
        self.socket = str(self.dir / "mysqld.sock")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "LocalMariaDB":
        data = self.dir / "data"
        user = ["--user=root"] if os.geteuid() == 0 else []
        if not data.exists():
            r = subprocess.run([self.install_db, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
                                "--skip-test-db", "--lower-case-table-names=1", *user], capture_output=True, text=True)
            if r.returncode != 0:
                raise IprkitError(f"sql: mariadb-install-db failed in {data}:\n{r.stderr[-2000:]}")
        self.log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [self.server, "--no-defaults", f"--datadir={data}", f"--socket={self.socket}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--pid-file={self.dir / 'mysqld.pid'}", "--skip-log-bin",
             "--innodb-buffer-pool-size=64M",
             # as InterCode's docker-compose: Spider's queries spell table names in any case
             "--lower-case-table-names=1", *user], stdout=self.log, stderr=self.log)
        atexit.register(self.stop)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise IprkitError(f"sql: MariaDB exited at start; see {self.dir / 'server.log'}.")
            if self._sql("SELECT 1", check=False).returncode == 0:
                return self
            time.sleep(0.3)
        self.stop()
        raise IprkitError(f"sql: MariaDB did not answer within {timeout}s; see {self.dir / 'server.log'}.")

    def _sql(self, sql: str, check: bool = True, stdin=None) -> subprocess.CompletedProcess:
        r = subprocess.run([self.client, "--no-defaults", f"--socket={self.socket}", "-uroot", *(["-e", sql] if sql else [])],
                           stdin=stdin, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise IprkitError(f"sql: loading the server failed: {r.stderr[-2000:]}")
        return r

    def load_dump(self, path: str | Path) -> None:
        """Load a MySQL dump (the Spider databases) as root."""
        path = Path(path)
        if not path.exists():
            raise IprkitError(f"sql: dump {path} not found; point --sql-data at InterCode's data folder.")
        with path.open() as f:
            self._sql("", stdin=f)

    def grant_read_only(self, databases: list[str]) -> str:
        """Create the read-only agent user; return its URL."""
        stmts = [f"CREATE USER IF NOT EXISTS '{RO_USER}'@'%' IDENTIFIED BY '{RO_PASSWORD}'"]
        stmts += [f"GRANT SELECT, SHOW VIEW ON `{db}`.* TO '{RO_USER}'@'%'" for db in sorted(set(databases))]
        self._sql("; ".join(stmts) + "; FLUSH PRIVILEGES")
        return self.url(RO_USER, RO_PASSWORD)

    def url(self, user: str, password: str) -> str:
        return f"mysql://{user}:{password}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
