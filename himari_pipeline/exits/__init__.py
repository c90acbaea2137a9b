"""The exit optimizer (log 002): given an open position, learn when and how to close it."""
