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


def run_python(code: str, cwd: Path, pythonpath: Path | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object last."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MLFLOW_TRACKING_URI"}}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
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


@pytest.mark.slow
def test_experiment_runs_with_the_plugin_strategy(installed: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    out = run_python(
        f"""
        import json
        from alscope import ExperimentConfig, run_experiment
        result = run_experiment(ExperimentConfig(
            strategy={{"name": "information_density", "params": {{"beta": 0.5}}}},
            cycles=1, trials=1,
            training={{"epochs": 3, "device": "cpu"}},
            results_dir={str(results)!r},
            tracking={{"enabled": False}},
        ))
        trial = result.trials[0]
        print(json.dumps({{
            "cycles": len(trial.cycles),
            "selected": trial.cycles[0].selected,
            "labeled": trial.labeled,
            "aubc": result.summary["aubc"],
            "run_dir": str(result.run_dir),
        }}))
        """,
        cwd=tmp_path,
        pythonpath=installed,
    )
    assert out["cycles"] == 2
    selected = out["selected"]
    assert len(selected) == 20 and len(set(selected)) == 20
    initial = out["labeled"][: len(out["labeled"]) - len(selected)]
    assert not set(selected) & set(initial)
    assert 0.0 <= out["aubc"] <= 1.0
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
