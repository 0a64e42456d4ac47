"""The HTTP service (`m6rec serve`): the only package that imports FastAPI.

``create_app(settings)`` builds the app; see `m6rec.serve.settings.ServeSettings` for options.
"""

from __future__ import annotations


def create_app(settings=None):
    from m6rec.serve.app import create_app as _create

    return _create(settings)


__all__ = ["create_app"]
