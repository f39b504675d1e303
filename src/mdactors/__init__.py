"""mdactors: a shared, realistic, controllable market-data simulator built on trio."""

__version__ = "0.1.0"
