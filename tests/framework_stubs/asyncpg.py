"""Stand-in for asyncpg (PostgreSQL driver): used by the framework's Postgres message store."""

from _stand_in import module_getattr, placeholder

# Read at import time: the store's row converters are annotated with it.
Record = placeholder(__name__, "Record")

__getattr__ = module_getattr(__name__)
