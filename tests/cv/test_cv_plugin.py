"""alscope-cv as a plugin: registration without torch, names, aliases, claims, install and
uninstall, and the copy of torchvision's file catalogue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest.importorskip("alscope_cv", reason="alscope-cv is not installed (pip install ./alscope-cv)")

from alscope_cv import catalog
from alscope_cv.medmnist_info import SUBSETS, parse_subset_name

from alscope import registry as registry_module
from alscope.errors import UnknownComponentError
from alscope.registry import Registry

DATASETS = [
    "mnist",
    "fashion_mnist",
    "emnist",
    "cifar10",
    "cifar100",
    "svhn",
    "tiny_imagenet",
    "medmnist",
    "imagefolder",
]
BACKBONES = ["cnn", "resnet18", "resnet34", "resnet50", "vgg16"]
CV_ROOT = Path(__file__).resolve().parents[2] / "alscope-cv"


def run_python(code: str, cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
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


def test_registration_imports_neither_torch_nor_torchvision(tmp_path: Path) -> None:
    out = run_python(
        """
        import json, sys
        import alscope_cv.plugin
        heavy = sorted(m for m in ("torch", "torchvision", "PIL", "scipy") if m in sys.modules)
        from alscope.registry import get_registry
        r = get_registry()
        spec = r.resolve("backbone", "cv:resnet18")
        print(json.dumps({
            "heavy": heavy,
            "torchvision": "torchvision" in sys.modules,
            "plugin": r.plugins["cv"].module,
            "distribution": spec.distribution,
            "datasets": [s.name for s in r.specs("dataset") if s.namespace == "cv"],
            "backbones": [s.name for s in r.specs("backbone") if s.namespace == "cv"],
        }))
        """,
        tmp_path,
    )
    assert out["heavy"] == [], f"importing alscope_cv.plugin imported {out['heavy']}"
    assert not out["torchvision"], "building the registry imported torchvision"
    assert out["plugin"] == "alscope_cv.plugin"
    assert out["distribution"].replace("_", "-").lower() == "alscope-cv"
    assert sorted(out["datasets"]) == sorted(DATASETS)
    assert sorted(out["backbones"]) == sorted(BACKBONES)


def test_names_aliases_and_qualified_names() -> None:
    r = Registry()
    for name in DATASETS:
        assert r.resolve("dataset", f"cv:{name}").name == name
        assert r.resolve("dataset", f"alscope-cv:{name}").name == name
    for name in BACKBONES:
        assert r.resolve("backbone", f"cv:{name}").name == name
    aliases = {
        "CIFAR10": "cifar10",
        "CIFAR-100": "cifar100",
        "TINYIMAGENET": "tiny_imagenet",
        "TinyImageNet": "tiny_imagenet",
        "FashionMNIST": "fashion_mnist",
        "SVHN": "svhn",
        "MNIST": "mnist",
        "EMNIST": "emnist",
        "MedMNIST": "medmnist",
        "ImageFolder": "imagefolder",
    }
    for alias, name in aliases.items():
        assert r.resolve("dataset", alias).name == name
    assert r.resolve("backbone", "ResNet18").name == "resnet18"
    assert r.resolve("backbone", "VGG16").name == "vgg16"
    for spec in r.specs("dataset") + r.specs("backbone"):
        if spec.namespace == "cv":
            assert spec.domains == ("image",) and spec.summary
            obj = r.load_spec("dataset" if spec.name in DATASETS else "backbone", spec)
            assert obj.component_name == spec.name


def test_claimed_names() -> None:
    from alscope_cv.plugin import alscope_claim_name

    assert alscope_claim_name(kind="dataset", name="PathMNIST") == {
        "name": "medmnist",
        "params": {"subset": "pathmnist", "size": 28},
    }
    assert alscope_claim_name(kind="dataset", name="bloodmnist_64")["params"] == {
        "subset": "bloodmnist",
        "size": 64,
    }
    assert alscope_claim_name(kind="dataset", name="nothing") is None
    assert alscope_claim_name(kind="backbone", name="pathmnist") is None
    assert parse_subset_name("pathmnist_33") is None
    assert parse_subset_name("Organ-A-MNIST") == ("organamnist", 28)  # spelled loosely, like every name


def test_claimed_folder(tmp_path: Path) -> None:
    from alscope_cv.plugin import alscope_claim_name

    (tmp_path / "photos").mkdir()
    claim = alscope_claim_name(kind="dataset", name=str(tmp_path / "photos"))
    assert claim == {"name": "imagefolder", "params": {"path": str(tmp_path / "photos")}}
    assert alscope_claim_name(kind="dataset", name=str(tmp_path / "missing")) is None


def test_uninstalled_plugin_disappears_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the entry point (what ``pip uninstall alscope-cv`` leaves), no cv name remains
    and the old names explain where they come from."""
    others = [ep for ep in entry_points(group="alscope") if ep.name != "cv"]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: others)
    r = Registry()
    assert "cv" not in r.plugins
    assert all(s.namespace != "cv" for k in ("dataset", "backbone") for s in r.specs(k))  # type: ignore[arg-type]
    with pytest.raises(
        UnknownComponentError, match="provided by the alscope-cv distribution, which is not installed"
    ):
        r.resolve("dataset", "CIFAR10")
    with pytest.raises(UnknownComponentError, match="alscope-cv"):
        r.resolve("backbone", "resnet18")
    assert r.resolve("dataset", "digits").name == "digits"


def test_wheel_declares_the_entry_point(tmp_path: Path) -> None:
    """``pip install ./alscope-cv`` builds this wheel: the package and the ``cv`` entry point."""
    import importlib.util
    import shutil
    import zipfile

    for needed in ("pip", "setuptools"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not available")
    src = tmp_path / "src"
    shutil.copytree(CV_ROOT, src, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("alscope_cv-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        text = zf.read(entry).decode()
        meta = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "[alscope]" in text and "cv = alscope_cv.plugin" in text
    for module in ("plugin.py", "backbones.py", "datasets/digits.py", "datasets/folders.py", "catalog.py"):
        assert f"alscope_cv/{module}" in names
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert any("alscope" in r and ">=" in r for r in requires)
    assert any("torchvision" in r and ">=" in r for r in requires)
    assert not any("==" in r.split(";")[0] for r in requires)  # ranges, never pins


# -- the catalogue equals torchvision's ------------------------------------------------------


def test_catalog_matches_torchvision() -> None:
    import torchvision.datasets as tvd

    for ours, theirs in ((catalog.MNIST, tvd.MNIST), (catalog.FASHION_MNIST, tvd.FashionMNIST)):
        assert list(ours.mirrors) == list(theirs.mirrors)
        assert [tuple(r) for r in theirs.resources] == list(ours.resources)
        assert list(ours.classes) == list(theirs.classes)
    for ours_c, theirs_c in ((catalog.CIFAR10, tvd.CIFAR10), (catalog.CIFAR100, tvd.CIFAR100)):
        assert ours_c.base_folder == theirs_c.base_folder and ours_c.url == theirs_c.url
        assert ours_c.filename == theirs_c.filename and ours_c.tgz_md5 == theirs_c.tgz_md5
        assert [tuple(x) for x in theirs_c.train_list] == list(ours_c.train_list)
        assert [tuple(x) for x in theirs_c.test_list] == list(ours_c.test_list)
        assert ours_c.meta == (theirs_c.meta["filename"], theirs_c.meta["key"], theirs_c.meta["md5"])
    assert {k: tuple(v) for k, v in tvd.SVHN.split_list.items()} == catalog.SVHN
    assert tvd.EMNIST.url == catalog.EMNIST_URL and tvd.EMNIST.md5 == catalog.EMNIST_MD5
    for variant, classes in tvd.EMNIST.classes_split_dict.items():
        expected = classes[1:] if variant == "letters" else classes  # letters: labels 1..26 shifted to 0..25
        assert list(catalog.EMNIST_CLASSES[variant]) == list(expected)


def test_medmnist_catalogue() -> None:
    assert len(SUBSETS) == 12
    for subset in SUBSETS.values():
        assert subset.channels in (1, 3) and len(subset.labels) >= 2
        assert set(subset.md5) == {28, 64, 128, 224}
        assert all(len(m) == 32 for sums in subset.md5.values() for m in sums)
        assert subset.url(64).endswith(f"/{subset.name}_64.npz?download=1")
    assert SUBSETS["chestmnist"].multi_label and not SUBSETS["pathmnist"].multi_label
