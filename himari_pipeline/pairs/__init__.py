"""Pairs and spreads: legs aligned on common bars, a causal hedge ratio and z-score, the
mean-reversion rule and its evaluation on the trading rules of every leg."""
