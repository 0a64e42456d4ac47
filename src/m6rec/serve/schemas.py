"""Wire schemas (the only pydantic models of the service), and the one rule for ids."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator

ID_MAX_LENGTH = 256
#: User and item ids: 1 to 256 characters from ``A-Z a-z 0-9 _ - . : @ + = ~``, not starting
#: with ``.``. No ``/`` (a path separator even when percent-encoded), no ``,`` (``exclude``
#: separates ids with it), no space and no control character; so every id that can be
#: written is one path segment that reads back unchanged (and never ``.`` or ``..``).
ID_PATTERN = r"^[A-Za-z0-9_@:+=~-][A-Za-z0-9_.@:+=~-]{0,255}$"
ID_RULE = ("1 to 256 characters from A-Z a-z 0-9 _ - . : @ + = ~, not starting with '.' "
           "(no '/', ',', spaces or control characters)")
MAX_K = 100  # the largest list length any read answers (`ServeSettings.max_k` may lower it)
Id = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN, description=ID_RULE)


class EventIn(BaseModel):
    """One interaction; ``timestamp`` (unix seconds) defaults to the time of ingestion."""

    model_config = ConfigDict(extra="forbid")
    user_id: str = Id
    item_id: str = Id
    type: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    timestamp: float | None = Field(None, ge=0, le=1e11, allow_inf_nan=False,
                                    description="Unix seconds, 0 to 1e11 (finite).")

    @field_validator("timestamp", mode="before")
    @classmethod
    def _finite(cls, v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"timestamp must be a finite number of unix seconds, not {v}")
        return v


class EventsAck(BaseModel):
    stored: int
    ids: list[int]


class ItemIn(BaseModel):
    """A new or changed item with its text; encoded and indexed before the response."""

    model_config = ConfigDict(extra="forbid")
    item_id: str = Id
    title: str = Field(min_length=1, max_length=1000)
    description: str | None = Field(None, max_length=10_000)
    categories: list[str] | None = Field(None, max_length=50)
    fields: dict[str, str] | None = Field(None, max_length=20,
                                          description="More text columns (brand, year, ...).")

    @field_validator("categories")
    @classmethod
    def _short(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(not c or len(c) > 100 for c in v):
            raise ValueError("each category must hold 1 to 100 characters")
        return v


class ItemAck(BaseModel):
    item_id: str
    created: bool
    indexed: bool
    reason: str | None = None
    seconds: float


class Cited(BaseModel):
    item_id: str
    title: str
    share: float = Field(description="share of the positive score drops (leave-one-out)")
    delta: float | None = Field(None, description="score drop when this item alone is removed")


class CategoryShare(BaseModel):
    name: str
    share: float


class Relation(BaseModel):
    role: str = Field(description="knowledge-graph relation, e.g. director, actor, sequel")
    item_id: str
    title: str
    count: int | None = None
    phrase: str


class RecItem(BaseModel):
    item_id: str
    score: float = Field(description="the ranking score (the same with or without explain)")
    title: str
    explained_score: float | None = Field(
        None, description="explain: the score of the history the explanation tested, from "
                          "which each cited item's delta is measured")
    because: str | None = Field(None, description="the explanation as a sentence")
    method: str | None = Field(None, description="leave-one-out | profile | query | none")
    shared_categories: list[str] | None = None
    categories: list[CategoryShare] | None = None
    relations: list[Relation] | None = None
    history: list[Cited] | None = None
    query_match: float | None = Field(None, description="standardised match to the request")


class Recommendations(BaseModel):
    user_id: str
    strategy: str = Field(description="history | history+query | query | profile | popular")
    items: list[RecItem]


class SimilarItems(BaseModel):
    item_id: str
    items: list[RecItem]


class SimilarUser(BaseModel):
    user_id: str
    score: float


class SimilarUsers(BaseModel):
    user_id: str
    users: list[SimilarUser]


class HistoryItem(BaseModel):
    item_id: str
    title: str
    timestamp: float | None


class History(BaseModel):
    user_id: str
    items: list[HistoryItem]


class UserList(BaseModel):
    users: list[str] = Field(description="user ids of the training data, in dataset order")
    total: int


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: dict[str, str] = Field(max_length=20)


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_dir: str | None = Field(None, max_length=4096)


class Error(BaseModel):
    error: str
    detail: object | None = None
