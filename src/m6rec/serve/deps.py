"""Request dependencies: the current engine, settings, and the key checks (reads, writes)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from m6rec.serve.engine import Engine
from m6rec.serve.generative import LazyGenerator
from m6rec.serve.settings import ServeSettings

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False,
    description="The API key (reads and writes) or the read-only key (reads). Writes need the "
                "API key; with any key configured, data reads need one of the two.")


async def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    """The engine of this request: taken once, so a hot reload never changes it mid-request."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(503, "model not loaded")
    return engine


def _is(key: str | None, expected: str | None) -> bool:
    return bool(key and expected) and hmac.compare_digest(key.encode(), expected.encode())


def needs_read_key(settings: ServeSettings) -> bool:
    """Whether data reads need a key: as soon as either key is configured."""
    return bool(settings.api_key or settings.read_key)


async def require_api_key(key: Annotated[str | None, Security(api_key_header)],
                          settings: Annotated[ServeSettings, Depends(get_settings)]) -> None:
    """Writes: the API key (401 without or with a wrong one; 403 for the read-only key, or
    when the server has no API key)."""
    if not settings.api_key:
        raise HTTPException(403, "writes are disabled: start the server with --api-key")
    if _is(key, settings.api_key):
        return
    if _is(key, settings.read_key):
        raise HTTPException(403, "this key is read-only; writes need the API key")
    raise HTTPException(401, "missing or wrong X-API-Key header")


async def require_read_key(key: Annotated[str | None, Security(api_key_header)],
                           settings: Annotated[ServeSettings, Depends(get_settings)]) -> None:
    """Data reads: the API key or the read-only key, once either is configured (401 else)."""
    if not needs_read_key(settings) or _is(key, settings.api_key) or _is(key, settings.read_key):
        return
    raise HTTPException(401, "missing or wrong X-API-Key header (reads need a key)")


def check_k(k: int, settings: ServeSettings) -> None:
    if k > settings.max_k:
        raise HTTPException(422, f"k must be <= {settings.max_k}")


ReadKey = Depends(require_read_key)
WriteKey = Depends(require_api_key)


async def get_generator(request: Request) -> LazyGenerator:
    """The app's generative LM (`m6rec.serve.generative.LazyGenerator`: loaded on first use)."""
    return request.app.state.generator


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
GeneratorDep = Annotated[LazyGenerator, Depends(get_generator)]


async def require_metrics_key(key: Annotated[str | None, Security(api_key_header)],
                              settings: Annotated[ServeSettings, Depends(get_settings)]) -> None:
    """``/metrics``: public unless ``keyed_metrics``; then as a data read."""
    if settings.keyed_metrics:
        await require_read_key(key, settings)
