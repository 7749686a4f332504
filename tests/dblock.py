"""Hold a table's write lock from another connection, with writers here giving up quickly.

    with writes_blocked("playground_playgroundrun"):
        ... every write to that table from this process fails as "busy" within ~0.1 s ...

SQLite: the other connection holds the database's write lock (BEGIN IMMEDIATE) and this
process's new connections wait 0.1 s (busy timeout). PostgreSQL: the other connection holds
an EXCLUSIVE lock on the table (reads go on) and this process's sessions have lock_timeout
100 ms. Either way Django raises the OperationalError a real busy database raises. On
PostgreSQL only connections opened inside the block get the short wait: a thread that must
fail fast needs a fresh connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection
from django.db.backends.signals import connection_created


def _short_lock_timeout(sender, connection, **kwargs) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '100ms'")


@contextmanager
def writes_blocked(table: str) -> Iterator[None]:
    settings_dict = connection.settings_dict
    options = settings_dict.setdefault("OPTIONS", {})
    saved = options.get("timeout")
    connection.close()
    if connection.vendor == "sqlite":
        options["timeout"] = 0.1
        holder = sqlite3.connect(settings_dict["NAME"], isolation_level=None, timeout=5)
        holder.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        connection_created.connect(_short_lock_timeout)
        holder = psycopg.connect(
            dbname=settings_dict["NAME"],
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"],
            host=settings_dict["HOST"],
            port=settings_dict["PORT"],
        )
        holder.execute(f'LOCK TABLE "{table}" IN EXCLUSIVE MODE')
    try:
        yield
    finally:
        holder.rollback() if connection.vendor != "sqlite" else holder.execute("ROLLBACK")
        holder.close()
        connection_created.disconnect(_short_lock_timeout)
        if saved is None:
            options.pop("timeout", None)
        else:
            options["timeout"] = saved
        connection.close()
