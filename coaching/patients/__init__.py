"""The therapist's work list and patient detail."""
