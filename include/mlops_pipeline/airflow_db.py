"""SQLite settings for the embedded Airflow metadata DB (never used with Postgres).

Several Airflow processes (scheduler, DAG processor, api-server, CLI) write to one SQLite file.
With the default journal and a 5 s busy timeout a CLI write such as ``airflow backfill create``
can fail with "database is locked" while the scheduler holds the lock. WAL mode (set once at
setup, it persists in the file) lets readers proceed during a write, and a longer busy timeout
makes writers wait their turn instead of failing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SQLITE_CONNECT_ARGS = {"timeout": 60}
SQLITE_CONNECT_ARGS_ASYNC = {"timeout": 60}


def enable_wal(db_file: Path) -> str:
    with sqlite3.connect(db_file, timeout=60) as connection:
        return connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
