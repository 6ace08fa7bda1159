"""Lotto's sessions: tests on every backend, lint, typecheck, the docs, and the benchmarks.

``nox`` with no arguments runs the tests on every backend, lint, typecheck and the docs
build (which executes the pages' examples); that is the command CI runs (``.ci/run``).
PyTorch is always installed as ``torch==2.13.0``: an unpinned ``torch`` pulls a
multi-GB CUDA build.
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
BENCHMARKS = [
    "bench_global_prune.py",
    "bench_structures.py",
    "bench_torch_train_step.py",
    "bench_torch_compile_step.py",
    "bench_torch_many_layers.py",
    "bench_torch_ddp.py",
    "bench_torch_sharded_prune.py",
    "bench_torch_sparse_inference.py",
    "bench_jax_global_prune.py",
    "bench_jax_train_step.py",
    "bench_jax_many_layers.py",
]
JAX_ENV = {
    "JAX_PLATFORMS": "cpu",
    # two host devices, so that the device fixture hands out a non-default one
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
}


@nox.session(name="tests-core")
def tests_core(session: nox.Session) -> None:
    """The core suite on NumPy and array-api-strict, and the core's doctests."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "tests/core",
        "lotto_core",
        *session.posargs,
        env={"LOTTO_NAMESPACES": "numpy,array_api_strict"},
    )


@nox.session(name="tests-torch")
def tests_torch(session: nox.Session) -> None:
    """The core suite on torch tensors, the host kernels' and the PyTorch tests, and the
    ``lotto`` program's tests."""
    session.install("torch==2.13.0", "-e", ".[torch,test,experiment]")
    session.run(
        "pytest",
        "tests/core",
        "tests/host",
        "tests/torch",
        "tests/experiment",
        "lotto_backends/torch",
        "lotto_backends/experiment",
        "--ignore=lotto_backends/experiment/jax_backend.py",  # needs jax: tests-jax collects it
        *session.posargs,
        env={"LOTTO_NAMESPACES": "torch"},
    )
    # several gloo processes on 127.0.0.1 (torchrun), in a pytest process of their own
    session.run(
        "pytest",
        "tests/torch_distributed",
        *session.posargs,
        env={"LOTTO_NAMESPACES": "torch"},
        success_codes=[0, 5] if session.posargs else [0],  # 5: a -k filter left nothing here
    )


@nox.session(name="tests-jax")
def tests_jax(session: nox.Session) -> None:
    """The core suite on JAX arrays (fewer Hypothesis examples: JAX compiles each shape),
    and the JAX tests, the ``lotto`` program's JAX backend among them; torch too, for the
    tests that compare with the torch backend."""
    session.install("torch==2.13.0", "-e", ".[jax,checkpoint,test,test-jax,experiment]")
    session.run(
        "pytest",
        "tests/core",
        "tests/jax",
        "lotto_backends/jax",
        "lotto_backends/experiment/jax_backend.py",
        *session.posargs,
        env={"LOTTO_NAMESPACES": "jax", "LOTTO_HYPOTHESIS_PROFILE": "jax", **JAX_ENV},
    )
    # sharded weights, on 4 simulated devices: XLA fixes the device count when a process
    # starts, so these run in a pytest process of their own (and fail, not skip, without 4)
    session.run(
        "pytest",
        "tests/jax_sharded",
        *session.posargs,
        env={
            "LOTTO_NAMESPACES": "jax",
            "LOTTO_HYPOTHESIS_PROFILE": "jax",
            "LOTTO_REQUIRE_4_DEVICES": "1",
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        },
        success_codes=[0, 5] if session.posargs else [0],  # 5: a -k filter left nothing here
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on lotto_core and lotto_backends.torch."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, warnings as errors; every build runs the pages' code cells."""
    session.install("torch==2.13.0", "-e", ".[torch,jax,docs]")
    # -E: read every page afresh, so that every code cell runs again on every build
    session.run("sphinx-build", "-E", "-T", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The lottery-ticket experiment: ``lotto`` with the options given after ``--``
    (none: the quick default run; ``-- --preset paper``: the paper's protocol; ``-- --backend
    jax``: on JAX)."""
    # pip's own progress shows (the first install downloads JAX and friends); `nox -s demo -R`
    # reuses the environment and skips the install on later runs
    session.install("torch==2.13.0", "-e", ".[torch,jax,experiment]", silent=False)
    session.run("lotto", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The benchmarks, each against its baseline in the same run (not a test)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "bench"), "-e", ".[torch,jax]")  # torch==2.13.0
    for script in BENCHMARKS:
        session.run("python", f"bench/{script}", *session.posargs)
