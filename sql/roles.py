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

``ensure_controller`` does the same for ``tcp_control``, the role of the dashboard's control actions
(``python3 tcp.py up --control``, docs/bots.md): it may read and write the bots and user indicators
(``bots``, ``user_indicators``) and append to their change log (``control_log``), and nothing else: no
other table, not even for reading, no ``UPDATE``/``DELETE`` of the log. Its password is
``DASHBOARD_CONTROL_DB_PASSWORD``, else random in ``DATA_DIR/secrets/dashboard-control``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

READER = "tcp_dashboard"
SECRET_FILE = Path("secrets") / "dashboard-reader"
PASSWORD_ENV = "DASHBOARD_DB_PASSWORD"

CONTROLLER = "tcp_control"
CONTROL_SECRET_FILE = Path("secrets") / "dashboard-control"
CONTROL_PASSWORD_ENV = "DASHBOARD_CONTROL_DB_PASSWORD"
CONTROL_TABLES = ("bots", "user_indicators")
"""What the control role reads and writes (``SELECT, INSERT, UPDATE, DELETE``)."""
CONTROL_LOG = "control_log"
"""What it appends to (``SELECT, INSERT``)."""
CONTROLLED = (*CONTROL_TABLES, CONTROL_LOG)

_IDENTITY_SEQUENCES = """
SELECT n.nspname, s.relname FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace n ON n.oid = s.relnamespace
WHERE d.refobjid IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
                     AND c.relname = ANY(%s))
  AND d.deptype IN ('a', 'i')
"""

_LOGIN = " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"


class RoleUnavailable(Exception):
    """A role of the dashboard could not be created or refreshed; the message says why."""


class ReaderUnavailable(RoleUnavailable):
    """The read-only role could not be created or refreshed."""


class ControllerUnavailable(RoleUnavailable):
    """The control role could not be created or refreshed."""


def reader_password(data_dir: Path) -> str:
    """The role's password: ``DASHBOARD_DB_PASSWORD``, else one created on first use and kept readable by
    this user only."""
    return _password(data_dir, PASSWORD_ENV, SECRET_FILE)


def _password(data_dir: Path, variable: str, secret_file: Path) -> str:
    given = os.environ.get(variable)
    if given:
        return given
    path = data_dir / secret_file
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
            _login(conn, READER, password)
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role))
            # Tables and views the migrations create later are readable too.
            conn.execute(
                sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(role)
            )
            conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
            can_create = _can_create(conn, READER)
    except psycopg.Error as error:
        raise ReaderUnavailable(" ".join(str(error).split())) from None
    if can_create:
        raise ReaderUnavailable(_PUBLIC_CREATE)
    return reader_url(url, password)


# PostgreSQL before 15 lets every role create in schema public; the dashboard's roles must not.
_PUBLIC_CREATE = (
    "every role may create tables in schema public on this server (PostgreSQL before 15): "
    "run REVOKE CREATE ON SCHEMA public FROM PUBLIC"
)


def _login(conn: psycopg.Connection[Any], name: str, password: str) -> None:
    """Create or refresh the login role ``name`` (no other power) and let it connect and see the schema."""
    role = sql.Identifier(name)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(sql.SQL(verb + _LOGIN).format(role, sql.Literal(password)))
    database = sql.Identifier(conn.info.dbname)
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))


def _can_create(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", (name,)).fetchone()
    return bool(row and row[0])


def ensure_controller(url: str, data_dir: Path) -> str:
    """Create or refresh the control role on the database of ``url`` (migrated: the control tables
    exist); returns the URL to write the bots and user indicators with."""
    password = _password(data_dir, CONTROL_PASSWORD_ENV, CONTROL_SECRET_FILE)
    role = sql.Identifier(CONTROLLER)
    tables = sql.SQL(", ").join(sql.Identifier(t) for t in CONTROL_TABLES)
    log = sql.Identifier(CONTROL_LOG)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn, conn.transaction():
            _login(conn, CONTROLLER, password)
            # Only what is granted here: whatever else was granted to the role before is taken back.
            conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(role))
            conn.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(role))
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(tables, role))
            conn.execute(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(log, role))
            for schema, sequence in conn.execute(_IDENTITY_SEQUENCES, (list(CONTROLLED),)).fetchall():
                name = sql.Identifier(schema, sequence)
                conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(name, role))
            can_create = _can_create(conn, CONTROLLER)
    except psycopg.Error as error:
        raise ControllerUnavailable(" ".join(str(error).split())) from None
    if can_create:
        raise ControllerUnavailable(_PUBLIC_CREATE)
    return role_url(url, CONTROLLER, password)


def reader_url(url: str, password: str) -> str:
    """``url`` with the read-only role's name and password."""
    return role_url(url, READER, password)


def role_url(url: str, name: str, password: str) -> str:
    """``url`` with the role ``name`` and its password."""
    parts = urlsplit(url)
    address = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{name}:{quote(password, safe='')}@{address}"))
