"""Where the ledger lives and how it is opened, migrated and encrypted.

SQLite by default (``$PAHT_HOME/ledger.sqlite``, zero set-up); PostgreSQL in production
via ``PAHT_LEDGER_URL``. Personal data is encrypted with Fernet keys from
``PAHT_LEDGER_KEY`` (comma-separated: the first encrypts, all decrypt, which is how a key
is rotated); without it a development key file is created beside the SQLite ledger.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def paht_home() -> Path:
    home = Path(os.environ.get("PAHT_HOME", ".paht")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def ledger_url() -> str:
    return os.environ.get("PAHT_LEDGER_URL") or f"sqlite:///{paht_home() / 'ledger.sqlite'}"


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL lets the IOC page read while a task writes; busy_timeout makes concurrent writers wait, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: the configured ledger), one per URL per process."""
    return _engine(url or ledger_url())


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        eng = create_engine(url, connect_args={"timeout": 30})
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def sessions(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(engine(url), expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", (url or ledger_url()).replace("%", "%%"))
    return config


_migrated: set[str] = set()


def migrate(url: str | None = None) -> None:
    """Bring the ledger schema to the newest revision (idempotent; once per process)."""
    url = url or ledger_url()
    if url in _migrated:
        return
    config = alembic_config(url)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # not a word when there is nothing to do
    with engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    _migrated.add(url)


@lru_cache(maxsize=1)
def _cipher() -> MultiFernet:
    keys = [k.strip() for k in os.environ.get("PAHT_LEDGER_KEY", "").split(",") if k.strip()]
    if not keys:
        key_file = paht_home() / "ledger.key"
        if not key_file.exists():
            key_file.write_bytes(Fernet.generate_key())
            key_file.chmod(0o600)
            log.warning("no PAHT_LEDGER_KEY set: created a development key at %s", key_file)
        keys = [key_file.read_text().strip()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(value: str | None) -> str | None:
    return None if value is None else _cipher().encrypt(value.encode()).decode()


def decrypt(token: str | None) -> str | None:
    return None if token is None else _cipher().decrypt(token.encode()).decode()
