"""Biplane web UI (NiceGUI): new job, jobs list and a live job page, talking to control via client.api."""
