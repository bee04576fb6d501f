"""When each questionnaire is asked: time points after enrolment and their windows.

The schedule of INSTRUMENTS.md, counted from the enrolment's `started_on` (the patient's local
date), in calendar months (a due date past the end of a month falls on its last day):

| time point | due on | instruments |
|---|---|---|
| `baseline` | started_on | odi, nrs, eq5d5l, psfs, cpaq8, startback, careuse |
| `month3` (end of programme) | + 3 months | all but startback |
| `month6` | + 6 months | odi, nrs, eq5d5l, psfs, careuse |
| `month12` | + 12 months | odi, nrs, eq5d5l, psfs, careuse |

Windows (dates inclusive, in the patient's local date), chosen so that windows never overlap and
a late answer still describes its time point:

- `baseline`: open from started_on; `due` for the first 14 days (days 0–13), `overdue` on days
  14–27, `missed` from day 28 (four weeks into the programme an answer is no longer a baseline).
- follow-ups: open 14 days before the due date; `due` until 14 days after it, `overdue` until 42
  days after it (six weeks), `missed` afterwards. month3 closes at about month 4.4 and month6
  opens at about month 5.5, so a follow-up is never confused with the next one.

Before a window opens the status is `upcoming`; once answered, `completed`. A response can be
submitted only while its window is open (`due` or `overdue`).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

TIMEPOINTS = ("baseline", "month3", "month6", "month12")
FOLLOW_UPS = TIMEPOINTS[1:]
MONTHS = {"baseline": 0, "month3": 3, "month6": 6, "month12": 12}

SCHEDULE: dict[str, tuple[str, ...]] = {
    "baseline": ("odi", "nrs", "eq5d5l", "psfs", "cpaq8", "startback", "careuse"),
    "month3": ("odi", "nrs", "eq5d5l", "psfs", "cpaq8", "careuse"),
    "month6": ("odi", "nrs", "eq5d5l", "psfs", "careuse"),
    "month12": ("odi", "nrs", "eq5d5l", "psfs", "careuse"),
}

# (days the window opens before the due date, last `due` day after it, last open day after it)
BASELINE_WINDOW = (0, 13, 27)
FOLLOW_UP_WINDOW = (14, 14, 42)

STATUSES = ("upcoming", "due", "overdue", "missed", "completed")


def add_months(start: date, months: int) -> date:
    """Returns the same day `months` later, or the last day of that month when it is shorter."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Window:
    timepoint: str
    due_on: date
    opens_on: date
    due_until: date
    closes_on: date

    def status(self, today: date, *, completed: bool = False) -> str:
        """Returns upcoming, due, overdue, missed or completed on a local date."""
        if completed:
            return "completed"
        if today < self.opens_on:
            return "upcoming"
        if today <= self.due_until:
            return "due"
        if today <= self.closes_on:
            return "overdue"
        return "missed"

    def is_open(self, today: date) -> bool:
        return self.opens_on <= today <= self.closes_on


def window(started_on: date, timepoint: str) -> Window:
    """Returns the window of a time point for an enrolment that started on a date."""
    due_on = add_months(started_on, MONTHS[timepoint])
    before, due_days, open_days = BASELINE_WINDOW if timepoint == "baseline" else FOLLOW_UP_WINDOW
    return Window(
        timepoint=timepoint,
        due_on=due_on,
        opens_on=due_on - timedelta(days=before),
        due_until=due_on + timedelta(days=due_days),
        closes_on=due_on + timedelta(days=open_days),
    )


def timepoints_of(key: str) -> tuple[str, ...]:
    """Returns the time points at which a questionnaire is asked."""
    return tuple(tp for tp in TIMEPOINTS if key in SCHEDULE[tp])
