"""Audit rows (NEN 7513): append-only, one per access to a patient's data by someone else.

Rows are chained by hash: each row's `row_hash` covers its fields and the previous row's hash, in
the order of `seq`. The single-row `audit_chain_head` holds the last sequence number and hash; taking
it with an UPDATE serialises writers on PostgreSQL (row lock) and SQLite (write lock) alike, so the
chain never forks. `flask --app wsgi audit verify` recomputes the chain and reports a changed,
removed or inserted row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column

GENESIS_HASH = "0" * 64


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_patient_id_occurred_at", "patient_id", "occurred_at"),
        Index("ix_audit_log_actor_id_occurred_at", "actor_id", "occurred_at"),
    )

    id: Mapped[str] = id_column()
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[str | None] = mapped_column(String(36))
    actor_role: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[str] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(16))  # read | create | update | delete | export
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The end of the audit chain: one row, id 1."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
