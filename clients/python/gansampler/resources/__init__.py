"""API resources: ``samples``, ``models``, ``jobs`` (sync and async twins over the pure builders)."""
