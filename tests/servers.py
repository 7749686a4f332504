"""The servers scripts/test starts for the tests (RANA_TEST_POSTGRES_URL, RANA_TEST_REDIS_URL):
their URLs, and a throwaway PostgreSQL database for a live RANA."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest


def server_url(name: str) -> str:
    """A test server's URL from the environment; in CI its absence is a failure, not a skip."""
    url = os.environ.get(name, "")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not set: scripts/test starts the server and sets it")
        pytest.skip(f"no {name}: run through scripts/test")
    return url


def fresh_database(prefix: str) -> Iterator[str]:
    """Create a database, yield its URL, drop it (with any connection still open)."""
    import psycopg

    server = server_url("RANA_TEST_POSTGRES_URL")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
