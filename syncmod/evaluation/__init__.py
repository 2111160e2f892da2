"""Evaluating task modules: scores, the cross-lingual transfer matrix, reports, and `syncmod eval`."""
