"""The ``lotto`` command-line program: a full lottery-ticket experiment (iterative
magnitude pruning with the random re-initialization and random pruning controls) on
built-in or user data, resumable after every round.

One module per job: ``cli`` (options, presets, ``main``), ``data`` (datasets and
``.npz`` files), ``models`` (the architectures), ``backend`` (what a framework provides,
and finding it), ``training`` (one training run), ``runner`` (the rounds, controls and
saved state), ``results`` and ``report`` (figures, files, plot), ``progress`` (the
terminal), ``atomic`` (crash-safe writes), and one ``<framework>_backend`` per framework.
Importing the package imports no framework.
"""

from .cli import main

__all__ = ["main"]
