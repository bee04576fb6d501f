"""The patients tests use the content tests' small programme."""

from tests.content.conftest import content, content_copy  # noqa: F401
