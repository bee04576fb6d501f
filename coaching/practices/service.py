"""Practices and their therapists (managed by programme owners)."""

from __future__ import annotations

from sqlalchemy import select

from coaching import clock
from coaching.accounts import service as accounts
from coaching.accounts.models import Account
from coaching.errors import NotFound
from coaching.extensions import db
from coaching.practices.models import Practice


def create_practice(*, name: str, city: str) -> Practice:
    """Returns a new practice."""
    practice = Practice(name=name.strip(), city=city.strip(), created_at=clock.now())
    db.session.add(practice)
    db.session.flush()
    return practice


def practices_query():
    """Returns a select() of all practices by name."""
    return select(Practice).order_by(Practice.name, Practice.id)


def get_practice_for(caller: Account, practice_id: str) -> Practice:
    """Returns the practice if the caller may see it (owners: all), or raises NotFound."""
    practice = db.session.get(Practice, practice_id)
    if practice is None or caller.role != "owner":
        raise NotFound("Practice not found")
    return practice


def create_therapist(
    *, practice: Practice, email: str, display_name: str, password: str
) -> Account:
    """Returns a new therapist account in a practice."""
    return accounts.create_account(
        email=email,
        password=password,
        role="therapist",
        display_name=display_name,
        practice_id=practice.id,
    )


def therapists_query(practice: Practice):
    """Returns a select() of a practice's therapists by name."""
    return (
        select(Account)
        .where(Account.practice_id == practice.id, Account.role == "therapist")
        .order_by(Account.display_name, Account.id)
    )
