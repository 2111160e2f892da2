"""MLflow tracking: the rank-0 tracker, replay of what was logged offline, and `syncmod tracking`."""
