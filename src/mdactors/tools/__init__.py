"""Command-line tools for people: ``mdactors simulate`` (and its progress bar)."""
