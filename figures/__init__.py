"""Figures drawn from saved results only (``python -m figures <experiment> DIR``); nothing retrains."""
