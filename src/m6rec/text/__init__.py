"""Behaviour as text: templates, text encoders and the on-disk encoding cache (M6-Rec style).

Importing this package is cheap: ``sentence_transformers`` / torch load only when a
:class:`SentenceTransformerEncoder` first encodes.
"""

from m6rec.text.cache import EncodingCache, default_cache_dir, encode_cached
from m6rec.text.encoders import (
    DEFAULT_MODEL,
    Encoder,
    HashingEncoder,
    SentenceTransformerEncoder,
    default_model_path,
    get_encoder,
)
from m6rec.text.templates import (
    Templates,
    behaviour_text,
    item_texts,
    user_profile_text,
    user_text,
    user_texts,
)

__all__ = ["DEFAULT_MODEL", "Encoder", "EncodingCache", "HashingEncoder",
           "SentenceTransformerEncoder", "Templates", "behaviour_text", "default_cache_dir",
           "default_model_path", "encode_cached", "get_encoder", "item_texts", "user_profile_text",
           "user_text", "user_texts"]
