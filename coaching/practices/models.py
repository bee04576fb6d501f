"""Physiotherapy practices. Therapists are accounts with the role `therapist` and a practice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from coaching.db import Base, UTCDateTime, id_column


class Practice(Base):
    __tablename__ = "practices"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
