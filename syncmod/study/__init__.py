"""Studies: conditions x seeds x tasks x module types, their statistics and report, and the demo preset."""
