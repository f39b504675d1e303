"""Trio actors: the Topic fan-out primitive, symbol actors, the market and its supervisor."""
