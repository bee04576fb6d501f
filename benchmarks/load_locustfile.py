"""Locust users for benchmarks/load.py (run by it; not meant to be run by hand).

`PatientUser` does a patient's daily routine in the app with a pre-issued access token (from the
JSON file in `LOAD_TOKENS`): today, the programme, the next lesson and its progress, outcomes,
messages (sometimes sending one), the questionnaires due (answering the baseline NRS once).
`PingUser` asks a minimal Flask endpoint for the baseline. `LOAD_WAIT` is the think time in
seconds between two routines (0: as fast as the service answers).
"""

from __future__ import annotations

import itertools
import json
import os

from locust import FastHttpUser, constant, task

with open(os.environ.get("LOAD_TOKENS", "/dev/null")) as _handle:
    _TOKENS = itertools.cycle(json.loads(_handle.read() or "[]"))
WAIT = float(os.environ.get("LOAD_WAIT", "0"))
API = "/api/v1"


class PatientUser(FastHttpUser):
    wait_time = constant(WAIT)

    def on_start(self):
        self.headers = {"Authorization": f"Bearer {next(_TOKENS)}"}
        conversations = self._get("/conversations", "GET /conversations")
        self.conversation = conversations[0]["id"] if conversations else None
        self.answered = False
        self.rounds = 0
        self.etags: dict[str, str] = {}

    def _get(self, path, name, **kwargs):
        with self.client.get(
            API + path,
            headers={**self.headers, **kwargs.pop("headers", {})},
            name=name,
            catch_response=True,
            **kwargs,
        ) as response:
            if response.status_code in (200, 304):
                response.success()
                return response.json() if response.status_code == 200 else None
            response.failure(f"{response.status_code}")
            return None

    def _send(self, method, path, name, body, ok=(200, 201)):
        with self.client.request(
            method, API + path, json=body, headers=self.headers, name=name, catch_response=True
        ) as response:
            if response.status_code in ok:
                response.success()
            else:
                response.failure(f"{response.status_code}")

    @task
    def daily_routine(self):
        self.rounds += 1
        today = self._get("/me/today", "GET /me/today") or {}
        self._get("/me/programme", "GET /me/programme")
        lesson = (today.get("next_lesson") or {}).get("id")
        if lesson:
            etag = self.etags.get(lesson)
            with self.client.get(
                f"{API}/lessons/{lesson}",
                headers={**self.headers, **({"If-None-Match": etag} if etag else {})},
                name="GET /lessons/{id}",
                catch_response=True,
            ) as response:
                if response.status_code in (200, 304):
                    if response.headers.get("ETag"):
                        self.etags[lesson] = response.headers["ETag"]
                    response.success()
                else:
                    response.failure(f"{response.status_code}")
            self._send(
                "PUT",
                f"/lessons/{lesson}/progress",
                "PUT /lessons/{id}/progress",
                {"status": "started"},
            )
        self._get("/me/outcomes", "GET /me/outcomes")
        if self.conversation:
            self._get(
                f"/conversations/{self.conversation}/messages", "GET /conversations/{id}/messages"
            )
            if self.rounds % 5 == 1:
                self._send(
                    "POST",
                    f"/conversations/{self.conversation}/messages",
                    "POST /conversations/{id}/messages",
                    {"kind": "text", "body": "Het ging goed vandaag"},
                )
        due = self._get("/me/questionnaires/due", "GET /me/questionnaires/due") or []
        if not self.answered and any(q.get("key") == "nrs" for q in due):
            self._send(
                "POST",
                "/me/questionnaires/nrs/responses",
                "POST /me/questionnaires/nrs/responses",
                {"answers": {"back_pain": 5, "leg_pain": 2}},
            )
            self.answered = True


class PingUser(FastHttpUser):
    wait_time = constant(WAIT)

    @task
    def ping(self):
        self.client.get("/ping", name="GET /ping")
