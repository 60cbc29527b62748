"""Install emoexp and its pinned stack into the active Python, only if something is missing.

A no-op in about a second when every pin is already satisfied, so `make train` and
`make test` can call it every time without rebuilding a multi-GB environment.
Bring your own venv/conda env; this installs into whichever interpreter runs it.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# hydra-optuna-sweeper declares optuna<3 but works with optuna 5; installing it normally
# would silently downgrade optuna, so it is installed without its dependencies.
NO_DEPS = ("hydra-optuna-sweeper==1.3.0",)


def unsatisfied(requirements: list[str]) -> list[str]:
    """Return the requirements that the active interpreter does not satisfy."""
    missing = []
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            missing.append(line)
    return missing


def emoexp_is_this_checkout() -> bool:
    """True if ``import emoexp`` resolves to this checkout's ``src/emoexp``."""
    try:
        distribution = importlib.metadata.distribution("emoexp")
    except importlib.metadata.PackageNotFoundError:
        return False
    for file in distribution.files or []:
        text = str(file)
        if text.endswith(".pth") or "direct_url" in text:
            content = (distribution.locate_file(file)).read_text(errors="ignore")
            if str(ROOT / "src") in content or ROOT.as_uri() in content:
                return True
    return False


def main() -> int:
    """Install what is missing; print what was done."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    missing = unsatisfied(requirements)
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    if missing or not emoexp_is_this_checkout():
        print(f"ensure_installed: installing emoexp from {ROOT} ({len(missing)} pinned package(s) missing)")
        subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    no_deps_missing = unsatisfied(list(NO_DEPS))
    if no_deps_missing:
        subprocess.run([*pip, "--no-deps", *no_deps_missing], check=True)
    if not missing and not no_deps_missing:
        print("ensure_installed: all pinned packages present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
