"""Biplane worker (data plane): ML tasks run from the data stream."""
