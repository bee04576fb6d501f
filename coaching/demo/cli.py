"""`flask demo seed`: demo data for trying the service, safe to run more than once.

Each domain may add a `coaching/<domain>/demo.py` with `seed(ctx, progress)`; they run in order
after the accounts, practices and patients made here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import select
from tqdm import tqdm

from coaching import clock
from coaching.accounts import service as accounts
from coaching.accounts.models import Account
from coaching.enrolment import service as enrolment
from coaching.extensions import db
from coaching.practices import service as practices
from coaching.practices.models import Practice

cli = AppGroup("demo", help="Demo data.")

PASSWORD = "demo-password-1"
DOMAIN_SEEDS = ("content", "outcomes", "messaging", "notifications", "metrics")

PRACTICES = [
    (
        "Fysiotherapie De Linde",
        "Utrecht",
        [("fenna@linde.demo", "Fenna de Vries"), ("joost@linde.demo", "Joost Bakker")],
    ),
    ("Rugcentrum Aan Zee", "Haarlem", [("sanne@aanzee.demo", "Sanne Visser")]),
]

# (e-mail, name, locale, stage): stage is how far the patient got.
PATIENTS = [
    ("anna@patient.demo", "Anna Jansen", "nl", "consented"),
    ("bram@patient.demo", "Bram Smit", "nl", "consented"),
    ("chris@patient.demo", "Chris Evans", "en", "consented"),
    ("dewi@patient.demo", "Dewi Kok", "nl", "registered"),
    ("emma@patient.demo", "Emma Mulder", "nl", "consented"),
    ("finn@patient.demo", "Finn de Boer", "en", "consented"),
]


@dataclass
class DemoContext:
    owner: Account
    practices: list[Practice] = field(default_factory=list)
    therapists: list[Account] = field(default_factory=list)
    patients: list[Account] = field(default_factory=list)
    credentials: list[tuple[str, str, str]] = field(default_factory=list)


def _account(email: str) -> Account | None:
    return accounts.find_by_email(email)


def seed_foundation(progress) -> DemoContext:
    """Returns the demo owner, practices, therapists, invites and patients (creating what is missing)."""
    owner = _account("owner@demo.test") or accounts.create_owner(
        email="owner@demo.test", password=PASSWORD, display_name="Programme owner"
    )
    ctx = DemoContext(owner=owner)
    ctx.credentials.append(("owner", owner.email, PASSWORD))
    progress.update(1)
    for name, city, therapists in PRACTICES:
        practice = db.session.execute(
            select(Practice).where(Practice.name == name)
        ).scalar_one_or_none()
        practice = practice or practices.create_practice(name=name, city=city)
        ctx.practices.append(practice)
        for email, display_name in therapists:
            therapist = _account(email) or practices.create_therapist(
                practice=practice, email=email, display_name=display_name, password=PASSWORD
            )
            ctx.therapists.append(therapist)
            ctx.credentials.append(("therapist", email, PASSWORD))
        progress.update(1)
    sources = ["gp", "physio", "specialist", "insurer", "self", "gp"]
    for index, (email, name, locale, stage) in enumerate(PATIENTS):
        therapist = ctx.therapists[index % len(ctx.therapists)]
        patient = _account(email)
        if patient is None:
            invite = enrolment.create_invite(
                therapist=therapist, referral_source=sources[index], channel="email"
            )
            enrolment.look_up_invite(invite.code, locale)
            patient = enrolment.register_patient(
                invite_code=invite.code,
                email=email,
                password=PASSWORD,
                display_name=name,
                locale=locale,
                timezone="Europe/Amsterdam",
            )
            if stage == "consented":
                enrolment.accept_consent(
                    patient=patient, version=enrolment.current_consent_version()
                )
        ctx.patients.append(patient)
        ctx.credentials.append(("patient", email, PASSWORD))
        progress.update(1)
    # Invites at earlier stages: sent but never opened, opened but not used.
    for therapist in ctx.therapists:
        existing = (
            db.session.execute(enrolment.invites_query(therapist, status="pending"))
            .scalars()
            .first()
        )
        if existing is None:
            enrolment.create_invite(therapist=therapist, referral_source="gp", channel="letter")
            opened = enrolment.create_invite(
                therapist=therapist, referral_source="insurer", channel="sms"
            )
            enrolment.look_up_invite(opened.code, "nl")
    progress.update(1)
    db.session.flush()
    return ctx


@cli.command("seed")
def seed() -> None:
    """Load demo accounts and data (running it again adds nothing twice)."""
    started = clock.now()
    domain_modules = []
    for name in DOMAIN_SEEDS:
        try:
            domain_modules.append(importlib.import_module(f"coaching.{name}.demo"))
        except ModuleNotFoundError as exc:
            if exc.name != f"coaching.{name}.demo":
                raise
    total = 3 + len(PRACTICES) + len(PATIENTS) + len(domain_modules)
    with tqdm(total=total, desc="demo seed", unit="step") as progress:
        ctx = seed_foundation(progress)
        db.session.commit()
        for module in domain_modules:
            progress.set_postfix_str(module.__name__.split(".")[1])
            module.seed(ctx, progress)
            db.session.commit()
            progress.update(1)
        progress.update(1)
    click.echo(
        f"\nDemo data ready in {(clock.now() - started) / timedelta(seconds=1):.1f} s. Sign in with:"
    )
    seen = set()
    for role, email, password in ctx.credentials:
        if email not in seen:
            seen.add(email)
            click.echo(f"  {role:<10} {email:<28} {password}")
