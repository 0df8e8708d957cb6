"""The database guides' adapters, as the guides write them, against the persistence contract.

MariaDB (127.0.0.1:3306), Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) run on the
test machine (the postgres guide uses the flue-postgres plugin, installed by .ci/run);
each guide's test isolates itself (a database of its own / a key prefix of
its own, removed afterwards) and skips when its server is unreachable.
"""

from __future__ import annotations

import pytest
from blueprint_support import guide_module

_mysql = guide_module("database/mysql", "tests/test_mysql_persistence.py")
_redis = guide_module("database/redis", "tests/test_redis_persistence.py")
_postgres = guide_module("database/postgres", "tests/test_postgres_persistence.py")


class TestMySQLGuide(_mysql.TestMySQLPersistence):
    pass


class TestRedisGuide(_redis.TestRedisPersistence):
    pass


@pytest.mark.postgres
class TestPostgresGuide(_postgres.TestPostgresPersistence):
    pass
