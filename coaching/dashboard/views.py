"""GET /dashboard: a page that signs in through the API and draws the metrics.

Everything it needs (HTML, JavaScript, CSS) is served from here: no CDN, no inline script, so a
strict Content-Security-Policy holds.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

STATIC = Path(__file__).parent / "static"

blp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _page(filename: str, mimetype: str):
    response = send_from_directory(STATIC, filename, mimetype=mimetype, max_age=0)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.get("")
@blp.get("/")
def index():
    """Serve the dashboard page."""
    return _page("index.html", "text/html")


@blp.get("/dashboard.js")
def script():
    """Serve the dashboard's script."""
    return _page("dashboard.js", "text/javascript")


@blp.get("/dashboard.css")
def styles():
    """Serve the dashboard's styles."""
    return _page("dashboard.css", "text/css")
