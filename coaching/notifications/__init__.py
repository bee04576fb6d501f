"""Notifications: a database-backed queue of reminders and messages to push to devices."""
