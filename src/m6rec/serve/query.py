"""Free-text requests matched against the live catalogue: each item's match with a request
(or a conversation) from the language model's encodings of the request, the item texts and
the category names (`m6rec.recommend.text_match`), posted items included."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np


class QueryMatcher:
    """Request matches over a `m6rec.serve.catalogue.Catalogue` of a text model.

    Parameters
    ----------
    encode : texts -> float32 [n, D], the model's language model
    catalogue : the live catalogue (its LM encodings and categories)
    decay : turns weighted ``decay ** age`` (the latest weighs most)
    attributes : how much the categories' match mixes into the item text's
    vocab : category name -> LM encoding, shared with the matcher this one derives from
    """

    def __init__(self, encode: Callable[[list[str]], np.ndarray], catalogue,
                 decay: float = 0.5, attributes: float = 0.5,
                 vocab: dict[str, np.ndarray] | None = None) -> None:
        self.encode, self.catalogue = encode, catalogue
        self.decay, self.attributes = decay, attributes
        self._vocab = {} if vocab is None else vocab

    def with_catalogue(self, catalogue) -> QueryMatcher:
        """The same matcher over another catalogue (category encodings shared)."""
        return QueryMatcher(self.encode, catalogue, self.decay, self.attributes, self._vocab)

    def match(self, turns: tuple[str, ...], n: int, decay: float | None = None,
              attributes: float | None = None) -> np.ndarray:
        """The match of each of the first ``n`` items with the request ``turns`` (oldest
        first), float32 [n]; ``decay`` / ``attributes``: this request's (None: the
        matcher's)."""
        from m6rec.recommend import text_match

        q = np.asarray(self.encode(list(turns)), dtype=np.float32)
        cat, vocab = self.catalogue.category_matrix(n)
        vocab_lm = self.vocab_vectors(vocab) if vocab else None
        return text_match(q, self.catalogue.lm[:n], self.decay if decay is None else decay,
                          cat if vocab else None, q, vocab_lm,
                          self.attributes if attributes is None else attributes)

    def vocab_vectors(self, vocab: list[str]) -> np.ndarray:
        """LM encodings [len(vocab), D] of category names (each encoded once)."""
        missing = [c for c in vocab if c not in self._vocab]
        if missing:
            for c, v in zip(missing, self.encode(missing), strict=True):
                self._vocab[c] = np.asarray(v, np.float32)
        return np.stack([self._vocab[c] for c in vocab])


class LazyEncoder:
    """A text encoder loaded on first use (``get``), shared by every engine derived from one."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._encoder = None
        self._lock = threading.Lock()

    def get(self):
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    from m6rec.text import get_encoder

                    self._encoder = get_encoder(self.spec)
        return self._encoder

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.get().encode(texts)
