"""The profile database (SQLite through sqlite-utils)."""

from edgeprof.store.db import Store, default_db_path, open_store
from edgeprof.store.migrations import SCHEMA_VERSION, migrate

__all__ = ["SCHEMA_VERSION", "Store", "default_db_path", "migrate", "open_store"]
