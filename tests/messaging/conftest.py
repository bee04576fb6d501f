"""Messaging fixtures: the media ones (sample files, live app, loopback S3) and fresh logins."""

import pytest

from tests.media.fixtures import live_server, s3, s3_server, sample_videos  # noqa: F401


@pytest.fixture
def h(make, world):
    """Returns fresh Authorization headers for one of the world's accounts (tokens live 15
    minutes and tests move the clock by days)."""

    def headers(name: str) -> dict:
        return make.headers(getattr(world, name))

    return headers
