"""Training task modules on frozen bases: one language at a time, or with the target bases in the loop."""
