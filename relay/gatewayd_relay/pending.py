"""Requests waiting for a gateway's answer in this process, by command id.

Every process receives every `cmd/result`, so the process holding the waiting request is
always among them; a result for a command another process sent simply finds no waiter here.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Pending:
    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def expect(self, cid: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = fut
        return fut

    def forget(self, cid: str) -> None:
        self._waiting.pop(cid, None)

    def resolve(self, result: dict[str, Any]) -> bool:
        cid = result.get("id")
        fut = self._waiting.pop(cid, None) if isinstance(cid, str) else None
        if fut is None or fut.done():
            return False
        fut.set_result(result)
        return True
