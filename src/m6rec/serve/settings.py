"""Service settings, read once (CLI flag > environment ``M6REC_*`` > default)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"M6REC_{name}", default)


def _conversation(name: str):
    """A default of `m6rec.conversation.Conversation` (one place for it)."""
    from dataclasses import fields

    from m6rec.conversation import Conversation

    return next(f.default for f in fields(Conversation) if f.name == name)


@dataclass(frozen=True)
class ServeSettings:
    """Documented defaults of `m6rec serve`.

    Attributes
    ----------
    model_dir : Path
        A directory written by ``m6rec train --out`` (``M6REC_MODEL_DIR``).
    db : str
        Store URL, ``sqlite:///PATH`` or ``postgresql://...`` (``M6REC_DB``;
        default ``sqlite:///m6rec-events.db`` in the working directory).
    data : str or None
        Dataset spec for training histories and titles; default: the one the model was trained on
        (``meta.json``'s ``data_spec``) (``M6REC_DATA``).
    api_key : str or None
        The key (header ``X-API-Key``) that may read and write (``M6REC_API_KEY``); with none
        set, writes are refused (403).
    read_key : str or None
        A second key that may read but not write (``M6REC_READ_KEY``; a write with it gets
        403). With either key set, every data read (per-user endpoints, similar items, the
        user list) needs one of them (401 without); with neither set, reads are open.
        ``/health``, the API docs, the dashboard page and static files are always public.
    keyed_metrics : bool
        ``/metrics`` needs a key too (``M6REC_KEYED_METRICS=1``; default: public).
    pseudonymise_key : str or None
        When set, user ids are replaced by a keyed HMAC-SHA256 at ingestion, so raw ids are never
        stored (``M6REC_PSEUDONYMISE_KEY``).
    max_body_bytes, max_batch, max_k : int
        Request body limit, most events per batch, largest ``k`` (at most 100, the
        schema's bound).
    history_limit : int
        Newest stored events read per user and request.
    snapshot : str or None
        File of the log-derived state with the log offset it covers (``M6REC_SNAPSHOT``);
        a start or reload replays only the log after it. Default (None):
        ``PATH.snapshot.json`` next to a SQLite store, none for PostgreSQL; ``""``: none.
    explain_history : int
        Sequence models: how many of the newest history items ``explain=true`` tests by
        leave-one-out (``M6REC_EXPLAIN_HISTORY``, default 20; each is one more user encoding
        the first time a user's history is explained).
    index : str
        ``auto`` (exact below ``faiss_threshold`` items, FAISS HNSW from there), ``exact``, ``faiss``.
    query_weight : float
        How strongly a free-text ``query`` steers a user with history (0 ignores it).
    switch_interval : float
        Seconds a thread holds the interpreter before a waiting one may take it
        (``M6REC_SWITCH_INTERVAL``, default 0.002; Python's own default is 0.005: measured
        in `docs/notes/serve.md`).
    new_items : str
        How an ID-trained text model (``m6`` by default) scores posted items, which have no
        ID part (``M6REC_NEW_ITEMS``): ``calibrated`` (default: their text's match with the
        user's newest items, on the user's own score scale) or ``raw`` (the text-only item
        vector's dot product); see `m6rec.serve.vectors`.
    update : str
        Online updates from the event log (``M6REC_UPDATE``): ``off`` (default), or a policy
        and a trigger, e.g. ``"foldin every=1000"``, ``"finetune interval=60"`` (see
        `m6rec.serve.updates`).
    generator : str
        The generative LM of ``explain=true&phrasing=lm`` and of conversations
        (``M6REC_GENERATOR``): ``smollm2`` (default, the packaged SmolLM2-135M-Instruct), a
        GGUF file or a model directory (`m6rec.text.generate.load_generator`). Loaded on the
        first request that needs it, once per app.
    generation_cache : str or None
        Folder of the generated-text cache (``M6REC_GENERATION_CACHE``; default
        ``M6REC_CACHE_DIR/generations``): a repeated prompt is read, not generated.
    generator_threads : int
        torch threads while generating (``M6REC_GENERATOR_THREADS``; 0: torch's setting).
    max_phrased : int
        Largest ``k`` that ``phrasing=lm`` accepts (every item is one more generated text;
        ``M6REC_MAX_PHRASED``, default 20).
    conversation_steer, conversation_weight, conversation_decay, conversation_attributes
        How a conversation steers the ranking (`m6rec.conversation`): what steers it
        (``categories`` | ``both`` | ``lm`` | ``turns``), the request's weight against the
        user's history, the weight of each earlier turn relative to the next and the
        category match's share of the request match (``M6REC_CONVERSATION_STEER``,
        ``_WEIGHT``, ``_DECAY``, ``_ATTRIBUTES``; defaults those of
        `m6rec.conversation.Conversation`).
    replication : str
        How this process follows items and events that other processes (replicas, workers)
        commit to the same database (``M6REC_REPLICATION``): ``auto`` (default: ``notify``
        for PostgreSQL, ``poll`` for a SQLite file, ``off`` for an in-memory SQLite),
        ``notify`` (PostgreSQL LISTEN/NOTIFY, with a polled fallback), ``poll``, ``off``
        (see `m6rec.serve.replication`).
    replication_poll : float or None
        Seconds between two reads of the change feed when no notification comes earlier
        (``M6REC_REPLICATION_POLL``; default 0.5 with ``notify``, 0.1 with ``poll``).
    workers : int
        Processes serving one port (``m6rec serve --workers``); each loads the model.
    """

    model_dir: Path = field(default_factory=lambda: Path(_env("MODEL_DIR", "model") or "model"))
    db: str = field(default_factory=lambda: _env("DB", "sqlite:///m6rec-events.db") or "")
    data: str | None = field(default_factory=lambda: _env("DATA"))
    api_key: str | None = field(default_factory=lambda: _env("API_KEY"))
    read_key: str | None = field(default_factory=lambda: _env("READ_KEY"))
    keyed_metrics: bool = field(
        default_factory=lambda: (_env("KEYED_METRICS", "") or "").lower() in ("1", "true", "yes"))
    pseudonymise_key: str | None = field(default_factory=lambda: _env("PSEUDONYMISE_KEY"))
    max_body_bytes: int = 1_000_000
    max_batch: int = 1000
    max_k: int = 100
    history_limit: int = 500
    snapshot: str | None = field(default_factory=lambda: _env("SNAPSHOT"))
    explain_history: int = field(
        default_factory=lambda: int(_env("EXPLAIN_HISTORY", "20") or 20))
    index: str = "auto"
    faiss_threshold: int = 50_000
    query_weight: float = 1.0
    new_items: str = field(
        default_factory=lambda: _env("NEW_ITEMS", "calibrated") or "calibrated")
    update: str = field(default_factory=lambda: _env("UPDATE", "off") or "off")
    replication: str = field(
        default_factory=lambda: _env("REPLICATION", "auto") or "auto")
    replication_poll: float | None = field(
        default_factory=lambda: float(_env("REPLICATION_POLL") or 0) or None)
    workers: int = 1
    switch_interval: float = field(
        default_factory=lambda: float(_env("SWITCH_INTERVAL", "0.002") or 0.002))
    generator: str = field(default_factory=lambda: _env("GENERATOR", "smollm2") or "smollm2")
    generation_cache: str | None = field(default_factory=lambda: _env("GENERATION_CACHE"))
    generator_threads: int = field(
        default_factory=lambda: int(_env("GENERATOR_THREADS", "0") or 0))
    max_phrased: int = field(default_factory=lambda: int(_env("MAX_PHRASED", "20") or 20))
    conversation_steer: str = field(
        default_factory=lambda: _env("CONVERSATION_STEER", _conversation("steer")) or "both")
    conversation_weight: float = field(
        default_factory=lambda: float(_env("CONVERSATION_WEIGHT", "") or
                                      _conversation("query_weight")))
    conversation_decay: float = field(
        default_factory=lambda: float(_env("CONVERSATION_DECAY", "") or
                                      _conversation("query_decay")))
    conversation_attributes: float = field(
        default_factory=lambda: float(_env("CONVERSATION_ATTRIBUTES", "") or
                                      _conversation("query_attributes")))
