"""The database guides' adapters, as the guides write them, against the persistence contract.

MariaDB (127.0.0.1:3306) and Redis (127.0.0.1:6379) run on the test machine;
each guide's test isolates itself (a database of its own / a key prefix of
its own, removed afterwards) and skips when its server is unreachable.
"""

from __future__ import annotations

from blueprint_support import guide_module

_mysql = guide_module("database/mysql", "tests/test_mysql_persistence.py")
_redis = guide_module("database/redis", "tests/test_redis_persistence.py")


class TestMySQLGuide(_mysql.TestMySQLPersistence):
    pass


class TestRedisGuide(_redis.TestRedisPersistence):
    pass
