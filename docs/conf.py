"""Sphinx configuration of Lotto's documentation site (``nox -s docs``).

The pages are MyST Markdown; those with ``{code-cell}`` blocks are executed by MyST-NB on
every build, and a cell that raises fails the build. The API reference is generated
from the docstrings (NumPy style, read by napoleon), and the build checks that every
public name of the documented modules has an entry, so nothing public goes undocumented.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

# Document and execute the source tree this file is in, installed or not; the kernels
# that execute the pages inherit the environment, so they import the same tree.
ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
# The executed pages run on the CPU whatever the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import lotto_core  # noqa: E402

project = "Lotto"
author = "The Lotto developers"
copyright = "The Lotto developers"
release = version = lotto_core.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

exclude_patterns = ["_build", "jupyter_execute", ".jupyter_cache"]

# MyST-NB: execute every notebook page on every build, and fail on any error.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 300
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# API reference from the docstrings.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "pydata_sphinx_theme"
html_title = f"Lotto {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_show_sourcelink = False

# Every public name of these modules must have an entry in the API pages, under this
# module or under any other module that holds the same object (a re-export, or the
# submodule that defines it).
PUBLIC_MODULES = ["lotto_core", "lotto_backends.torch", "lotto_backends.jax"]
# checked too once they exist
OPTIONAL_PUBLIC_MODULES = ["lotto_backends.jax.pytree", "lotto_backends.torch.hf"]

_logger = logging.getLogger(__name__)


def check_api_complete(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn (an error under ``-W``) for every public name that has no API entry."""
    domain = env.get_domain("py")
    public = PUBLIC_MODULES + [name for name in OPTIONAL_PUBLIC_MODULES if importlib.util.find_spec(name)]
    for name in [*public, *domain.modules]:  # an incremental build may not have imported them
        importlib.import_module(name)
    documented = set()
    for full_name in domain.objects:
        module, _, member = full_name.rpartition(".")
        if module in sys.modules and hasattr(sys.modules[module], member):
            documented.add(id(getattr(sys.modules[module], member)))
    for name in public:
        module = sys.modules[name]
        for member in module.__all__:
            if id(getattr(module, member)) not in documented:
                _logger.warning("public name %s.%s has no entry in the API reference", name, member)


_ANY_ARGUMENTS = re.compile(r"\(\*args(: [^,]+)?, \*\*kwargs(: [^)]+)?\)")


def init_signature(
    app: Sphinx, what: str, name: str, obj: object, options: object, signature: str | None, returns: str | None
) -> tuple[str, None] | None:
    """A class's signature is its ``__init__``'s without ``self``, also where a metaclass
    defines ``__call__(*args, **kwargs)`` (Flax NNX modules), which autodoc shows instead."""
    if what != "class" or not signature or not _ANY_ARGUMENTS.fullmatch(signature):
        return None
    try:
        init = inspect.signature(obj.__init__)  # type: ignore[misc]
    except (TypeError, ValueError):
        return None
    parameters = [
        param.replace(annotation=_Shown(param.annotation)) if isinstance(param.annotation, str) else param
        for param in list(init.parameters.values())[1:]
    ]
    return str(init.replace(parameters=parameters, return_annotation=inspect.Signature.empty)), None


class _Shown:
    """A string annotation (``from __future__ import annotations``) shown without quotes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def setup(app: Sphinx) -> None:
    app.connect("env-check-consistency", check_api_complete)
    app.connect("autodoc-process-signature", init_signature)
