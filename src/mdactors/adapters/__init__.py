"""The outside world behind small interfaces: history stores and metrics."""
