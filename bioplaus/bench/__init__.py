"""Benchmarks of bioplaus's ops (``bioplaus bench ...`` on the command line)."""
