"""The demo domain."""
