"""One ``xp`` fixture over every Array API namespace, and a ``device`` fixture that hands
a non-default device where the namespace has one.

``LOTTO_NAMESPACES`` (comma-separated: numpy, array_api_strict, torch, jax) chooses the
namespaces; a chosen namespace that cannot be imported is an error, not a skip, so a CI
session can never pass by testing nothing. Without it, every importable one runs.
"""

from __future__ import annotations

import enum
import importlib
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# JAX compiles every new shape eagerly, so its session runs fewer examples per property.
settings.register_profile(
    "default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "jax", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("LOTTO_HYPOTHESIS_PROFILE", "default"))


class Backend(enum.Enum):
    NUMPY = "numpy"
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    JAX = "jax"


def _chosen() -> list[Backend]:
    names = os.environ.get("LOTTO_NAMESPACES")
    if names is None:
        return list(Backend)
    chosen = [Backend(n.strip()) for n in names.split(",") if n.strip()]
    for backend in chosen:
        importlib.import_module(backend.value)  # fail loudly if a chosen one is missing
    return chosen


def namespace(backend: Backend) -> Any:
    if backend is Backend.NUMPY:
        import array_api_compat.numpy as xp
    elif backend is Backend.ARRAY_API_STRICT:
        import array_api_strict as xp
    elif backend is Backend.TORCH:
        import array_api_compat.torch as xp
    else:
        import jax.numpy as xp
    return xp


@pytest.fixture(scope="session", params=_chosen(), ids=lambda b: b.value)
def backend(request: pytest.FixtureRequest) -> Backend:
    if os.environ.get("LOTTO_NAMESPACES") is None:
        pytest.importorskip(request.param.value)
    return request.param


@pytest.fixture(scope="session")
def xp(backend: Backend) -> Any:
    return namespace(backend)


@pytest.fixture(scope="session")
def device(backend: Backend, xp: Any) -> Any:
    """A device other than the default one where the namespace offers it (array-api-strict
    always; JAX with several host devices), so that results prove they stay there."""
    if backend is Backend.ARRAY_API_STRICT:
        import array_api_strict

        return array_api_strict.Device("device1")
    if backend is Backend.JAX:
        import jax

        return jax.devices()[-1]
    if backend is Backend.TORCH:
        import torch

        # an index, as on the tensors made there: torch.device("cuda") != torch.device("cuda:0")
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    return "cpu"
