"""Online updates inside the service (no FastAPI here): the model keeps learning from the
event log while it serves.

A background thread polls the store for events committed since the last update and, when
enough have arrived (``every=N``) or enough time has passed with some waiting
(``interval=S``), folds them into the model with `m6rec.online.Updater` (``foldin`` for
EASE / item-KNN / user-KNN / ALS / PureSVD / BPR / pop, ``finetune`` for sasrec / gru4rec / m6)
in a separate process at the lowest CPU priority (it never holds the server's interpreter
lock). The new weights come back as the model's state arrays (an in-memory ``.npz`` plus a
JSON header, the format of a model directory: no pickled objects) and become a new engine
(`Engine.derive`) that is swapped in with one assignment; requests in flight finish on the
engine they started with.

Spec (``m6rec serve --update``): ``"foldin every=1000"``, ``"finetune interval=60"``,
``"foldin every=500 interval=30"``; ``off`` (default) disables updates.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("m6rec.serve")


@dataclass(frozen=True)
class UpdateSpec:
    """A parsed ``--update`` value.

    Attributes
    ----------
    policy : ``foldin`` or ``finetune`` (see `m6rec.online.policy`)
    every : update once this many new events are waiting (0: only on the interval)
    interval : seconds; update when this long has passed since the last one and events wait
        (0: only on the count)
    poll : seconds between two looks at the store
    """

    policy: str
    every: int = 1000
    interval: float = 0.0
    poll: float = 0.5

    @classmethod
    def parse(cls, text: str | None) -> UpdateSpec | None:
        """``"foldin every=1000 interval=60"`` -> UpdateSpec; ``None`` / ``""`` / ``off``
        -> None. A clear ValueError names what is wrong."""
        words = str(text or "").replace(",", " ").split()
        if not words or words == ["off"]:
            return None
        policy, args = words[0].lower(), words[1:]
        if policy not in ("foldin", "finetune"):
            raise ValueError(f"--update {text!r}: expected 'foldin' or 'finetune' first, then "
                             "every=N (events) and/or interval=S (seconds), or 'off'")
        values: dict[str, float] = {}
        for a in args:
            key, sep, val = a.partition("=")
            if not sep or key not in ("every", "interval", "poll"):
                raise ValueError(f"--update {text!r}: unknown part {a!r} (every=N, interval=S)")
            try:
                values[key] = float(val)
            except ValueError:
                raise ValueError(f"--update {text!r}: {key} must be a number, got {val!r}") \
                    from None
            if values[key] < 0 or (key == "poll" and values[key] == 0):
                raise ValueError(f"--update {text!r}: {key} must be > 0")
        every = int(values.get("every", 0 if "interval" in values else 1000))
        interval = values.get("interval", 0.0)
        if every == 0 and interval == 0:
            raise ValueError(f"--update {text!r}: give every=N > 0 or interval=S > 0")
        return cls(policy, every, interval, values.get("poll", 0.5))


class OnlineUpdates:
    """The background updater of one app.

    Parameters
    ----------
    spec : when and how to update
    get_engine, swap : read the serving engine; replace it (``swap(old, new)``: the caller
        makes the assignment atomic and retires ``old``)

    Attributes (read by ``/metrics``)
    ----------
    version : updates applied to the serving model since it was loaded
    pending : committed events not yet learned
    lag_seconds : age of the oldest event not yet learned (0 when none waits)
    last_seconds, last_events : duration and size of the newest update
    failures : updates that raised (the engine kept serving the previous version)
    """

    def __init__(self, spec: UpdateSpec, get_engine: Callable[[], Any],
                 swap: Callable[[Any, Any], None]):
        self.spec = spec
        self._get_engine, self._swap = get_engine, swap
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._updater = None
        self._base = None  # the engine the updater's model came from (reset after a reload)
        self._ours: Any = None  # the engine we swapped in last
        self._after_id = 0
        self._waiting: list[Any] = []
        self._waiting_since: float | None = None
        self._last_at = time.monotonic()
        self.version = 0
        self.last_seconds = 0.0
        self.last_events = 0
        self.failures = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="m6rec-updates", daemon=True)
        self._thread.start()

    # -- read by /metrics ----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._waiting)

    @property
    def lag_seconds(self) -> float:
        since = self._waiting_since
        return 0.0 if since is None else max(0.0, time.time() - since)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout)
        if self._updater is not None:
            self._updater.close()

    def kick(self) -> None:
        """Look at the store now (tests; an operator endpoint could call it)."""
        self._kick.set()

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        _lower_priority()
        while not self._stop.is_set():
            self._kick.wait(self.spec.poll)
            self._kick.clear()
            if self._stop.is_set():
                return
            try:
                self.step()
            except Exception as e:  # noqa: BLE001 - the service keeps serving the old model
                self.failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("online update failed; still serving model version %d",
                              self.version)

    def step(self) -> bool:
        """Read new events; update and swap when due. True when a new model was swapped in."""
        engine = self._get_engine()
        if engine is None:
            return False
        if engine is not self._ours and engine is not self._base:  # first run, or reloaded
            self._reset(engine)
        fresh = list(engine.store.iter_events(after_id=self._after_id))
        if fresh:
            self._after_id = fresh[-1].id
            if not self._waiting:
                self._waiting_since = min(e.timestamp for e in fresh)
            self._waiting += fresh
        if not self._waiting:
            return False
        spec = self.spec
        due = (spec.every and len(self._waiting) >= spec.every) or (
            spec.interval and time.monotonic() - self._last_at >= spec.interval)
        if not due:
            return False
        return self._update(engine)

    def _reset(self, engine: Any) -> None:
        if self._updater is not None:
            self._updater.close()
        self._updater = UpdateProcess(engine, self.spec.policy)
        self._base, self._ours = engine, None
        self._after_id, self._waiting, self._waiting_since = 0, [], None
        self.version = 0

    def _update(self, engine: Any) -> bool:
        t0 = time.perf_counter()
        batch, self._waiting = self._waiting, []
        since, self._waiting_since = self._waiting_since, None
        try:
            frame = self._frame(batch, engine)
            if not len(frame):
                self._last_at = time.monotonic()
                return False
            model, version = self._updater.update(frame)
            self._last_at = time.monotonic()
            if version == self.version:
                return False
            new = engine.derive(model, version)
            self._swap(engine, new)
            self._ours, self.version = new, version
        except Exception:
            self._waiting = batch + self._waiting  # nothing is lost: retried next time
            self._waiting_since = since
            self._last_at = time.monotonic()
            raise
        self.last_seconds = time.perf_counter() - t0
        self.last_events = len(batch)
        log.info("online update %d: %d events in %.2f s", version, len(batch), self.last_seconds)
        return True

    def _frame(self, events: list[Any], engine: Any) -> pd.DataFrame:
        """Stored events -> the updater's input; items outside the model's catalogue (posted
        to the service later) are left to the histories, not learned."""
        ds = engine.dataset
        known = [e for e in events if ds.item_index(e.item_id) is not None]
        frame = pd.DataFrame({"user_id": [e.user_id for e in known],
                              "item_id": [e.item_id for e in known],
                              "timestamp": [e.timestamp for e in known]})
        types = set(ds.event_types or ())
        if types and known and all(e.type in types for e in known):
            frame["event"] = [e.type for e in known]
        return frame


class UpdateProcess:
    """An `m6rec.online.Updater` in a child process (spawned: no state shared with the server).

    It loads the engine's model directory and dataset itself, then answers each batch of
    events with the updated model's state; `update` rebuilds the model object here."""

    def __init__(self, engine: Any, policy: str, timeout: float = 600.0):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.timeout = timeout
        self.proc = ctx.Process(target=_serve_updates, name="m6rec-updater", daemon=True,
                                args=(child, str(engine.model_dir), engine.data_spec,
                                      engine.tie_break, policy))
        self.proc.start()
        child.close()
        self._expect(b"ready")

    def update(self, frame: pd.DataFrame) -> tuple[Any, int]:
        """Send events (``user_id``, ``item_id``, ``timestamp``[, ``event``]); get
        ``(model, version)`` back."""
        from m6rec.registry import get_model_class

        self._conn.send_bytes(frame.to_json(orient="columns").encode())
        header, blob = self._expect(None)
        cfg = header["config"]
        model = get_model_class(cfg["model"])(**cfg["params"])
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        model.n_items_, model.n_users_ = int(cfg["n_items"]), int(cfg["n_users"])
        model.set_state(state)
        return model, int(header["version"])

    def _expect(self, want: bytes | None):
        if not self._conn.poll(self.timeout):
            raise TimeoutError(f"the update process did not answer in {self.timeout:.0f} s")
        msg = self._conn.recv_bytes()
        if want is not None:
            if msg != want:
                raise RuntimeError(f"update process: {msg[:500].decode(errors='replace')}")
            return None
        size = int.from_bytes(msg[:8], "little")
        header = json.loads(msg[8:8 + size])
        if "error" in header:
            raise RuntimeError(f"update process: {header['error']}")
        return header, msg[8 + size:]

    def close(self) -> None:
        try:
            self._conn.send_bytes(b"stop")
        except (OSError, ValueError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
        self._conn.close()


def _serve_updates(conn: Any, model_dir: str, data_spec: str, tie_break: str,
                   policy: str) -> None:  # pragma: no cover - runs in the child process
    """The child's loop: events in (JSON columns), model state out (JSON header + npz)."""
    import os

    os.nice(19)
    try:
        from m6rec.data import load_dataset
        from m6rec.models.io import load_model_dir
        from m6rec.online import Updater

        ds = load_dataset(data_spec, tie_break=tie_break)
        model, _ = load_model_dir(model_dir, ds)
        updater = Updater(model, ds, policy)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send_bytes(f"{type(e).__name__}: {e}".encode())
        return
    conn.send_bytes(b"ready")
    while True:
        try:
            msg = conn.recv_bytes()
        except EOFError:
            return
        if msg == b"stop":
            return
        try:
            frame = pd.DataFrame(json.loads(msg))
            model, version = updater.update(frame)
            buf = io.BytesIO()
            np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in model.get_state().items()})
            header = {"version": version, "config": {
                "model": model.name, "params": model.get_params(),
                "n_items": int(model.n_items_), "n_users": int(model.n_users_)}}
            blob = buf.getvalue()
        except Exception as e:  # noqa: BLE001 - the parent keeps serving and retries
            header, blob = {"error": f"{type(e).__name__}: {e}"}, b""
        head = json.dumps(header, default=_jsonable).encode()
        conn.send_bytes(len(head).to_bytes(8, "little") + head + blob)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def _lower_priority() -> None:
    """Run this thread at the lowest CPU priority (Linux threads have their own nice value),
    so an update takes the cores requests leave idle. Elsewhere: a no-op."""
    import os

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


__all__ = ["OnlineUpdates", "UpdateSpec"]
