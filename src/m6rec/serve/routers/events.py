"""``POST /events``: one event or a JSON array of them, acknowledged after commit."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from m6rec.serve.batching import BatcherClosed
from m6rec.serve.deps import EngineDep, SettingsDep, WriteKey
from m6rec.serve.schemas import EventIn, EventsAck

router = APIRouter(tags=["events"])


@router.post("/events", status_code=201, response_model=EventsAck,
             dependencies=[WriteKey],
             responses={401: {}, 403: {}, 404: {}, 413: {}, 422: {}})
async def post_events(body: EventIn | list[EventIn], request: Request,
                engine: EngineDep,
                settings: SettingsDep) -> EventsAck:
    """Store one event, or a batch (a JSON array). All or nothing: the response comes after
    the commit, and the very next recommendation for the user reads these events."""
    events = body if isinstance(body, list) else [body]
    if not events:
        raise HTTPException(422, "empty batch")
    if len(events) > settings.max_batch:
        raise HTTPException(413, f"batch of {len(events)} events; at most {settings.max_batch}")
    rows = [e.model_dump() for e in events]
    try:  # committed together with the events that arrive meanwhile (one disk sync)
        future = engine.submit_events(rows)
    except BatcherClosed:  # this engine was swapped out by a reload just now
        future = None
    ids = (await run_in_threadpool(engine.add_events, rows) if future is None
           else await asyncio.wrap_future(future))
    request.app.state.metrics.events.inc(len(ids))
    return EventsAck(stored=len(ids), ids=ids)
