"""The dashboard's database role: it can read every TCP table and view, and write nothing.

``ensure_reader`` creates (or refreshes) the login role ``tcp_dashboard`` with ``SELECT`` on every table
and view of the schema, present and future, and no other privilege: no ``INSERT``/``UPDATE``/``DELETE``,
no ``CREATE`` in the schema, not a superuser, cannot create roles or databases. A session of it can lift
``default_transaction_read_only`` and still write nothing, because the privileges are not there.

Its password is ``DASHBOARD_DB_PASSWORD`` when that is set (a deployment that hands the dashboard its URL
itself, docker-compose.yml); otherwise random, kept in ``DATA_DIR/secrets/dashboard-reader`` (mode 0600).
It is set again at each call, so the same data directory (or variable) always reaches the role.
``tcp.py up`` and ``tcp.py migrate`` call it after the migrations; the dashboard then connects with
:func:`reader_url`. A server that refuses (the migrating role may not create roles) raises
``ReaderUnavailable`` with the reason; set ``DASHBOARD__DATABASE_URL`` to a SELECT-only role of your own
instead (docs/dashboard.md).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

READER = "tcp_dashboard"
SECRET_FILE = Path("secrets") / "dashboard-reader"
PASSWORD_ENV = "DASHBOARD_DB_PASSWORD"


class ReaderUnavailable(Exception):
    """The read-only role could not be created or refreshed; the message says why."""


def reader_password(data_dir: Path) -> str:
    """The role's password: ``DASHBOARD_DB_PASSWORD``, else one created on first use and kept readable by
    this user only."""
    given = os.environ.get(PASSWORD_ENV)
    if given:
        return given
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = secrets.token_urlsafe(24)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(password)
    return password


def ensure_reader(url: str, data_dir: Path) -> str:
    """Create or refresh the read-only role on the database of ``url``; returns the URL to read with."""
    password = reader_password(data_dir)
    role = sql.Identifier(READER)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(
                    verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}"
                ).format(role, sql.Literal(password))
            )
            database = sql.Identifier(conn.info.dbname)
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role))
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role))
            # Tables and views the migrations create later are readable too.
            conn.execute(
                sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(role)
            )
            conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
            can_create = conn.execute(
                "SELECT has_schema_privilege(%s, 'public', 'CREATE')", (READER,)
            ).fetchone()
    except psycopg.Error as error:
        raise ReaderUnavailable(" ".join(str(error).split())) from None
    if can_create and can_create[0]:
        # PostgreSQL before 15 lets every role create in schema public; the reader must not.
        raise ReaderUnavailable(
            "every role may create tables in schema public on this server (PostgreSQL before 15): "
            "run REVOKE CREATE ON SCHEMA public FROM PUBLIC"
        )
    return reader_url(url, password)


def reader_url(url: str, password: str) -> str:
    """``url`` with the read-only role's name and password."""
    parts = urlsplit(url)
    address = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{READER}:{quote(password, safe='')}@{address}"))
