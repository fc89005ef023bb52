"""The Python client, the `biplane` CLI and the demo: what the UI and scripts use to talk to control."""
