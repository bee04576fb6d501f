"""Find every row held about a patient by walking the schema from their account.

The walk follows the metadata's foreign keys downwards, from the account to the rows that point
at it, then to the rows that point at those, and so on, so a new domain's tables are covered as
soon as their models exist. Two kinds of link are followed:

- a foreign key: `ON DELETE SET NULL` means the row only *mentions* the patient (an invite that
  was redeemed by them, a message they sent): it is exported and, on erasure, the column is
  cleared, but the walk does not go on from it. Any other foreign key means the row belongs to
  the patient (it would go with the account).
- a column without a foreign key, named like one: `patient_id`, `account_id` or `recipient_id`
  (the account), or `<thing>_id` where `<thing>s` is a table (e.g. `push_log.notification_id`).
  Derived and append-only tables keep such plain ids on purpose.

What the walk must not treat like the rest is listed below, with the reason: secrets that are
never exported, the audit log that outlives the patient, and the uptake events that stay, without
the patient's identity, so that the funnel keeps counting them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import Table, select

from coaching.extensions import db

ROOT_TABLE = "accounts"

# Credentials and replay records: deleted on erasure, never exported (a password hash or a
# refresh-token hash is no information about the patient, and would only help an attacker).
SECRET_TABLES = frozenset({"login_sessions", "refresh_tokens", "idempotency_records"})
# Columns left out of every exported row, wherever they appear.
SECRET_COLUMNS = frozenset(
    {"password_hash", "token_hash", "claim_token", "prev_hash", "row_hash", "fingerprint"}
)
# Kept as they are on erasure. The audit log (NEN 7513) must show who looked at a record even
# after the record has gone; its rows name the patient only by the random account id.
KEPT_TABLES = frozenset({"audit_log", "erasure_records"})
# Kept on erasure with these columns replaced by a random pseudonym (the same one for all of one
# patient's rows, stored nowhere): the funnel counts each invite's steps without knowing whose.
PSEUDONYMISED_COLUMNS = {"uptake_events": ("patient_id",)}
# Kept on erasure with these columns cleared (derived rows that follow `invites.patient_id`,
# which the foreign key clears too).
CLEARED_COLUMNS = {"funnel_milestones": ("patient_id",)}
# The privacy domain's own tables whose stored objects never go into an export (an earlier
# export's ZIP inside the next one).
NO_MEDIA_IN_EXPORT = frozenset({"data_exports"})

ACCOUNT_COLUMNS = frozenset({"patient_id", "account_id", "recipient_id"})
# Plain id columns that do not make their row belong to what they name: a push-log row is its
# notification's, and the device it went to may be another account's by now (a phone passed on
# keeps its push token, which moves to the account signed in on it).
NOT_BELONGING = frozenset({("push_log", "device_id")})
CHUNK = 500
# An id as `new_id` makes it (and PostgreSQL's native uuids print).
UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class Link:
    """A child table's column that points at a parent table's column."""

    child: str
    column: str
    parent: str
    parent_column: str
    mentions_only: bool  # ON DELETE SET NULL: the child row mentions, not belongs to, the parent
    declared: bool  # a real foreign key (False: a plain id column named like one)


def _plain_id_target(column: str, tables: dict[str, Table]) -> str | None:
    if column in ACCOUNT_COLUMNS:
        return ROOT_TABLE
    if not column.endswith("_id"):
        return None
    stem = column[:-3]
    for name in (f"{stem}s", f"{stem}es", f"{stem[:-1]}ies" if stem.endswith("y") else ""):
        table = tables.get(name)
        if table is not None and len(table.primary_key.columns) == 1:
            return name
    return None


def links() -> list[Link]:
    """Returns every link of the schema, declared foreign keys and plain id columns alike."""
    tables = dict(db.metadata.tables)
    found: list[Link] = []
    for table in db.metadata.sorted_tables:
        declared = set()
        for fk in table.foreign_keys:
            declared.add(fk.parent.name)
            found.append(
                Link(
                    child=table.name,
                    column=fk.parent.name,
                    parent=fk.column.table.name,
                    parent_column=fk.column.name,
                    mentions_only=(fk.ondelete or "").upper() == "SET NULL",
                    declared=True,
                )
            )
        for column in table.columns:
            if column.name in declared or (table.name, column.name) in NOT_BELONGING:
                continue
            target = _plain_id_target(column.name, tables)
            if target is None or target == table.name:
                continue
            (target_pk,) = tables[target].primary_key.columns
            found.append(
                Link(
                    child=table.name,
                    column=column.name,
                    parent=target,
                    parent_column=target_pk.name,
                    mentions_only=False,
                    declared=False,
                )
            )
    return found


@dataclass
class Collected:
    """The rows held about one patient, by table and primary key."""

    patient_id: str
    # Rows that belong to the patient: table -> primary key -> row.
    rows: dict[str, dict[tuple, dict]] = field(default_factory=lambda: defaultdict(dict))
    # Rows that only mention the patient: table -> primary key -> (row, the mentioning columns).
    mentions: dict[str, dict[tuple, tuple[dict, set[str]]]] = field(
        default_factory=lambda: defaultdict(dict)
    )

    def tables(self) -> list[str]:
        """Returns the tables with rows, in the metadata's dependency order (parents first)."""
        order = [t.name for t in db.metadata.sorted_tables]
        present = set(self.rows) | set(self.mentions)
        return [name for name in order if name in present]

    def count(self) -> int:
        """Returns how many rows were found."""
        return sum(len(r) for r in self.rows.values()) + sum(len(m) for m in self.mentions.values())


def _chunks(values: Iterable, size: int = CHUNK) -> Iterator[list]:
    batch: list = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def primary_key(table: Table, row: dict) -> tuple:
    """Returns a row's primary key as a tuple."""
    return tuple(row[c.name] for c in table.primary_key.columns)


def collect(patient_id: str) -> Collected:
    """Returns every row reachable from the patient's account (an empty result if none)."""
    tables = db.metadata.tables
    found = Collected(patient_id=patient_id)
    accounts = tables[ROOT_TABLE]
    root = (
        db.session.execute(select(accounts).where(accounts.c.id == patient_id)).mappings().first()
    )
    if root is None:
        return found
    found.rows[ROOT_TABLE][(patient_id,)] = dict(root)
    graph = links()
    followed: dict[Link, set] = defaultdict(set)
    changed = True
    while changed:
        changed = False
        for link in graph:
            # Only the root account is walked from: other accounts reached (none today) are not
            # the patient's to export.
            parents = found.rows.get(link.parent)
            if not parents:
                continue
            if link.parent == ROOT_TABLE:
                values = {patient_id}
            else:
                values = {row[link.parent_column] for row in parents.values()}
            values -= followed[link]
            values.discard(None)
            if not values:
                continue
            followed[link] |= values
            child = tables[link.child]
            for batch in _chunks(sorted(values, key=str)):
                result = db.session.execute(select(child).where(child.c[link.column].in_(batch)))
                for row in result.mappings():
                    row = dict(row)
                    key = primary_key(child, row)
                    if link.mentions_only:
                        entry = found.mentions[link.child].setdefault(key, (row, set()))
                        entry[1].add(link.column)
                    elif key not in found.rows[link.child] and link.child != ROOT_TABLE:
                        found.rows[link.child][key] = row
                        changed = True
    _add_idempotency_records(found)
    # A row that belongs to the patient is not also a mere mention.
    for table, mentioned in list(found.mentions.items()):
        for key in [k for k in mentioned if k in found.rows.get(table, {})]:
            del mentioned[key]
        if not mentioned:
            del found.mentions[table]
    for table in [t for t, r in found.rows.items() if not r]:
        del found.rows[table]
    return found


def _add_idempotency_records(found: Collected) -> None:
    # Stored answers of creating POSTs are scoped by the caller's account, not linked to it: the
    # patient's own are found by their scope; an answer to staff (a therapist's message to the
    # patient, their appointment) by any id of the patient's rows in its body. Ids are random
    # UUIDs, so one in a body can only be that row's; a row deleted since (and so not found here)
    # leaves its answer to the idempotency purge, at most a window later.
    table = db.metadata.tables.get("idempotency_records")
    if table is None:
        return
    # Only the rows' own ids: a column pointing elsewhere (the therapist as a message's sender)
    # would match every answer to that therapist.
    keys = [key for rows in found.rows.values() for key in rows]
    keys += [key for mentioned in found.mentions.values() for key in mentioned]
    ids = {found.patient_id.lower()}
    ids.update(
        str(value).lower()
        for key in keys
        for value in key
        if isinstance(value, str | UUID) and UUID_PATTERN.fullmatch(str(value))
    )
    scope = f"account:{found.patient_id}"
    result = db.session.execute(select(table).execution_options(yield_per=CHUNK))
    for row in result.mappings():
        if row["scope"] == scope or not ids.isdisjoint(
            value.lower() for value in UUID_PATTERN.findall(row["body"] or "")
        ):
            row = dict(row)
            found.rows[table.name][primary_key(table, row)] = row
