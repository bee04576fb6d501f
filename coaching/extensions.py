"""Extensions, created unbound at import time and bound to the app in `create_app`."""

from __future__ import annotations

from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from flask_sqlalchemy import SQLAlchemy

from coaching.db import Base
from coaching.errors import render_http_exception

db = SQLAlchemy(model_class=Base)
migrate = Migrate(compare_type=True, render_as_batch=True)


# The X-Pagination header as API.md has it (smorest's own documents first_page, next_page, ...
# and no page_size, and forbids other properties: a generated client would refuse the header).
PAGINATION_HEADER_DOC = {
    "description": "Pagination metadata, a JSON object",
    "schema": {
        "type": "object",
        "properties": {
            "total": {"type": "integer", "description": "Items in all pages"},
            "total_pages": {"type": "integer", "description": "Pages of `page_size` items"},
            "page": {"type": "integer", "description": "This page's number, from 1"},
            "page_size": {"type": "integer", "description": "Items per page"},
        },
        "required": ["total", "total_pages", "page", "page_size"],
    },
}


class CoachingApi(Api):
    """flask-smorest's Api, answering every HTTP error in the contract's shape."""

    def handle_http_exception(self, error):
        return render_http_exception(error)

    def _register_pagination_header(self):
        # Every paginated answer's X-Pagination refers to this component.
        self.spec.components.header("PAGINATION", PAGINATION_HEADER_DOC, lazy=True)


class Blueprint(SmorestBlueprint):
    """A smorest Blueprint whose X-Pagination header carries the contract's fields."""

    DEFAULT_PAGINATION_PARAMETERS = {"page": 1, "page_size": 20, "max_page_size": 100}

    @staticmethod
    def _make_pagination_metadata(page, page_size, item_count):
        total_pages = 0 if item_count == 0 else ((item_count - 1) // page_size) + 1
        return {
            "total": item_count,
            "total_pages": total_pages,
            "page": page,
            "page_size": page_size,
        }


api = CoachingApi()


def _client_address() -> str:
    return get_remote_address() or request.remote_addr or "unknown"


limiter = Limiter(key_func=_client_address, default_limits=[], headers_enabled=True)
