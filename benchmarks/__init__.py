"""Benchmarks, each a script (see its docstring); a package so that one can import another
(`from benchmarks.engine_vs_raw import ...`, run with PYTHONPATH=.) and mypy names each module once."""
