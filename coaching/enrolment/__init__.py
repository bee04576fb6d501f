"""The enrolment domain."""
