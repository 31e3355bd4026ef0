"""Offline tools, not installed with the service: the simulator of passes, training, and the team's reference code."""
