"""Health, Prometheus metrics, hot reload and the dashboard page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from m6rec.serve.deps import EngineDep, require_api_key
from m6rec.serve.schemas import ReloadIn

router = APIRouter(tags=["system"])
STATIC = Path(__file__).resolve().parent.parent / "static"


@router.get("/health")
def health(request: Request, engine: EngineDep) -> dict:
    """Model, catalogue and store status."""
    try:
        engine.store.ping()
    except Exception as e:  # noqa: BLE001 - any driver error means the store is down
        raise HTTPException(503, f"store unavailable: {type(e).__name__}") from None
    return {"status": "ok", **engine.info()}


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    request.app.state.metrics.observe(request.app)
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


@router.post("/admin/reload", dependencies=[Depends(require_api_key)],
             responses={401: {}, 403: {}, 422: {}, 409: {}})
def reload(request: Request, body: ReloadIn | None = None) -> dict:
    """Load a model directory (default: the current one) and swap it in. Requests in flight
    finish on the engine they started with; the store is kept."""
    from m6rec.serve.app import build_engine, settle_heap

    app = request.app
    if not app.state.swap_lock.acquire(blocking=False):
        raise HTTPException(409, "a reload or an online update is running")
    try:
        old = app.state.engine
        target = Path(body.model_dir) if body and body.model_dir else old.model_dir
        try:
            new = build_engine(app.state.settings, app.state.store, target)
        except (FileNotFoundError, NotADirectoryError, ValueError, KeyError) as e:
            raise HTTPException(422, f"cannot load {target}: {e}") from None
        app.state.engine = new
        old.close()  # answers what it has queued; later requests on it are answered directly
        del old
        settle_heap()
        app.state.metrics.reloads.inc()
        return {"status": "reloaded", **new.info()}
    finally:
        app.state.swap_lock.release()


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard", include_in_schema=False)
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")
