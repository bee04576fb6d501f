"""Media fixtures: sample files, the live app on loopback, the loopback S3 store."""

from tests.media.fixtures import live_server, s3, s3_server, sample_videos  # noqa: F401
