"""Module algebra: merge methods over weight deltas (merge.py), each module type's delta (deltas.py), and the
`syncmod merge` command (cli.py)."""
