"""HIMARI: from OHLCV bars to leak-proof datasets, PPO checkpoints and validation reports."""

__version__ = "0.1.0"
