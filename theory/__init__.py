"""Numerical checks of the complexity claims of composed fine-tuning (see theory/README.md).

Run ``python -m theory [--quick] [--json PATH]``; the checks live in :mod:`theory.checks`.
"""
