"""The messaging domain."""
