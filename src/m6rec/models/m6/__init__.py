"""M6: the text model. Items and users are read as text by a pretrained language model.

M6-Rec (Cui et al., arXiv 2205.08084) writes user behaviour and items as plain text for one
pretrained LM, so a model recommends items it never saw and works in domains it was never trained
on. It keeps serving cheap by encoding every text segment once and caching it, running only a
light interaction module per request ("late interaction"). This model follows that design:

- item vector = a trainable adapter over the *frozen* LM encoding of the item text (cached on
  disk), plus an ID embedding fused through a learned gate: ``v = t + g * e`` with
  ``g = sigmoid(W [t; e])``. Items without training interactions have no ID part, so a new or
  foreign item is scored from its text alone (``text_only=True`` drops IDs entirely);
  optionally (``item_features``) plus a gated projection of a knowledge-graph entity vector;
- user vector = a GRU (default) or a causal Transformer over the user's last ``max_len`` item
  vectors, with position, time-gap (log buckets) and event-type embeddings and the adapted LM
  encoding of the user's profile text ("A 24 year old male technician."), plus the user's
  long-term taste (the mean item vector of the whole history, ``long_term``);
- score = dot product, so item vectors are precomputed and served from an index; optionally
  (``text_match``) plus a late-interaction term read by the LM itself;
- loss = full-softmax cross-entropy over the catalogue (sampled softmax beyond 20,000 items),
  with soft targets from an EASE teacher during training (``teacher_weight``).

Files: `estimator` (the `M6` estimator), `items` (reading item and profile texts, item
features), `network` (the torch module, item side and user side), `towers` (the user towers,
shared with the frozen export), `adapt` (init / adapt-only / add-ids / bind).
"""

from m6rec.models.m6.estimator import M6

__all__ = ["M6"]
