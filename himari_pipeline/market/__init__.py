"""Market data: the canonical bar schema, the synthetic market, file readers and validation."""
