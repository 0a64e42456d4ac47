"""Per-user reads: recommendations (with query and explanations), similar users, history."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import StringConstraints

from m6rec.serve.batching import BatcherClosed
from m6rec.serve.deps import EngineDep, GeneratorDep, ReadKey, SettingsDep, WriteKey, check_k
from m6rec.serve.engine import RecRequest
from m6rec.serve.schemas import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    ID_RULE,
    MAX_K,
    ConversationIn,
    ConversationOut,
    History,
    ProfileIn,
    Recommendations,
    SimilarUsers,
    UserList,
)

router = APIRouter(prefix="/users", tags=["users"])
UserId = Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN, description=ID_RULE)
K = Query(10, ge=1, le=MAX_K, description="List length.")
READ = {401: {"description": "missing or wrong key"}, 422: {}}
Turn = Annotated[str, StringConstraints(min_length=1, max_length=500)]


@router.get("", response_model=UserList, dependencies=[ReadKey], responses=READ)
def list_users(engine: EngineDep, offset: int = Query(0, ge=0),
               limit: int = Query(20, ge=1, le=1000)) -> dict:
    """Ids of the training data's users (to browse; users known only from posted events are
    not listed)."""
    return engine.list_users(offset, limit)


@router.get("/{user_id}/recommendations", response_model=Recommendations,
            response_model_exclude_none=True, dependencies=[ReadKey],
            responses={**READ, 503: {"description": "phrasing=lm: the generator cannot load"}})
async def recommendations(
    request: Request, engine: EngineDep, settings: SettingsDep, generator: GeneratorDep,
    user_id: str = UserId,
    k: int = K,
    exclude: str | None = Query(None, max_length=10_000,
                                description="Comma-separated item ids to leave out."),
    query: Annotated[list[Turn] | None, Query(
        max_length=10,
        description="Free text that steers the result (text models). Repeat it for a "
                    "conversation (oldest first, the last request weighs most).")] = None,
    explain: bool = Query(False, description="Say why each item was chosen."),
    phrasing: Literal["template", "lm"] = Query(
        "template", description="With explain: ``lm`` has the generative LM write each "
                                "explanation from its evidence; a sentence naming anything "
                                "else is replaced by the template one (counted)."),
) -> JSONResponse:
    """Top-k from every event committed before this request; seen and excluded items left out.
    Users without events get results from ``query``, their profile text, or popularity."""
    check_k(k, settings)
    if phrasing == "lm" and not explain:
        raise HTTPException(422, "phrasing=lm phrases explanations: add explain=true")
    if phrasing == "lm" and k > settings.max_phrased:
        raise HTTPException(422, f"phrasing=lm: k must be <= {settings.max_phrased} (one "
                                 "generated text per item)")
    ex = tuple(x.strip() for x in exclude.split(",") if x.strip()) if exclude else ()
    turns = tuple(query) if query else None
    asked = RecRequest(user_id, k, ex, turns, explain)
    try:  # answered together with the requests that arrive meanwhile (serve/batching.py)
        future = engine.submit(asked)
    except BatcherClosed:  # this engine was swapped out by a reload just now: answer directly
        future = None
    if future is None:
        result = await run_in_threadpool(engine.recommend, user_id, k, list(ex), turns, explain)
    else:
        result = await asyncio.wrap_future(future)
    if phrasing == "lm":  # off the micro-batcher: generating takes seconds
        from m6rec.serve.generative import phrase_result

        result = await run_in_threadpool(phrase_result, engine, result, turns or (), generator)
        p = result["phrasing"]
        count = request.app.state.metrics.generated
        count.labels("explain", "replaced").inc(p["replaced"])
        count.labels("explain", "kept").inc(sum(_kept(it["lm"]) for it in result["items"]
                                                if "lm" in it))
    # the engine builds exactly the documented shape: skip re-validating it (the hot path)
    return JSONResponse(result)


def _kept(lm: dict) -> int:
    """Generated sentences that passed the check (``raw`` holds the checked sentences)."""
    from m6rec.explain.grounded import split_sentences

    return max(len(split_sentences(lm["raw"])) - lm["replaced"], 0)


@router.post("/{user_id}/conversation", response_model=ConversationOut,
             dependencies=[ReadKey],
             responses={**READ, 503: {"description": "the generator cannot load"}})
async def conversation(body: ConversationIn, request: Request, engine: EngineDep,
                       settings: SettingsDep, generator: GeneratorDep,
                       user_id: str = UserId) -> dict:
    """Talk about what you want: the messages so far (oldest first) go to the generative LM,
    which turns them into the request text that steers this user's ranking (the model still
    ranks, from every committed event); the reply names only the returned items (checked, a
    failing sentence replaced by a template)."""
    from m6rec.serve.generative import converse

    check_k(body.k, settings)
    out = await run_in_threadpool(converse, engine, user_id, body.messages, body.k, generator,
                                  settings.conversation_steer, settings.conversation_weight,
                                  settings.conversation_decay, settings.conversation_attributes)
    count = request.app.state.metrics.generated
    count.labels("reply", "replaced").inc(out["replaced"])
    count.labels("reply", "kept").inc(_kept({"raw": out["reply_raw"], **out}))
    return out


@router.get("/{user_id}/similar", response_model=SimilarUsers, dependencies=[ReadKey],
            responses={**READ, 404: {}})
def similar_users(engine: EngineDep, settings: SettingsDep, user_id: str = UserId,
                  k: int = K) -> dict:
    """Users with the most similar item sets (cosine), e.g. for friend or group suggestions."""
    check_k(k, settings)
    return engine.similar_users(user_id, k)


@router.get("/{user_id}/history", response_model=History, dependencies=[ReadKey],
            responses=READ)
def history(engine: EngineDep, user_id: str = UserId,
            limit: int = Query(50, ge=1, le=1000)) -> dict:
    """The user's newest interactions (training data and stored events), newest first."""
    return engine.user_history(user_id, limit)


@router.put("/{user_id}/profile", status_code=204, dependencies=[WriteKey],
            responses={401: {}, 403: {}, 422: {}})
def put_profile(body: ProfileIn, engine: EngineDep, user_id: str = UserId) -> None:
    """Store profile text (e.g. ``{"occupation": "chef"}``) for cold-start recommendations."""
    engine.store.put_user(engine.pseudonym(user_id), body.profile)
