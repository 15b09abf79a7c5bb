"""The handlers process: consumes domain events and issues follow-up commands.

At-least-once: offsets are committed only after every follow-up command of a batch was
accepted by the actors; a redelivered event produces the same command id again, which the
actors recognise, so the effect happens once.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import orjson
from aiokafka.structs import OffsetAndMetadata
from opentelemetry.trace import SpanKind

from bus import maintenance as cleanup
from bus.actors.commandbus import BusUnavailable, CommandBus
from bus.actors.wake import Nudger
from bus.blobs.errors import BlobStoreUnavailable
from bus.blobs.factory import open_blob_store
from bus.config.logs import get_logger
from bus.config.settings import Settings
from bus.config.tracing import current_traceparent, span
from bus.kafka.clients import header, make_consumer, poll_until_stopped
from bus.store.eventstore import PostgresEventStore
from domain.errors import DomainError
from domain.events import RecordedEvent
from handlers import files_from_uploads

log = get_logger(__name__)


class Handlers:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.store = PostgresEventStore(pool)
        # Completing an upload needs the sha256 of its bytes (see files_from_uploads).
        self.blobs = open_blob_store(settings.blobs_url, settings)
        self.group_id = f"{settings.topic_prefix}-handlers"

    async def run(self, stop: asyncio.Event) -> None:
        bus = CommandBus(self.settings, nudge=Nudger(self.pool))  # wakes idle actors
        await bus.start()
        consumer = make_consumer(
            self.settings, self.settings.topic("uploads"), group_id=self.group_id
        )
        await consumer.start()
        # Expiry and garbage collection on a timer, next to the consumer; the advisory lock
        # inside keeps it to one run at a time however many handlers processes there are.
        cleaner = asyncio.create_task(
            cleanup.run_periodically(self.settings, self.pool, bus, stop, self.blobs)
        )
        try:
            while not stop.is_set():
                batch = await poll_until_stopped(consumer, stop)
                if batch is None:
                    break
                for tp, records in batch.items():
                    done = None
                    for rec in records:
                        if not await self._handle(bus, rec.value, rec.headers):
                            break  # retry this record later: do not commit past it
                        done = rec.offset
                    if done is not None:
                        await consumer.commit({tp: OffsetAndMetadata(done + 1, "")})
                    if done != records[-1].offset:
                        consumer.seek(tp, (done + 1) if done is not None else records[0].offset)
                        await asyncio.sleep(1)  # back off before retrying a failed command
        finally:
            cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await cleaner
            with contextlib.suppress(Exception):
                await consumer.stop()
            await bus.stop()
            await self.blobs.close()

    async def _handle(self, bus: CommandBus, value: bytes, headers: object) -> bool:
        try:
            ev = RecordedEvent.from_envelope(orjson.loads(value), header(headers, "traceparent"))  # type: ignore[arg-type]
        except Exception as e:
            log.warning("malformed event skipped", error=str(e))
            return True
        try:
            cmd = await files_from_uploads.command_for(ev, self.store, self.blobs)
        except BlobStoreUnavailable as e:
            log.warning("blob store unavailable; will retry", error=str(e))
            return False
        if cmd is None:
            return True
        try:
            with span(f"handle {ev.type}", ev.traceparent, SpanKind.CONSUMER, event_id=ev.id):
                await bus.send(
                    cmd, correlation_id=ev.correlation_id, traceparent=current_traceparent()
                )
        except DomainError as e:
            log.warning("follow-up command refused", event_type=ev.type, code=e.code)
            return True
        except BusUnavailable as e:
            log.warning("follow-up command not confirmed; will retry", error=str(e))
            return False
        return True
