"""Learning Loss and TiDAL: the authors' own training and selection code beside alscope's,
on the same MNIST split, initial sets and CNN.

    git clone https://github.com/Mephisto405/Learning-Loss-for-Active-Learning /tmp/ll4al
    git clone https://github.com/hyperconnect/TiDAL /tmp/tidal
    python benchmarks/official_model_based.py --ll4al /tmp/ll4al --tidal /tmp/tidal \\
        --data-dir ../shared/data --trials 3 --threads 1

What runs from the official repositories, unchanged but for the CPU port below:

* LL4AL (``main.py``): ``LossPredLoss``, ``train_epoch``, ``train``, ``test`` and
  ``get_uncertainty``, with ``models/lossnet.py``'s ``LossNet`` and the constants of its
  ``config.py`` (SGD lr 0.1, momentum 0.9, weight decay 5e-4, 200 epochs, milestone 160,
  features detached after epoch 120, margin 1, lambda 1, batch 128);
* TiDAL (``train_test/train_test.py``, ``methods/selection_methods.py``,
  ``models/query_models.py``): ``train``, ``test``, ``query_samples`` and ``TDNet``, with
  its ``config.py``; its methods ``TiDAL`` (entropy of the module's prediction),
  ``Entropy`` and ``Random``.

The active learning loop is theirs too: one backbone and module per trial, continued
across cycles with fresh optimisers and schedulers; the labeled loader draws with
``SubsetRandomSampler``; the query takes the top of ``np.argsort`` over a shuffled random
subset (``SUBSET`` = 10,000, the whole pool here).

What is not theirs, and why:

* the data: MNIST (the test file in ../shared/data, 8,000 pool / 2,000 test as alscope
  splits it) instead of CIFAR, and per trial the initial set of alscope's run of the same
  seed, so that both sides start from the same labels;
* the backbone: ResNet-18 is hours per trial on a CPU (3.7 s per batch of 128 here), so
  both sides train alscope's CNN with four conv blocks (16, 32, 64, 128 channels,
  BatchNorm: SGD at lr 0.1 needs it) whose four block outputs feed the module as
  ResNet-18's four stages do (``LossNet`` / ``TDNet`` built with the CNN's feature sizes
  and channels);
* the CPU port: ``.cuda()`` becomes ``.to(device)`` and ``with torch.cuda.device(...)``
  is dropped; the TiDAL training set yields ``(x, y, index, moving_prob)`` and keeps
  ``moving_prob`` as its ``MyDataset`` does.

alscope's side runs ``random``, ``entropy``, ``learning_loss`` and ``tidal`` with the same
backbone and the same recipe (``--epochs 200`` with the official optimiser and milestone,
``min_steps`` 0), so that the two columns differ only in whose code trains and selects.
Prints AUBC (mean ± sample std over trials), the final accuracy, and the largest share
of one class in the first query.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

CNN = {"channels": [16, 32, 64, 128], "batch_norm": True}
RECIPE = {
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "epochs": 200,
    "scheduler": "multistep",
    "milestones": [160],
    "batch_size": 128,
    "min_steps": 0,
}
LL4AL_FUNCTIONS = ("LossPredLoss", "train_epoch", "test", "train", "get_uncertainty")
REPO_PACKAGES = ("config", "models", "data", "methods", "train_test", "utils", "ll4al_functions")


def cpu_port(source: str) -> str:
    """The two mechanical edits that let the authors' CUDA-only code run on a CPU."""
    lines = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("with torch.cuda.device("):
            line = line[: len(line) - len(line.lstrip())] + "if True:"
        lines.append(line.replace(".cuda()", ".to(DEVICE)"))
    return "\n".join(lines) + "\n"


def port_repo(src: Path, dest: Path) -> None:
    shutil.copytree(
        src, dest, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc", "*.PNG", "*.pdf")
    )
    for path in dest.rglob("*.py"):
        path.write_text(cpu_port(path.read_text()))
    (dest / "config.py").write_text(
        (dest / "config.py").read_text() + "\nimport torch as _t\nDEVICE = _t.device('cpu')\n"
    )


def import_repo(root: Path, device: torch.device) -> None:
    """Make ``root``'s top-level modules importable (and forget another repo's)."""
    for name in list(sys.modules):
        if name.split(".")[0] in REPO_PACKAGES:
            del sys.modules[name]
    sys.path[:] = [p for p in sys.path if not p.startswith(str(root.parent))]
    sys.path.insert(0, str(root))
    import config  # type: ignore[import-not-found]

    config.DEVICE = device


def ll4al_functions(root: Path) -> ModuleType:
    """LL4AL's ``main.py`` downloads CIFAR-10 and opens visdom at import; keep only its
    training and selection functions (and the ``iters`` counter ``train_epoch`` uses)."""
    tree = ast.parse((root / "main.py").read_text())
    keep = [
        node
        for node in tree.body
        if (isinstance(node, ast.FunctionDef) and node.name in LL4AL_FUNCTIONS)
        or (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "iters" for t in node.targets))
    ]
    header = "import os\nimport numpy as np\nimport torch\nfrom tqdm import tqdm\nfrom config import *\n"
    (root / "ll4al_functions.py").write_text(header + ast.unparse(ast.Module(body=keep, type_ignores=[])))
    import ll4al_functions  # type: ignore[import-not-found]

    return ll4al_functions


class FourStageCNN(nn.Module):
    """alscope's CNN answering as the official ResNet-18s do: ``(scores, features)`` for
    LL4AL, ``(scores, embedding, features)`` for TiDAL."""

    def __init__(self, backbone: nn.Module, with_embedding: bool) -> None:
        super().__init__()
        self.backbone, self.with_embedding = backbone, with_embedding

    def forward(self, x: torch.Tensor) -> tuple[Any, ...]:
        out = self.backbone(x, return_features=True)
        features = list(out.features)
        return (out.logits, out.embedding, features) if self.with_embedding else (out.logits, features)


class Images(torch.utils.data.Dataset):
    """Eval-transformed images; ``moving_prob`` given: TiDAL's ``MyDataset`` item form."""

    def __init__(self, x: torch.Tensor, y: np.ndarray, form: str, n_classes: int = 0) -> None:
        self.x, self.y, self.form = x, torch.as_tensor(y), form
        self.moving_prob = np.zeros((len(y), n_classes), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        if self.form == "xy":
            return self.x[i], self.y[i]
        if self.form == "xyi":
            return self.x[i], self.y[i], i
        return self.x[i], self.y[i], i, self.moving_prob[i]


def base_config(opts: argparse.Namespace, strategy: str, results: str) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "dataset": "mnist",
        "data_dir": opts.data_dir,
        "trials": opts.trials,
        "cycles": opts.cycles,
        "n_initial": opts.n_initial,
        "n_query": opts.n_query,
        "seed": opts.seed,
        "results_dir": results,
        "backbone": {"name": "cnn", "params": CNN},
        "training": {
            **RECIPE,
            "epochs": opts.epochs,
            "milestones": [opts.epochs * 4 // 5],
            "threads": opts.threads,
        },
        "tracking": {"enabled": False},
    }


def alscope_rows(
    opts: argparse.Namespace, results: str
) -> tuple[dict[str, dict[str, Any]], list[np.ndarray]]:
    from alscope.engine.experiment import run_experiment

    rows, initial_sets = {}, []
    for name in opts.alscope:
        start = time.perf_counter()
        result = run_experiment(base_config(opts, name, results))
        curves = [[c.metrics["accuracy"] for c in t.cycles] for t in result.trials]
        firsts = [np.asarray(t.labels[opts.n_initial : opts.n_initial + opts.n_query]) for t in result.trials]
        rows[f"alscope {name}"] = summarise(opts, curves, firsts, time.perf_counter() - start)
        if not initial_sets:
            initial_sets = [np.asarray(t.labeled[: opts.n_initial]) for t in result.trials]
        print(f"  done alscope {name}: AUBC {rows[f'alscope {name}']['aubc']:.4f}", flush=True)
    return rows, initial_sets


def summarise(
    opts: argparse.Namespace, curves: list[list[float]], firsts: list[np.ndarray], wall: float
) -> dict[str, Any]:
    from alscope.engine.metrics import aubc

    counts = [opts.n_initial + i * opts.n_query for i in range(opts.cycles + 1)]
    areas = [aubc(counts, c) for c in curves]
    return {
        "aubc": statistics.mean(areas),
        "std": statistics.stdev(areas) if len(areas) > 1 else 0.0,
        "final": statistics.mean(c[-1] for c in curves),
        "first_share": max(np.bincount(f, minlength=10).max() / len(f) for f in firsts),
        "wall": wall,
    }


def official_loop(
    opts: argparse.Namespace, method: str, data: dict[str, Any], initial_sets: list[np.ndarray], root: Path
) -> dict[str, Any]:
    """The authors' main loop (LL4AL ``main.py``; TiDAL ``main.py``) on our data."""
    from torch import optim
    from torch.optim import lr_scheduler
    from torch.utils.data import DataLoader
    from torch.utils.data.sampler import SubsetRandomSampler

    import_repo(root, torch.device("cpu"))
    import config  # type: ignore[import-not-found]

    config.EPOCH, config.MILESTONES = opts.epochs, [opts.epochs * 4 // 5]
    config.EPOCHL = opts.epochs * 3 // 5
    ll4al = method == "lloss"
    if ll4al:
        fn = ll4al_functions(root)
        from models.lossnet import LossNet  # type: ignore[import-not-found]
    else:
        from methods.selection_methods import query_samples  # type: ignore[import-not-found]
        from models.query_models import TDNet  # type: ignore[import-not-found]
        from train_test import train_test as fn  # type: ignore[import-not-found]
    from alscope_cv.backbones import SmallCNN

    x_pool, y_pool, x_test, y_test, spec = (
        data["x_pool"],
        data["y_pool"],
        data["x_test"],
        data["y_test"],
        data["spec"],
    )
    n_classes = int(y_pool.max()) + 1
    train_set = Images(x_pool, y_pool, "xy" if ll4al else "xyim", n_classes)
    unlabeled_set_data = Images(x_pool, y_pool, "xy" if ll4al else "xyi")
    test_loader = DataLoader(Images(x_test, y_test, "xy"), batch_size=config.BATCH)
    start = time.perf_counter()
    curves, firsts = [], []
    for trial, initial in enumerate(initial_sets):
        random.seed(opts.seed + trial)
        torch.manual_seed(opts.seed + trial)
        np.random.seed(opts.seed + trial)
        train_set.moving_prob[:] = 0.0
        labeled_set = [int(i) for i in initial]
        unlabeled_set = sorted(set(range(len(y_pool))) - set(labeled_set))
        cnn = SmallCNN(spec, n_classes, SmallCNN.Params(**CNN))
        with torch.no_grad():
            probe = cnn(x_pool[:2], return_features=True).features
        sizes, channels = [f.shape[-1] for f in probe], [f.shape[1] for f in probe]
        backbone = FourStageCNN(cnn, with_embedding=not ll4al)
        if ll4al:
            module = LossNet(feature_sizes=sizes, num_channels=channels)
        else:
            module = TDNet(feature_sizes=sizes, num_channels=channels, out_dim=n_classes)
        models = (
            {"backbone": backbone, "module": module}
            if method in ("lloss", "TiDAL")
            else {"backbone": backbone}
        )
        criterion: Any = nn.CrossEntropyLoss(reduction="none")
        if not ll4al:
            criterion = {"CE": criterion, "KL_Div": nn.KLDivLoss(reduction="batchmean")}
        args = argparse.Namespace(query="Entropy", num_workers=0, add_num=opts.n_query, subset=10000)
        curve, first = [], None
        for cycle in range(opts.cycles + 1):
            random.shuffle(unlabeled_set)
            subset = unlabeled_set[: args.subset]
            optimizers, schedulers = {}, {}
            for key, model in models.items():
                optimizers[key] = optim.SGD(
                    model.parameters(), lr=config.LR, momentum=config.MOMENTUM, weight_decay=config.WDECAY
                )
                schedulers[key] = lr_scheduler.MultiStepLR(optimizers[key], milestones=config.MILESTONES)
            loaders = {
                "train": DataLoader(
                    train_set, batch_size=config.BATCH, sampler=SubsetRandomSampler(labeled_set)
                ),
                "test": test_loader,
            }
            if ll4al:
                fn.train(
                    models,
                    criterion,
                    optimizers,
                    schedulers,
                    loaders,
                    config.EPOCH,
                    config.EPOCHL,
                    None,
                    None,
                )
                accuracy = fn.test(models, loaders, mode="test") / 100
            else:
                fn.train(
                    models, method, criterion, optimizers, schedulers, loaders, config.EPOCH, config.EPOCHL
                )
                accuracy = fn.test(models, method, loaders, mode="test") / 100
            curve.append(accuracy)
            print(
                f"    official {method} trial {trial} cycle {cycle}: {len(labeled_set)} labels, "
                f"accuracy {accuracy:.4f}",
                flush=True,
            )
            if cycle == opts.cycles:
                break
            if ll4al:
                unlabeled_loader = DataLoader(unlabeled_set_data, batch_size=config.BATCH, sampler=subset)
                arg = np.argsort(fn.get_uncertainty(models, unlabeled_loader))
            else:
                arg = query_samples(models, method, unlabeled_set_data, subset, labeled_set, cycle, args)
            ranked = torch.tensor(subset)[arg]
            picked = ranked[-opts.n_query :].numpy().tolist()
            if first is None:
                first = y_pool[picked]
            labeled_set += picked
            unlabeled_set = ranked[: -opts.n_query].numpy().tolist() + unlabeled_set[args.subset :]
        curves.append(curve)
        firsts.append(first)
    return summarise(opts, curves, firsts, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ll4al", type=Path, required=True, help="work tree of Mephisto405/Learning-Loss-for-Active-Learning"
    )
    parser.add_argument("--tidal", type=Path, required=True, help="work tree of hyperconnect/TiDAL")
    parser.add_argument("--data-dir", default=os.environ.get("ALSCOPE_SHARED_DATA", "../shared/data"))
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--n-initial", type=int, default=100)
    parser.add_argument("--n-query", type=int, default=100)
    parser.add_argument(
        "--epochs", type=int, default=200, help="official: 200 (milestone at 4/5, detach at 3/5)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--alscope",
        default="random,entropy,learning_loss,tidal",
        help="alscope strategies (the first gives the initial sets)",
    )
    parser.add_argument(
        "--official",
        default="lloss,TiDAL,Entropy,Random",
        help="lloss (LL4AL's code), TiDAL, Entropy, Random (TiDAL's code)",
    )
    opts = parser.parse_args()
    opts.alscope = [s.strip() for s in opts.alscope.split(",") if s.strip()]
    opts.official = [s.strip() for s in opts.official.split(",") if s.strip()]
    unknown = set(opts.official) - {"lloss", "TiDAL", "Entropy", "Random"}
    if unknown or not opts.alscope:
        parser.error(
            f"--official accepts lloss, TiDAL, Entropy, Random (got {sorted(unknown)}); "
            "--alscope needs one strategy"
        )
    os.environ.setdefault("TQDM_DISABLE", "1")  # the official loops show a bar per epoch
    if opts.threads:
        torch.set_num_threads(opts.threads)
    for path, marker in ((opts.ll4al, "models/lossnet.py"), (opts.tidal, "train_test/train_test.py")):
        if not (path / marker).is_file():
            parser.error(f"{path} has no {marker}: give a work tree of the official repository")

    from alscope.config import build_config
    from alscope.engine.experiment import Experiment

    work = Path(tempfile.mkdtemp(prefix="alscope-official-"))
    rows: dict[str, dict[str, Any]] = {}
    rows, initial_sets = alscope_rows(opts, str(work / "results"))

    prepared = Experiment(build_config(base_config(opts, "random", str(work / "results"))))._load_dataset()
    pool, test = prepared.dataset.pool, prepared.dataset.test
    everything = np.arange(len(pool))
    few = everything[:64]
    seen = [next(pool.batches(few, batch_size=64, train=train)).inputs for train in (True, False)]
    if not torch.equal(*seen):
        sys.exit("the MNIST training batches are augmented; the official loops here train on plain images")
    data = {
        "x_pool": next(pool.batches(everything, batch_size=len(pool), train=False)).inputs,
        "y_pool": pool.labels,
        "x_test": next(test.batches(np.arange(len(test)), batch_size=len(test), train=False)).inputs,
        "y_test": test.labels,
        "spec": prepared.dataset.input_spec,
    }
    os.chdir(work)  # LL4AL's train() makes ./cifar10/train/weights
    for method in opts.official:
        repo = opts.ll4al if method == "lloss" else opts.tidal
        ported = work / f"{repo.name}-{method}"
        port_repo(repo, ported)
        rows[f"official {'LL4AL' if method == 'lloss' else 'TiDAL repo'} {method}"] = official_loop(
            opts, method, data, initial_sets, ported
        )

    print(
        f"\nMNIST {len(pool)} pool / {len(test)} test, {opts.n_initial} + {opts.cycles} x {opts.n_query}, "
        f"{opts.trials} trials, CNN {CNN}, {opts.epochs} epochs of SGD "
        f"(lr 0.1, milestone {opts.epochs * 4 // 5}), "
        f"torch threads {torch.get_num_threads()}"
    )
    header = f"{'code / strategy':34s} {'AUBC':>16s} {'final acc':>9s} {'1st-query max':>13s} {'wall s':>7s}"
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        aubc = f"{r['aubc']:.4f} ± {r['std']:.4f}"
        print(f"{name:34s} {aubc:>16s} {r['final']:9.4f} {r['first_share']:13.2f} {r['wall']:7.0f}")


if __name__ == "__main__":
    main()
