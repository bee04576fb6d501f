"""Imports every domain's models so that the metadata (and Alembic) knows every table."""

import importlib

from coaching import idempotency  # noqa: F401


def _import_all() -> None:
    from coaching import DOMAINS, _domain_module

    for domain in DOMAINS:
        _domain_module(domain, "models")


_import_all()
importlib.invalidate_caches()
