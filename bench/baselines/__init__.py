"""Minimal reference servers the harness measures next to mdactors, under the same load.

Small and honest: each does what a competent first version would — one
shared generator per symbol that encodes each tick once, then hands it to
every client — and nothing more (no conflation policy beyond the library's
own, no metrics, no drain). Both log ``{"event": "listening", ...}`` on
stderr like mdactors, so the harness starts them the same way.
"""
