"""Selection and zeroing over arrays in host memory, with fused numba kernels, shared by
the torch and JAX adapters (einops-style: one algorithm, thin backends).

An adapter hands over zero-copy NumPy views of its CPU arrays (``search.HostParam``)
and wraps the NumPy results in its own array type; groups the kernels do not cover go
to the adapter's own path. Nothing here imports a framework.
"""
