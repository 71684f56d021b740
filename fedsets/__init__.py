"""Data sets for benchmarks and demos: raw source files, FLamby's splits and settings (no runtime role imports it
but the CLI's data commands; nodes read their own task tables with :mod:`fedcore.tables`)."""
