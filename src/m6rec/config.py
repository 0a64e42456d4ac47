"""The one settings object. Precedence: CLI flag > environment (``M6REC_*``) > default.

Models never see this object: the CLI and the service read it once and pass plain arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"M6REC_{name}", default)


@dataclass(frozen=True)
class Settings:
    """Documented defaults.

    Attributes
    ----------
    cache_dir : Path
        Where item-text encodings are cached (``M6REC_CACHE_DIR``; default ``~/.cache/m6rec``).
    device : str
        ``auto`` (CUDA when present), ``cpu`` or ``cuda`` (``M6REC_DEVICE``).
    k : int
        Default list length for recommendations (``M6REC_K``).
    tie_break : str
        How equal timestamps are ordered when loading: ``hash`` (stable hash of user and item,
        the default), ``hash:SALT``, or ``file`` (file order, as RecBole does) (``M6REC_TIE_BREAK``).
    """

    cache_dir: Path = field(default_factory=lambda: Path(
        _env("CACHE_DIR", str(Path.home() / ".cache" / "m6rec"))).expanduser())
    device: str = field(default_factory=lambda: _env("DEVICE", "auto"))
    k: int = field(default_factory=lambda: int(_env("K", "10")))
    tie_break: str = field(default_factory=lambda: _env("TIE_BREAK", "hash"))
