"""Pre-training: bases, sync points, objectives, the schedule, the DeepSpeed loop, checkpoints and export."""
