"""The project installs itself consistently: environment.yml defers to pyproject.toml."""

import re
import tomllib

import yaml

from conftest import REPO


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert len(pythons) == 1, "environment.yml must pin python exactly once"
    version = pythons[0].split("=")[-1]
    lo, hi = re.findall(r">=([\d.]+)", project["requires-python"])[0], re.findall(r"<([\d.]+)", project["requires-python"])
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))
    assert as_tuple(version) >= as_tuple(lo) and (not hi or as_tuple(version) < as_tuple(hi[0])), \
        f"environment.yml python {version} is outside pyproject's requires-python {project['requires-python']}"
    assert "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip == ["-e .[dev]"], "environment.yml's pip section must only install the project (-e .[dev])"
    assert "dev" in project["optional-dependencies"], "pyproject.toml must define the dev extra environment.yml installs"
    # thin: nothing but python and pip from conda, so the two files can never disagree on a package
    assert all(d == "pip" or d.startswith("python") for d in deps if isinstance(d, str))


def test_widgets_install_under_iprkit_namespace():
    import iprkit.widgets

    assert iprkit.widgets.__file__.startswith(str(REPO / "widgets"))

