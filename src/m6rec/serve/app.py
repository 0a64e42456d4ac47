"""The FastAPI application: ``create_app(settings)``; the store, model and index load in
``lifespan``. Every client error is JSON ``{"error": ..., "detail": ...}`` with its 4xx status.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from m6rec.serve.engine import Engine, NotFound, Unsupported
from m6rec.serve.generative import GeneratorUnavailable, LazyGenerator
from m6rec.serve.replication import Follower, ReplicationSpec
from m6rec.serve.settings import ServeSettings
from m6rec.serve.updates import OnlineUpdates, UpdateSpec
from m6rec.storage import Store, open_store

log = logging.getLogger("m6rec.serve")

REASONS = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found",
           405: "method not allowed", 409: "conflict", 413: "payload too large",
           415: "unsupported media type", 422: "invalid request", 503: "unavailable"}


def build_engine(settings: ServeSettings, store: Store, model_dir: Path | None = None) -> Engine:
    from m6rec.serve.snapshot import default_path

    snapshot = (Path(settings.snapshot) if settings.snapshot
                else None if settings.snapshot == "" else default_path(settings.db))
    return Engine(model_dir or settings.model_dir, store, data=settings.data,
                  index=settings.index, faiss_threshold=settings.faiss_threshold,
                  pseudonymise_key=settings.pseudonymise_key,
                  history_limit=settings.history_limit, query_weight=settings.query_weight,
                  explain_history=settings.explain_history, snapshot=snapshot,
                  new_items=settings.new_items, shared_log=replication_spec(settings).on)


def replication_spec(settings: ServeSettings) -> ReplicationSpec:
    return ReplicationSpec.resolve(settings.replication, settings.db, settings.replication_poll,
                                   settings.workers)


class Metrics:
    """Prometheus collectors of one app (own registry: several apps may live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("m6rec_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("m6rec_http_request_seconds", "Request latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5))
        self.events = Counter("m6rec_events_stored", "Events committed", registry=self.registry)
        self.items = Counter("m6rec_items_posted", "Items posted", registry=self.registry)
        self.reloads = Counter("m6rec_model_reloads", "Hot reloads", registry=self.registry)
        self.generated = Counter(
            "m6rec_generated_sentences", "Sentences the generative LM wrote, by use (explain, "
            "reply) and outcome (kept; replaced by the template for naming something outside "
            "the evidence)", ["use", "outcome"], registry=self.registry)
        g = {name: Gauge(f"m6rec_{name}", doc, registry=self.registry) for name, doc in (
            ("model_version", "Online updates applied to the serving model since it was loaded"),
            ("model_update_lag_seconds", "Age of the oldest committed event not yet learned "
                                         "by the model (0: up to date)"),
            ("model_update_pending_events", "Committed events not yet learned by the model"),
            ("model_update_seconds", "Duration of the newest online update"),
            ("model_update_failures", "Online updates that failed (the previous model serves)"),
            ("user_cache_hits", "Requests answered with a cached user vector"),
            ("user_cache_misses", "Requests whose user vector was encoded"),
            ("replication_lag_seconds", "Seconds since the change feed of the database was "
                                        "last read (other processes' writes)"),
            ("replication_applied", "Items and events applied from the change feed (other "
                                    "processes' writes; our own when the feed got there first)"),
            ("replication_failures", "Reads of the change feed that failed"),
            ("replication_reconnects", "Times the LISTEN connection was re-established"))}
        self.gauges = g

    def observe(self, app) -> None:
        """Set the gauges from the app's engine and online updater (at scrape time)."""
        engine, updates = app.state.engine, getattr(app.state, "updates", None)
        g = self.gauges
        if engine is not None:
            g["model_version"].set(engine.model_version)
            g["user_cache_hits"].set(engine.cache_hits)
            g["user_cache_misses"].set(engine.cache_misses)
        follower = getattr(app.state, "follower", None)
        if follower is not None:
            g["replication_lag_seconds"].set(follower.lag_seconds)
            g["replication_applied"].set(follower.applied)
            g["replication_failures"].set(follower.failures)
            g["replication_reconnects"].set(follower.reconnects)
        if updates is not None:
            g["model_update_lag_seconds"].set(updates.lag_seconds)
            g["model_update_pending_events"].set(updates.pending)
            g["model_update_seconds"].set(updates.last_seconds)
            g["model_update_failures"].set(updates.failures)


class Measure:
    """Count requests and time them per route template (a plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` costs a task and a stream per request on the hot path)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500
        where = scope.get("path"), scope.get("root_path", "")  # a mount rewrites them

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or _route_label(scope, *where)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, path, str(status)).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - t0)


def _route_label(scope, path: str, root_path: str) -> str:
    """The route template of a request that FastAPI did not tag (Starlette's own routes:
    ``/openapi.json``, mounted static files): the first route that matches it fully; else
    ``unmatched`` (so a scan of random paths adds one label, not one per path)."""
    from starlette.routing import Match

    app = scope.get("app")
    scope = {**scope, "path": path, "root_path": root_path}
    for route in getattr(app, "routes", ()):
        if route.matches(scope)[0] == Match.FULL:
            return getattr(route, "path", "unmatched")
    return "unmatched"


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 (declared or streamed)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_error(send, 413, f"body over {self.limit} bytes")
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _send_error(send, 413, f"body over {self.limit} bytes")


class _TooLarge(Exception):
    pass


async def _send_error(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"error": REASONS.get(status, "error"), "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def error(status: int, detail: object) -> JSONResponse:
    return JSONResponse({"error": REASONS.get(status, "error"), "detail": detail}, status)


def _save_snapshot(engine: Engine) -> None:
    try:
        engine.save_snapshot()
    except OSError as e:  # a read-only folder: starts replay the whole log, nothing else
        log.warning("snapshot not written: %s", e)


def swap_engine(app, old, new) -> None:
    """Serve ``new`` instead of ``old`` (an online update): one assignment, under the lock a
    hot reload takes, and only if ``old`` still serves (a reload meanwhile wins)."""
    with app.state.swap_lock:
        if app.state.engine is not old:
            new.close()
            raise RuntimeError("the model was reloaded during the update; update dropped")
        app.state.engine = new
    old.close()  # answers what it has queued; later requests on it are answered directly


def settle_heap() -> None:
    """Collect, then move every object alive now (model, catalogue, libraries: millions of
    them) out of the garbage collector's sight (`gc.freeze`). Without it a full collection
    walks them all every so often (~0.1-0.3 s on 2 cores) and stalls every request in flight:
    the worst of the tail latency. Frozen objects are still freed by reference counting; a
    reload unfreezes first, so the old engine's cycles are collected."""
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()


def share_the_interpreter(seconds: float) -> None:
    """Let a thread that waits for the interpreter lock get it after ``seconds`` (Python's
    default is 5 ms): the event loop answering HTTP and the batch worker running the model
    share one interpreter, and with the default a request could wait a whole 5 ms slice for
    the other thread before its response is even written."""
    import sys

    sys.setswitchinterval(seconds)


def create_app(settings: ServeSettings | None = None, on_ready=None) -> FastAPI:
    """The service for ``settings`` (read from the environment when None); ``on_ready(info)``
    is called once the model is loaded (the CLI prints the address and the model)."""
    from fastapi.staticfiles import StaticFiles

    from m6rec.serve.routers import events, items, system, users

    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import anyio

        spec = replication_spec(settings)  # a misconfiguration fails before anything loads
        store = open_store(settings.db)
        try:
            app.state.store = store
            app.state.engine = await anyio.to_thread.run_sync(build_engine, settings, store)
            settle_heap()
            share_the_interpreter(settings.switch_interval)
            # the log as of now, so the next start or reload replays only what follows
            threading.Thread(target=_save_snapshot, args=(app.state.engine,),
                             name="m6rec-snapshot", daemon=True).start()
            if app.state.engine.text_mode:  # load the text encoder off the request path, so
                threading.Thread(target=lambda e=app.state.engine: e.encoder,  # the first
                                 name="m6rec-encoder", daemon=True).start()  # post is fast
            if spec.on:  # other processes' items and events, from the store's change feed
                app.state.follower = Follower(spec, store, lambda: app.state.engine)
            info = {**app.state.engine.info(), "model_dir": str(app.state.engine.model_dir),
                    "replication": spec.mode}
            log.info("m6rec serve: %s", info)
            if on_ready is not None:
                on_ready(info)
            update = UpdateSpec.parse(settings.update)
            if update is not None:
                app.state.updates = OnlineUpdates(update, lambda: app.state.engine,
                                                  lambda old, new: swap_engine(app, old, new))
            yield
        finally:
            follower, app.state.follower = getattr(app.state, "follower", None), None
            if follower is not None:
                follower.stop()
            updates, app.state.updates = getattr(app.state, "updates", None), None
            if updates is not None:
                updates.stop()
            engine, app.state.engine = getattr(app.state, "engine", None), None
            if engine is not None:
                engine.close()
                _save_snapshot(engine)
            store.close()

    app = FastAPI(title="m6rec", version=_version(), lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # served offline by routers/system.py
                  description="Real-time recommendations from the live event log and item text. "
                              "Writes need the API key in `X-API-Key`; with a key configured, "
                              "data reads need it or the read-only key.")
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.engine = None
    app.state.updates = None
    app.state.follower = None
    app.state.swap_lock = threading.Lock()
    app.state.generator = LazyGenerator(settings.generator, settings.generation_cache,
                                        settings.generator_threads or None)
    for r in (events.router, items.router, users.router, system.router):
        app.include_router(r)
    app.mount(system.DOCS_ASSETS, StaticFiles(directory=system.docs_assets_dir()),
              name="api-docs-assets")
    app.mount("/static", StaticFiles(directory=system.STATIC), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return error(422, detail)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        return error(404, str(exc.args[0]) if exc.args else "not found")

    @app.exception_handler(Unsupported)
    async def unsupported(request: Request, exc: Unsupported):
        return error(422, str(exc))

    @app.exception_handler(GeneratorUnavailable)
    async def no_generator(request: Request, exc: GeneratorUnavailable):
        return error(503, str(exc))

    app.add_middleware(Measure, metrics=app.state.metrics)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


def _version() -> str:
    from m6rec import __version__

    return __version__


__all__ = ["build_engine", "create_app"]
