"""Health, Prometheus metrics, hot reload, the API docs (served offline) and the dashboard."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from m6rec.serve.deps import EngineDep, WriteKey, require_metrics_key
from m6rec.serve.schemas import ReloadIn

router = APIRouter(tags=["system"])
STATIC = Path(__file__).resolve().parent.parent / "static"
#: Swagger UI and ReDoc bundles, mounted by `m6rec.serve.app.create_app`
DOCS_ASSETS = "/static/api-docs"
#: the docs pages may load nothing from elsewhere (ReDoc's sidebar links a logo on a CDN)
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline' blob:; worker-src 'self' blob:; "
            "font-src 'self' data:")


def docs_assets_dir() -> Path:
    """The Swagger UI and ReDoc files shipped by the ``fastapi-offline`` package (MIT; Swagger
    UI is Apache-2.0, ReDoc MIT), so the docs pages load nothing from the network."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


@router.get("/health")
def health(request: Request, engine: EngineDep) -> dict:
    """Model, catalogue and store status (public: no data, no file-system paths)."""
    from m6rec.serve.deps import needs_read_key

    try:
        engine.store.ping()
    except Exception as e:  # noqa: BLE001 - any driver error means the store is down
        raise HTTPException(503, f"store unavailable: {type(e).__name__}") from None
    return {"status": "ok", **engine.info(),
            "reads_need_key": needs_read_key(request.app.state.settings),
            # how far this process has applied the store's change feeds (replicas compare)
            "log": {"events": engine.catalogue.events_seen,
                    "items": engine.catalogue.item_cursor.offset}}


@router.get("/metrics", response_class=Response, dependencies=[Depends(require_metrics_key)],
            responses={401: {"description": "missing or wrong key (with keyed metrics)"}})
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    request.app.state.metrics.observe(request.app)
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


@router.post("/admin/reload", dependencies=[WriteKey],
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
            old.save_snapshot()  # the new engine replays only the log after it
        except OSError:
            pass  # then it replays the whole log
        try:
            new = build_engine(app.state.settings, app.state.store, target)
        except (FileNotFoundError, NotADirectoryError, ValueError, KeyError) as e:
            raise HTTPException(422, f"cannot load {target}: {e}") from None
        app.state.engine = new
        old.close()  # answers what it has queued; later requests on it are answered directly
        del old
        settle_heap()
        app.state.metrics.reloads.inc()
        return {"status": "reloaded", **new.info(), "model_dir": str(new.model_dir)}
    finally:
        app.state.swap_lock.release()


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard", include_in_schema=False)
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")


@router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI from this server's own files (``Authorize`` takes the key)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    app = request.app
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url, title=f"{app.title} API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css", swagger_favicon_url="/favicon.ico",
        swagger_ui_parameters={"persistAuthorization": True})
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page


@router.get("/redoc", include_in_schema=False)
def redoc(request: Request) -> HTMLResponse:
    """ReDoc from this server's own files (no web fonts)."""
    from fastapi.openapi.docs import get_redoc_html

    app = request.app
    page = get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} API",
                          redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                          redoc_favicon_url="/favicon.ico", with_google_fonts=False)
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page
