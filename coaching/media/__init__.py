"""The media domain."""
