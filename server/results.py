"""Waiting for job results: ONE Redis pub/sub subscription per server process, per-job Futures.

Workers PUBLISH a finished job's id on contract.DONE_CHANNEL. A waiting Verify call holds an
asyncio Future here and costs neither a thread nor a Redis poll. The Future is registered
before the job is enqueued, so no publish can be missed while the subscription is up; after
every (re)subscribe the result keys of all waiting jobs are checked once, which covers the
publishes sent while it was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
import redis.exceptions

from worker.contract import DONE_CHANNEL, result_key

log = logging.getLogger(__name__)

# A silent connection is PINGed at this period so a dead link is found and re-made.
HEALTH_CHECK_S = 10.0
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 2.0
CONNECT_TIMEOUT_S = 2.0


class ResultWaiter:
    """Resolves a Future when a worker announces that a job has ended."""

    def __init__(self, redis_url: str) -> None:
        self._client = aioredis.Redis.from_url(
            redis_url,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            health_check_interval=HEALTH_CHECK_S,
        )
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        """Start listening in the background; a down Redis is retried, never fatal."""
        self._task = asyncio.create_task(self._listen(), name="result-waiter")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
        await self._client.aclose()

    def expect(self, job_id: str) -> asyncio.Future[None]:
        """Arm (or re-arm) the Future a job's announcement resolves. Call before enqueueing."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = future
        return future

    def forget(self, job_id: str) -> None:
        future = self._waiting.pop(job_id, None)
        if future is not None and not future.done():
            future.cancel()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _announce(self, job_id: str) -> None:
        future = self._waiting.pop(job_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def _listen(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(DONE_CHANNEL)
                await self._catch_up()
                self.subscribed.set()
                log.info("waiting for results on Redis channel %s", DONE_CHANNEL)
                delay = RECONNECT_MIN_S
                while True:
                    message = await pubsub.get_message(timeout=HEALTH_CHECK_S)
                    if message is not None and message["type"] == "message":
                        self._announce(_text(message["data"]))
            except asyncio.CancelledError:
                raise
            except (redis.exceptions.RedisError, OSError) as exc:
                if self.subscribed.is_set():
                    log.warning("result subscription lost (%s); re-subscribing", exc)
                self.subscribed.clear()
            except Exception:  # noqa: BLE001 - the listener must survive anything
                log.exception("result subscription failed; re-subscribing")
                self.subscribed.clear()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _catch_up(self) -> None:
        """Resolve waiting jobs whose result was written while we were not subscribed."""
        job_ids = list(self._waiting)
        if not job_ids:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(result_key(job_id))
            found = await pipe.execute()
        for job_id, exists in zip(job_ids, found, strict=True):
            if exists:
                self._announce(job_id)


def _text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data
