"""A wheel of emoexp carries its Hydra configs: installed (not editable), it trains from any folder.

The wheel is built from a copy of the sources (the build never writes into the checkout) and
installed into a virtual environment that reuses this interpreter's packages, so only emoexp
itself comes from the wheel.
"""

from __future__ import annotations

import os
import shutil
import site
import sqlite3
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600


def _run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``cwd`` with the test environment, failing with its output if it fails."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def _source_copy(target: Path) -> Path:
    """Copy what the wheel is built from; src/emoexp/conf stays a link to the copied conf/."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, target / name)
    shutil.copytree(REPO / "conf", target / "conf")
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", target / "src", symlinks=True, ignore=skip)
    return target


def _environment_over_this_stack(env: Path) -> None:
    """Create a virtual environment that sees this interpreter's packages after its own.

    Like ``--system-site-packages``, so the multi-GB stack (pip included) is reused, but also when
    this interpreter is itself a venv, whose packages ``--system-site-packages`` would not show.
    """
    venv.EnvBuilder(with_pip=False).create(env)
    own = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    stack = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if p in sys.path]
    # addsitedir also runs the stack's .pth files (e.g. the editable emoexp's, which appends the
    # checkout after everything else, so the wheel in ``own`` still comes first).
    (own / "_stack.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in stack))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment holding the emoexp wheel; returns its ``bin`` folder."""
    root = tmp_path_factory.mktemp("packaging")
    tree, dist, env = _source_copy(root / "source"), root / "dist", root / "venv"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    _run([*build, tree, "-w", dist], cwd=root)
    (wheel,) = dist.glob("emoexp-*.whl")
    _environment_over_this_stack(env)
    install = [env / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index"]
    _run([*install, "--disable-pip-version-check", wheel], cwd=root)
    return env / "bin"


def test_wheel_ships_the_configs_and_imports_from_the_environment(installed, tmp_path):
    probe = "import emoexp, emoexp.config as c; print(emoexp.__file__); print(c.CONF_DIR)"
    module, conf_dir = _run([installed / "python", "-c", probe], cwd=tmp_path).stdout.split()
    env = installed.parent
    # The wheel, not the editable checkout that the base interpreter also sees.
    assert Path(module).is_relative_to(env) and not Path(module).is_relative_to(REPO)
    assert Path(conf_dir) == Path(module).parent / "conf"
    shipped = {p.relative_to(conf_dir) for p in Path(conf_dir).rglob("*.yaml")}
    assert shipped == {p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml")}
    job = _run([installed / "emoexp-train", "--cfg", "job"], cwd=tmp_path).stdout
    assert "modality: audio" in job and "label_scheme:" in job


def test_installed_wheel_trains_from_another_folder(installed, tmp_path, cache_dir):
    store = tmp_path / "mlflow.db"
    overrides = [
        "debug=fast",
        "model=svm",
        f"tracking.uri=sqlite:///{store}",
        f"paths.output_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={cache_dir}",
    ]
    _run([installed / "emoexp-train", *overrides], cwd=tmp_path)
    with sqlite3.connect(store) as db:
        statuses = [status for (status,) in db.execute("SELECT status FROM runs")]
    assert statuses == ["FINISHED"]
