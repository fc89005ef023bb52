"""Biplane web UI (NiceGUI)."""
