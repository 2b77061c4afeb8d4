"""The fast wing: everything that exists only for speed.

Each module ``bioplaus.fast.<family>`` holds fast twins of the reference
functions of that family (same names, same signatures), tested equal to
them in ``tests/fast``; :mod:`bioplaus.kernels` picks them up. Process-wide
state (the host memory pool, :mod:`bioplaus.fast.memory`; the host threads,
:mod:`bioplaus.fast.threads`) lives only here. Nothing in the reference path
imports this package.
"""
