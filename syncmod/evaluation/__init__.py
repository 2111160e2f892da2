"""Evaluation: language-model quality (bits per byte) and cross-lingual alignment diagnostics."""
