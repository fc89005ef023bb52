"""Biplane control plane: REST + WebSocket hub, planner, control-plane tasks."""
