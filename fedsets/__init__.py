"""Data sets for benchmarks, ``fedledger data`` and the demo: raw source files, FLamby's splits and settings.

No node or aggregator imports it: an institution reads its own task tables with :mod:`fedcore.tables`.
"""
