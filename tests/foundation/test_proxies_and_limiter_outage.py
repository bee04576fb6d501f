"""Behind a reverse proxy the client address comes from X-Forwarded-For (when configured), and
a rate-limit store that is down does not break sign-in."""

from flask import request


def test_client_address_from_trusted_proxy(make_app):
    app = make_app({"TRUSTED_PROXIES": 1})
    seen = {}

    @app.get("/_addr")
    def _addr():
        seen["addr"] = request.remote_addr
        return {}

    client = app.test_client()
    client.get(
        "/_addr",
        headers={"X-Forwarded-For": "203.0.113.7"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert seen["addr"] == "203.0.113.7"


def test_forwarded_for_is_ignored_without_trusted_proxies(make_app):
    app = make_app({"TRUSTED_PROXIES": 0})
    seen = {}

    @app.get("/_addr")
    def _addr():
        seen["addr"] = request.remote_addr
        return {}

    app.test_client().get(
        "/_addr",
        headers={"X-Forwarded-For": "203.0.113.7"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert seen["addr"] == "10.0.0.2"


def test_rate_limit_store_down_does_not_fail_sign_in(make_app):
    # Nothing listens on port 9 (discard) on loopback: the Redis store is unreachable.
    app = make_app({"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:9/0"})
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    r = app.test_client().post(
        "/api/v1/auth/token", json={"email": "nobody@example.test", "password": "wrong-password"}
    )
    assert r.status_code == 401
    assert r.get_json()["code"] == 401
