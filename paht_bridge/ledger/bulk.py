"""Many rows in one statement: on PostgreSQL, one JSON document that the server unpacks.

psycopg's executemany binds every parameter of every row in Python and sends each row as
a message of its own. For a page of 100 reports, their deliveries and their events, that
was most of ingest's CPU on a PostgreSQL ledger (a multi-row ``VALUES`` binds the same
2,500 parameters, and was slower still). Here the rows go out as one JSON text,
made by ``json.dumps`` in C. ``json_populate_recordset`` (for inserts) and
``json_to_recordset`` (for updates) turn it back into rows of the table's own types on the
server. SQLite's executemany loops in C already, so SQLite keeps it.

Every row of a call gives the same columns. A column a row leaves out is NULL, where
SQLAlchemy would apply a Python-side default: the callers give every column they need.
Datetimes must be timezone-aware, as ``UTCDateTime`` requires.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Connection, Table, any_, bindparam, select, text, update


def is_postgresql(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def insert_ids(connection: Connection, table: Table, rows: Sequence[dict[str, Any]], key: Sequence[str]) -> dict[tuple, int]:
    """Insert ``rows`` and return their ids by the unique ``key`` columns. PostgreSQL returns
    them from the INSERT itself. SQLite takes an executemany, and the ids are read back in
    one SELECT per group of the key's leading columns."""
    if not rows:
        return {}
    key = tuple(key)
    if is_postgresql(connection):
        statement = _insert_sql(connection, table, tuple(rows[0]), ("id", *key))
        return {tuple(found[1:]): found[0] for found in connection.execute(statement, {"rows": dumps(rows)})}
    connection.execute(table.insert(), list(rows))
    columns = [table.c[name] for name in key]
    prefix, last = columns[:-1], columns[-1]
    found: dict[tuple, int] = {}
    for group in {tuple(row[c.name] for c in prefix) for row in rows}:
        wanted = [row[last.name] for row in rows if tuple(row[c.name] for c in prefix) == group]
        query = select(table.c.id, *columns).where(last.in_(wanted), *(c == v for c, v in zip(prefix, group)))
        found.update({tuple(found_row[1:]): found_row[0] for found_row in connection.execute(query)})
    return found


def insert(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows``: one JSON statement on PostgreSQL, executemany elsewhere."""
    if not rows:
        return
    if is_postgresql(connection):
        connection.execute(_insert_sql(connection, table, tuple(rows[0]), ()), {"rows": dumps(rows)})
    else:
        connection.execute(table.insert(), list(rows))


def update_by_key(connection: Connection, table: Table, rows: Sequence[dict[str, Any]], key: str, column: str = "id") -> None:
    """Set each row's other values on the row of ``table`` whose ``column`` equals the row's
    ``key`` value (named apart from the column: SQLAlchemy reserves a column's name for its SET)."""
    if not rows:
        return
    names = tuple(rows[0])
    if is_postgresql(connection):
        connection.execute(_update_sql(connection, table, names, key, column), {"rows": dumps(rows)})
    else:
        connection.execute(_update_statement(table, names, key, column), list(rows))


def among(connection: Connection, column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values``. On PostgreSQL ``column = ANY(:array)``, the list one parameter: an
    IN list of a chunk's 100 ids is 100 parameters that SQLAlchemy renders and psycopg parses
    again on every call (a fifth of the deliver step's own CPU on a PostgreSQL ledger)."""
    if is_postgresql(connection):
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type), unique=True))
    return column.in_(list(values))


def dumps(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_jsonable, ensure_ascii=False, separators=(",", ":"))


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        return value.isoformat()
    raise TypeError(f"a ledger row holds a {type(value).__name__}, which has no JSON form")


_statements: dict[tuple, Any] = {}


def _insert_sql(connection: Connection, table: Table, columns: tuple[str, ...], returning: tuple[str, ...]) -> Any:
    key = ("insert", table.name, columns, returning)
    if (statement := _statements.get(key)) is None:
        quote = connection.dialect.identifier_preparer.quote
        names = ", ".join(quote(table.c[name].name) for name in columns)
        sql = (f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} "
               f"FROM json_populate_recordset(NULL::{quote(table.name)}, CAST(:rows AS json))")
        if returning:
            sql += " RETURNING " + ", ".join(quote(table.c[name].name) for name in returning)
        statement = _statements[key] = text(sql)
    return statement


def _update_sql(connection: Connection, table: Table, names: tuple[str, ...], key: str, column: str) -> Any:
    cache_key = ("update", table.name, names, key, column)
    if (statement := _statements.get(cache_key)) is None:
        dialect = connection.dialect
        quote = dialect.identifier_preparer.quote
        target = quote(table.name)
        given = ", ".join(f"{quote(name)} {(table.c[column] if name == key else table.c[name]).type.compile(dialect)}"
                          for name in names)
        sets = ", ".join(f"{quote(name)} = given.{quote(name)}" for name in names if name != key)
        sql = (f"UPDATE {target} SET {sets} FROM json_to_recordset(CAST(:rows AS json)) AS given({given}) "
               f"WHERE {target}.{quote(column)} = given.{quote(key)}")
        statement = _statements[cache_key] = text(sql)
    return statement


def _update_statement(table: Table, names: tuple[str, ...], key: str, column: str) -> Any:
    cache_key = ("executemany update", table.name, names, key, column)
    if (statement := _statements.get(cache_key)) is None:
        statement = _statements[cache_key] = (
            update(table).where(table.c[column] == bindparam(key))
            .values({name: bindparam(name, type_=table.c[name].type) for name in names if name != key}))
    return statement
