"""Stateless forward/backward pairs; one module per family of op.

Every forward returns ``(out, cache)``; every backward takes the upstream
gradient and the cache and returns the gradients of the forward's inputs.
"""
