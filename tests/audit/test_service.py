"""The audit log is append-only and chained by hash."""

import hashlib
import hmac

import pytest
from sqlalchemy import select, text, update

from coaching.accounts.models import Account
from coaching.audit import service
from coaching.audit.models import AuditChainHead, AuditEntry
from coaching.extensions import db
from tests.conftest import assert_error


def _record(world, n=3):
    rows = []
    for i in range(n):
        rows.append(
            service.record(
                actor=world.therapist,
                patient_id=world.patient.id,
                action="read",
                resource_type="outcomes",
                resource_id=str(i),
            )
        )
    db.session.commit()
    return rows


def test_patient_reading_own_data_is_not_audited(world):
    assert (
        service.record(
            actor=world.patient,
            patient_id=world.patient.id,
            action="read",
            resource_type="outcomes",
        )
        is None
    )


def test_rows_are_chained_in_sequence(world):
    rows = _record(world)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[1].prev_hash == rows[0].row_hash
    assert rows[2].prev_hash == rows[1].row_hash
    result = service.verify()
    assert result.ok and result.checked == 3


def test_changed_row_is_detected(world):
    _record(world)
    db.session.execute(text("UPDATE audit_log SET actor_role = 'owner' WHERE seq = 2"))
    db.session.commit()
    result = service.verify()
    assert not result.ok
    assert any("row 2" in p and "changed" in p for p in result.problems)


def test_removed_row_is_detected(world):
    _record(world)
    db.session.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    db.session.commit()
    result = service.verify()
    assert any("missing" in p for p in result.problems)


def test_removed_last_row_is_detected(world):
    _record(world)
    db.session.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    db.session.commit()
    result = service.verify()
    assert any("removed" in p for p in result.problems)


def test_cli_verify(app, world):
    _record(world)
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "3 rows checked" in ok.output
    db.session.execute(text("UPDATE audit_log SET patient_id = 'x' WHERE seq = 1"))
    db.session.commit()
    bad = runner.invoke(args=["audit", "verify"])
    assert bad.exit_code == 1
    assert "row 1" in bad.output


def test_entries_query_filters(world, clock):
    _record(world, 2)
    clock.advance(days=2)
    service.record(
        actor=world.other_therapist,
        patient_id=world.foreign_patient.id,
        action="read",
        resource_type="profile",
    )
    db.session.commit()
    assert len(db.session.execute(service.entries_query(patient_id=world.patient.id)).all()) == 2
    assert (
        len(db.session.execute(service.entries_query(actor_id=world.other_therapist.id)).all()) == 1
    )
    assert db.session.query(AuditEntry).count() == 3


def test_concurrent_writers_keep_one_chain(app, world):
    """Writers in parallel (threads with their own sessions) never fork the chain."""
    import threading

    from coaching.accounts.models import Account

    therapist_id, patient_id = world.therapist.id, world.patient.id
    errors = []

    def write(n):
        try:
            with app.app_context():
                actor = db.session.get(Account, therapist_id)
                for i in range(n):
                    service.record(
                        actor=actor,
                        patient_id=patient_id,
                        action="read",
                        resource_type="outcomes",
                        resource_id=str(i),
                    )
                    db.session.commit()
                db.session.remove()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(10,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = service.verify()
    assert result.ok, result.problems
    assert result.checked == 60


@pytest.fixture
def audit_refuses_writes(app):
    """A trigger that makes the database refuse every new audit row (as a full disk or a broken
    replica would); dropped again afterwards."""
    if db.engine.dialect.name == "postgresql":
        create = [
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'audit storage unavailable'; END $$",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log"
            " FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        ]
        drop = ["DROP TRIGGER refuse_audit ON audit_log", "DROP FUNCTION refuse_audit()"]
    else:
        create = [
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log"
            " BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END"
        ]
        drop = ["DROP TRIGGER refuse_audit"]
    with db.engine.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    yield
    db.session.rollback()
    with db.engine.begin() as conn:
        for statement in drop:
            conn.execute(text(statement))


def test_a_read_that_cannot_be_audited_is_503_without_patient_data(
    client, world, audit_refuses_writes
):
    response = client.get(f"/api/v1/patients/{world.patient.id}", headers=world.h["therapist"])
    body = assert_error(response, 503, contains="access log")
    assert world.patient.display_name not in response.get_data(as_text=True)
    assert set(body) == {"code", "status", "message"}
    db.session.rollback()
    assert db.session.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 0


def _rewrite(digest, *, patient_id):
    """Changes row 1's patient and recomputes every hash and the head with `digest`, as someone
    with write access to the database (but not the key) could."""
    rows = db.session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars().all()
    prev = rows[0].prev_hash
    for row in rows:
        if row is rows[0]:
            row.patient_id = patient_id
        row.prev_hash = prev
        row.row_hash = digest(row)
        prev = row.row_hash
    db.session.execute(update(AuditChainHead).values(last_hash=prev))
    db.session.commit()


def _wrong_key(row):
    return hmac.new(b"guessed", service._payload(row), hashlib.sha256).hexdigest()


@pytest.mark.parametrize("digest", [service._legacy_digest, _wrong_key])
def test_audit_chain_rewrite_is_detected(client, world, digest):
    for _ in range(3):
        service.record(
            actor=world.therapist,
            patient_id=world.patient.id,
            action="read",
            resource_type="patient",
            resource_id=world.patient.id,
        )
    db.session.commit()
    other_patient_id = world.other_patient.id
    assert service.verify().ok
    _rewrite(digest, patient_id=other_patient_id)
    result = service.verify()
    assert not result.ok
    assert [p.split(":")[0] for p in result.problems] == ["row 1", "row 2", "row 3"]


def test_rows_written_before_the_key_still_verify_up_to_the_setting(app, world, monkeypatch):
    _record(world, n=2)
    therapist_id, patient_id = world.therapist.id, world.patient.id
    # Hash both rows the way the service did before the key.
    _rewrite(service._legacy_digest, patient_id=patient_id)
    assert "without the audit key" in service.verify().problems[0]
    monkeypatch.setitem(app.config, "AUDIT_LEGACY_LAST_SEQ", 2)
    assert service.verify().ok
    # New rows chain on with the key; a legacy row changed later is still caught.
    therapist = db.session.get(Account, therapist_id)  # verify() let go of the session's rows
    service.record(actor=therapist, patient_id=patient_id, action="read", resource_type="x")
    db.session.commit()
    result = service.verify()
    assert result.ok and result.checked == 3
    db.session.execute(text("UPDATE audit_log SET action = 'export' WHERE seq = 1"))
    db.session.commit()
    assert any("row 1" in p and "changed" in p for p in service.verify().problems)
    # ... and so is a row after the boundary rehashed without the key.
    monkeypatch.setitem(app.config, "AUDIT_LEGACY_LAST_SEQ", 0)
    assert not service.verify().ok


def test_missing_head_row_is_reported(world):
    _record(world)
    db.session.execute(text("DELETE FROM audit_chain_head"))
    db.session.commit()
    assert any("no head row" in p for p in service.verify().problems)


def test_production_refuses_a_short_audit_key():
    from coaching.config import Config, ConfigError, validate

    config = vars(Config()) | {"ENV": "production", "SECRET_KEY": "s" * 32}
    validate(config | {"AUDIT_HMAC_KEY": "k" * 32})
    with pytest.raises(ConfigError, match="AUDIT_HMAC_KEY"):
        validate(config | {"AUDIT_HMAC_KEY": "short"})
