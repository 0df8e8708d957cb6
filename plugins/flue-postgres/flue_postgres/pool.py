"""A small pool of psycopg ``AsyncConnection``s (psycopg_pool is not a dependency of psycopg).

Connections are autocommit; a store method that needs several statements to
be atomic opens ``conn.transaction()``. A connection that comes back broken
or inside a transaction is closed instead of reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus


class ConnectionPool:
    def __init__(self, conninfo: str, *, size: int = 5, connect_timeout: float = 10.0, **kwargs: Any) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self._conninfo = conninfo
        self._kwargs = kwargs
        self._connect_timeout = connect_timeout
        self._size = size
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    async def _new(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=max(1, int(self._connect_timeout)),
            **self._kwargs,
        )

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._closed:
            raise RuntimeError("the PostgreSQL persistence adapter is closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._new()
            try:
                yield conn
            finally:
                reusable = (
                    not self._closed
                    and not conn.closed
                    and not conn.broken
                    and conn.info.transaction_status == TransactionStatus.IDLE
                )
                if reusable:
                    self._idle.append(conn)
                else:
                    await conn.close()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
