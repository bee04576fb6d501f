"""The deletion queue: objects are deleted after the commit, again until no upload URL for their
key can still work, and repeats never hold new deletions back."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from coaching import clock as app_clock
from coaching.extensions import db
from coaching.media import service
from coaching.media.models import MediaDeletion
from coaching.media.storage import MAX_URL_TTL_SECONDS, get_storage, new_key


def _row(key: str) -> MediaDeletion | None:
    return db.session.execute(
        select(MediaDeletion).where(MediaDeletion.key == key)
    ).scalar_one_or_none()


def _stored(key: str) -> None:
    with get_storage().writer(key) as out:
        out.write(b"late bytes")


def test_a_row_is_forgotten_only_after_a_delete_past_its_upload_window(app, clock):
    key = new_key()
    service.schedule_deletion(key=key, reason="deleted")
    db.session.commit()
    # Each run inside the window deletes what arrived since (an upload URL still working).
    for step in (0, MAX_URL_TTL_SECONDS - 1):
        clock.advance(seconds=step)
        _stored(key)
        assert service.purge_pending(app_clock.now()) == 1
        assert get_storage().size_of(key) is None
    assert _row(key).attempts == 2
    clock.advance(seconds=1)  # every upload URL of the key has expired by now
    _stored(key)
    assert service.purge_pending(app_clock.now()) == 1
    assert get_storage().size_of(key) is None and _row(key) is None


def test_repeated_deletions_never_hold_new_ones_back(app, clock):
    older = new_key()
    service.schedule_deletion(key=older, reason="deleted")
    db.session.commit()
    service.purge_pending(app_clock.now())  # deleted once, kept for its window
    clock.advance(seconds=1)
    newer = new_key()
    service.schedule_deletion(key=newer, reason="deleted")
    db.session.commit()
    _stored(newer)
    assert service.purge_pending(app_clock.now(), limit=1) == 1
    assert get_storage().size_of(newer) is None
    assert (_row(older).attempts, _row(newer).attempts) == (1, 1)


def test_no_domain_waiting_means_no_upload(monkeypatch):
    monkeypatch.setattr(service, "UPLOAD_CHECKS", [])
    assert not service.is_upload_wanted(new_key())
    monkeypatch.setattr(service, "UPLOAD_CHECKS", [lambda key: False, lambda key: True])
    assert service.is_upload_wanted(new_key())


def test_an_upload_cut_off_by_a_dying_process_leaves_no_partial_file_behind(app, clock):
    import os

    partial = get_storage().root / ".partial"
    partial.mkdir(parents=True, exist_ok=True)
    # A worker killed mid-upload (a timeout, a deploy) never ran its clean-up: the bytes so far
    # stay under .partial, named like no key, and nothing else would ever remove them.
    stale, busy = partial / "abandoned-upload", partial / "upload-in-progress"
    for path, idle in ((stale, timedelta(days=1)), (busy, timedelta(minutes=1))):
        path.write_bytes(b"half a video")
        at = (app_clock.now() - idle).timestamp()
        os.utime(path, (at, at))
    service.purge_pending(app_clock.now())
    assert not stale.exists()
    assert busy.exists()
    busy.unlink()
