"""A snapshot of what the service derives from the event log (events per item), with the log
offset it covers, so a start or a reload replays only the tail of the log.

The file is JSON, written atomically (temporary file, then rename) and verified on load: its
format, a checksum of its content, and the event at its offset, which must still be in the
store exactly as it was (another or a truncated database makes the snapshot stale). A missing,
corrupt or stale snapshot is ignored, and the state is rebuilt from the whole log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("m6rec.serve")
FORMAT = 1


def _event_key(store: Any, offset: int) -> list | None:
    """The event with id ``offset`` as [id, user_id, item_id, timestamp], or None."""
    if offset <= 0:
        return None
    for e in store.iter_events(offset - 1, batch=1):
        return [e.id, e.user_id, e.item_id, e.timestamp] if e.id == offset else None
    return None


def _checksum(body: dict) -> str:
    return hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=16).hexdigest()


def save(path: str | Path, store: Any, offset: int, counts: dict[str, int]) -> None:
    """Write events per item up to event id ``offset`` (inclusive)."""
    path = Path(path)
    body = {"format": FORMAT, "offset": int(offset), "event": _event_key(store, int(offset)),
            "counts": {k: int(v) for k, v in counts.items() if v}}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # processes sharing a store
    tmp.write_text(json.dumps({**body, "checksum": _checksum(body)}))
    os.replace(tmp, path)


def load(path: str | Path | None, store: Any) -> tuple[int, dict[str, int]] | None:
    """(offset, events per item) from a verified snapshot, or None (then replay everything)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        data = json.loads(Path(path).read_text())
        body = {k: data[k] for k in ("format", "offset", "event", "counts")}
        if data.get("checksum") != _checksum(body) or body["format"] != FORMAT:
            raise ValueError("checksum or format mismatch")
        offset = int(body["offset"])
        if _event_key(store, offset) != body["event"]:
            raise ValueError(f"the store's event {offset} is not the one the snapshot covers")
        return offset, {str(k): int(v) for k, v in body["counts"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("snapshot %s ignored (%s): replaying the whole event log", path, e)
        return None


def default_path(db_url: str) -> Path | None:
    """``PATH.snapshot.json`` next to a SQLite file; None for other stores."""
    if db_url.startswith("sqlite:///") and ":memory:" not in db_url:
        return Path(db_url[len("sqlite:///"):] + ".snapshot.json")
    return None
