"""Request dependencies: the current engine, settings, and the API-key check for writes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from m6rec.serve.engine import Engine
from m6rec.serve.settings import ServeSettings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Required by every write endpoint.")


async def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    """The engine of this request: taken once, so a hot reload never changes it mid-request."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(503, "model not loaded")
    return engine


async def require_api_key(key: Annotated[str | None, Security(api_key_header)],
                    settings: Annotated[ServeSettings, Depends(get_settings)]) -> None:
    if not settings.api_key:
        raise HTTPException(403, "writes are disabled: start the server with --api-key")
    if not key or not hmac.compare_digest(key.encode(), settings.api_key.encode()):
        raise HTTPException(401, "missing or wrong X-API-Key header")


def check_k(k: int, settings: ServeSettings) -> None:
    if k > settings.max_k:
        raise HTTPException(422, f"k must be <= {settings.max_k}")


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
