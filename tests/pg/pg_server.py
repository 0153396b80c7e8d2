#!/usr/bin/env python3
"""One real PostgreSQL 16 + pgvector for a whole test run (PyPI `pgserver`, which bundles both).

    pg_server.py start DIR   -> prints the TCP URL (postgresql://postgres@127.0.0.1:PORT/postgres)
    pg_server.py stop DIR
    pg_server.py restart DIR (the sync tests restart Postgres mid-follow)

As root, pgserver runs postgres as its own user `pgserver` on a unix socket; we turn on TCP on a
free port and wal_level=logical (ALTER SYSTEM), then restart with its bundled pg_ctl as that
user. pg_ctl always gets a log file, or the postmaster would hold the caller's stdout open.
"""
import os
import socket
import subprocess
import sys


def bindir():
    import pgserver  # noqa: imported late so `stop` works without it on a half-installed venv

    return os.path.join(os.path.dirname(pgserver.__file__), "pginstall", "bin")


def pg_ctl(data, *args):
    cmd = [os.path.join(bindir(), "pg_ctl"), "-D", data, "-l", os.path.join(data, "server.log"), "-w", *args]
    if os.geteuid() == 0:
        quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in cmd)
        subprocess.run(["su", "-s", "/bin/sh", "pgserver", "-c", quoted], check=True,
                       stdout=subprocess.DEVNULL)
    else:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(data):
    import pgserver

    port_file = os.path.join(data, "vectord_port")
    srv = pgserver.get_server(data, cleanup_mode=None)
    port = free_port()
    srv.psql(
        "ALTER SYSTEM SET listen_addresses='127.0.0.1';"
        f"ALTER SYSTEM SET port={port};"
        "ALTER SYSTEM SET wal_level=logical;"
        "ALTER SYSTEM SET max_replication_slots=64;"
        "ALTER SYSTEM SET max_wal_senders=64;"
        "ALTER SYSTEM SET max_connections=200;"
        "ALTER SYSTEM SET fsync=off;"
    )
    pg_ctl(data, "restart", "-o", f"-k {data}")
    with open(port_file, "w") as f:
        f.write(str(port))
    print(f"postgresql://postgres@127.0.0.1:{port}/postgres")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop", "restart"):
        sys.exit(__doc__)
    action, data = sys.argv[1], os.path.abspath(sys.argv[2])
    if action == "start":
        start(data)
    elif action == "restart":
        pg_ctl(data, "restart", "-o", f"-k {data}")
    else:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            pg_ctl(data, "stop", "-m", "fast")


if __name__ == "__main__":
    main()
