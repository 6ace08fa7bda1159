"""``python -m lotto_backends.experiment``: the ``lotto`` command."""

from .cli import main

raise SystemExit(main())
