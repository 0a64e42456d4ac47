"""Items: post new or changed items (encoded and indexed before the response), similar items."""

from __future__ import annotations

import time

from fastapi import APIRouter, Path, Query, Request

from m6rec.serve.deps import EngineDep, ReadKey, SettingsDep, WriteKey, check_k
from m6rec.serve.schemas import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    ID_RULE,
    MAX_K,
    ItemAck,
    ItemIn,
    SimilarItems,
)

router = APIRouter(tags=["items"])


@router.post("/items", status_code=201, response_model=ItemAck,
             dependencies=[WriteKey], responses={401: {}, 403: {}, 422: {}})
def post_item(body: ItemIn, request: Request, engine: EngineDep) -> ItemAck:
    """Store an item with its text; for a text model it is encoded and added to the index before
    this returns, so the next recommendation can already hold it."""
    t0 = time.perf_counter()
    fields = {"title": body.title, **(body.fields or {})}
    if body.description:
        fields["description"] = body.description
    if body.categories:
        fields["categories"] = body.categories
    res = engine.add_item(body.item_id, fields)
    request.app.state.metrics.items.inc()
    return ItemAck(**res, seconds=time.perf_counter() - t0)


@router.get("/items/{item_id}/similar", response_model=SimilarItems,
            response_model_exclude_none=True, dependencies=[ReadKey],
            responses={401: {"description": "missing or wrong key"}, 404: {}, 422: {}})
def similar_items(engine: EngineDep, settings: SettingsDep,
                  item_id: str = Path(min_length=1, max_length=ID_MAX_LENGTH,
                                      pattern=ID_PATTERN, description=ID_RULE),
                  k: int = Query(10, ge=1, le=MAX_K)) -> dict:
    """Items closest to this one (cosine of item vectors, or of co-interactions for ID models)."""
    check_k(k, settings)
    return engine.similar_items(item_id, k)
