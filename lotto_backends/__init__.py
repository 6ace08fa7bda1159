"""Lotto's framework adapters: each subpackage implements the core's prunable-layer
protocol (``lotto_core.protocol``) for one framework and re-exports the core's groups
and ``Pruner``, so that one import serves a user of that framework.

Importing this package imports no framework; each adapter imports its own framework
only when it is imported itself.
"""
