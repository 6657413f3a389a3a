"""The plugin template is a real distribution: installed (into a temporary folder, never
the environment) it adds ``information_density`` to alscope, and a whole experiment
runs with it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "plugins" / "alscope-example-strategy"


def clean_env(pythonpath: Path | None) -> dict[str, str]:
    """This environment, seeing the plugin only through ``pythonpath``."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MLFLOW_TRACKING_URI"}}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def run_python(code: str, cwd: Path, pythonpath: Path | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object last."""
    env = clean_env(pythonpath)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template installed with pip into a temporary ``--target`` folder."""
    for needed in ("pip", "setuptools"):  # found, not imported (setuptools patches distutils)
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not available")
    root = tmp_path_factory.mktemp("plugin")
    # Build from a copy so that the build leaves no build/ or *.egg-info in the repo.
    src = root / "src"
    shutil.copytree(
        TEMPLATE,
        src,
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*cache"),
    )
    target = root / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    assert (target / "alscope_example_strategy" / "plugin.py").is_file()
    return target


def test_installed_plugin_registers_the_strategy(installed: Path, tmp_path: Path) -> None:
    out = run_python(
        """
        import json, sys
        from alscope.registry import get_registry
        r = get_registry()
        spec = r.resolve("strategy", "information_density")
        print(spec)
        print(json.dumps({
            "namespace": spec.namespace,
            "distribution": spec.distribution,
            "qualified": r.resolve("strategy", "example:information_density").name,
            "alias": r.resolve("strategy", "InformationDensity").name,
            "names": r.names("strategy"),
            "paper": spec.paper,
            "torch_imported": "torch" in sys.modules,
            "module": r.plugins["example"].module,
        }))
        """,
        cwd=tmp_path,
        pythonpath=installed,
    )
    assert out["namespace"] == "example"
    assert out["distribution"].replace("_", "-").lower() == "alscope-example-strategy"
    assert out["qualified"] == out["alias"] == "information_density"
    assert "information_density" in out["names"] and "entropy" in out["names"]
    assert "Settles & Craven" in out["paper"]
    assert out["module"] == "alscope_example_strategy.plugin"
    assert not out["torch_imported"], "building the registry must not import torch"


def alscope_cli(*args: str, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    """The ``alscope`` command in a fresh interpreter that sees the installed plugin."""
    env = clean_env(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "alscope.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_alscope_run_uses_the_plugin_strategy(installed: Path, tmp_path: Path) -> None:
    listed = alscope_cli("list", "strategies", cwd=tmp_path, pythonpath=installed)
    assert listed.returncode == 0, listed.stderr
    assert "information_density" in listed.stdout and "alscope-example-strategy" in listed.stdout
    results = tmp_path / "results"
    proc = alscope_cli(
        "run",
        "--strategy",
        "information_density",
        "--strategy-param",
        "beta=0.5",
        "--cycle",
        "1",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--no-track",
        "--json",
        "--results-dir",
        str(results),
        cwd=tmp_path,
        pythonpath=installed,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["config"]["strategy"] == {"name": "information_density", "params": {"beta": 0.5}}
    assert out["curve"]["n_labeled"] == [20, 40]
    state = json.loads((Path(out["run_dir"]) / "state.json").read_text())
    trial = state["trials"][0]
    selected = trial["cycles"][0]["selected"]
    assert len(selected) == 20 and len(set(selected)) == 20
    assert not set(selected) & set(trial["labeled"][:20])
    assert 0.0 <= out["summary"]["aubc"] <= 1.0
    assert Path(out["run_dir"]).is_relative_to(results)


def test_strategy_is_unknown_without_the_plugin(tmp_path: Path) -> None:
    out = run_python(
        """
        import json
        from importlib.metadata import PackageNotFoundError, distribution
        try:
            distribution("alscope-example-strategy")
            print(json.dumps({"installed": True}))
            raise SystemExit(0)
        except PackageNotFoundError:
            pass
        from alscope.errors import UnknownComponentError
        from alscope.registry import get_registry
        try:
            get_registry().resolve("strategy", "information_density")
        except UnknownComponentError as exc:
            print(json.dumps({"installed": False, "error": str(exc)}))
        else:
            print(json.dumps({"installed": False, "error": None}))
        """,
        cwd=tmp_path,
    )
    if out["installed"]:
        pytest.skip("alscope-example-strategy is installed in this environment")
    assert out["error"] is not None, "information_density resolved without the plugin"
    assert "unknown strategy 'information_density'" in out["error"]
