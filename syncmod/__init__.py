"""syncmod: cross-lingual modular pre-training."""
__version__ = "0.1.0"
