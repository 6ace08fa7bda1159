"""The distribution builds: a wheel and an sdist from the tracked files, and the wheel
installs into a fresh virtual environment, typed (``py.typed``), licensed, one version."""

from __future__ import annotations

import email
import pathlib
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile

import lotto_core

ROOT = pathlib.Path(__file__).parents[2]


def _tracked_copy(dest: pathlib.Path) -> pathlib.Path:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _build(source: pathlib.Path, out: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """``python -m build``: the sdist and the wheel, each in an isolated environment with
    the build requirements of pyproject.toml, as a packager builds them."""
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    return wheel, sdist


def test_wheel_and_sdist_build_and_the_wheel_installs_in_a_fresh_venv(tmp_path):
    source = _tracked_copy(tmp_path / "src")
    wheel, sdist = _build(source, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        metadata = email.message_from_bytes(whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    assert "lotto_core/py.typed" in names
    assert "lotto_backends/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert metadata["Version"] == lotto_core.__version__
    assert metadata["License-Expression"] == "MIT"
    with tarfile.open(sdist) as sd:
        assert any(n.endswith("/LICENSE") for n in sd.getnames())
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr
    # the installed package, with this environment's NumPy/SciPy/array-api-compat beside it
    site = [p for p in sys.path if p.endswith("site-packages")]
    check = subprocess.run(
        [python, "-c", "import lotto_core, sys; print(lotto_core.__file__, lotto_core.__version__)"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(site)},
        cwd=tmp_path,  # not the checkout, whose lotto_core would come first
    )
    assert check.returncode == 0, check.stderr
    where, version = check.stdout.split()
    assert where.startswith(str(env))
    assert version == lotto_core.__version__
