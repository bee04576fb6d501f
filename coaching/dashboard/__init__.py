"""The programme owners' dashboard: one HTML page with its own script and styles."""
