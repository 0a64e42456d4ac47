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


class LMText(BaseModel):
    raw: str = Field(description="the generator's text (its first two sentences), unchecked")
    replaced: int = Field(description="its sentences replaced by the template because they "
                                      "named something outside the evidence")
    violations: list[str] = Field(description="what those sentences named")


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
    lm: LMText | None = Field(None, description="phrasing=lm: the generated text before the "
                                                "check, and what the check replaced")


class Phrasing(BaseModel):
    generator: str = Field(description="the generative LM")
    phrased: int = Field(description="items whose explanation the LM phrased (those citing "
                                     "history items)")
    replaced: int = Field(description="generated sentences replaced by the template")
    templated: int = Field(description="phrased items whose text holds a template sentence")


class Recommendations(BaseModel):
    user_id: str
    strategy: str = Field(description="history | history+query | query | profile | popular")
    items: list[RecItem]
    phrasing: Phrasing | None = Field(None, description="phrasing=lm: what the LM wrote")


MAX_MESSAGES = 20
MAX_MESSAGE_LENGTH = 500


class ConversationIn(BaseModel):
    """The conversation so far: the user's messages, oldest first (the service keeps no
    conversation state; send every message each time)."""

    model_config = ConfigDict(extra="forbid")
    messages: list[str] = Field(min_length=1, max_length=MAX_MESSAGES,
                                description=f"1 to {MAX_MESSAGES} messages of 1 to "
                                            f"{MAX_MESSAGE_LENGTH} characters, oldest first")
    k: int = Field(10, ge=1, le=MAX_K, description="List length.")

    @field_validator("messages")
    @classmethod
    def _messages(cls, v: list[str]) -> list[str]:
        for n, m in enumerate(v):
            if not m.strip():
                raise ValueError(f"messages[{n}] is empty")
            if len(m) > MAX_MESSAGE_LENGTH:
                raise ValueError(f"messages[{n}] is longer than {MAX_MESSAGE_LENGTH} "
                                 "characters")
            if any(ord(c) < 32 and c not in "\t\n" for c in m):
                raise ValueError(f"messages[{n}] holds a control character")
        return [m.strip() for m in v]


class ConversationItem(BaseModel):
    item_id: str
    score: float = Field(description="the ranking score")
    title: str


class ConversationOut(BaseModel):
    user_id: str
    strategy: str = Field(description="history+query (the user's history and the request) | "
                                      "query (the request alone)")
    request: str = Field(description="the LM's rewrite of the conversation into one request")
    queries: list[str] = Field(description="the texts that steered the ranking, oldest first")
    reply: str = Field(description="the reply, naming only returned items (checked)")
    reply_raw: str = Field(description="the generator's reply before the check")
    replaced: int = Field(description="reply sentences replaced by the template")
    violations: list[str]
    generator: str
    items: list[ConversationItem]


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
