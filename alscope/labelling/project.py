"""A labelling project: the user's unlabeled data, labeled by people, queried by alscope.

The folder holds ``project.json`` (the data file and its SHA-256, the classes, the
strategy, backbone, recipe and stopping criteria, written once by ``init``), ``state/``
(the learner loop's resumable state: every label, every round, the pending batch) and
``rounds/`` (the batch files written by ``next``). Everything that changes is in the
state, which is written atomically, so a command killed at any moment leaves the project
as before or as after it; run again, it goes on.

The model is an engine backbone (``alscope list backbones``) prepared as ``alscope run``
prepares it (tokenised or embedded texts, standardised features) and trained by alscope's
trainer, through :class:`~alscope.integrations.loop.LearnerLoop`.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from alscope.components import validate_params
from alscope.config import ComponentConfig, TrainingConfig, default_results_dir
from alscope.data.base import ALDataset, InputSpec, TensorSource
from alscope.engine.device import resolve_device
from alscope.engine.state import atomic_write
from alscope.errors import ConfigError, DataError, ResumeError
from alscope.integrations.loop import LearnerLoop, RoundSeeds
from alscope.integrations.pytorch import TorchModel
from alscope.labelling.answers import Answers, read_answers, write_batch
from alscope.labelling.data import UserData, fingerprint, read_user_data
from alscope.models.base import PrepareContext
from alscope.registry import get_registry

PROJECT_FILE = "project.json"
#: present while ``init`` builds a project (an init killed midway may then start over)
INIT_MARKER = ".init-in-progress"


class ProjectSettings(BaseModel):
    """What ``alscope label init`` fixed; ``project.json`` holds it."""

    data: str
    sha256: str
    kind: Literal["text", "features", "images"]
    id_column: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    #: a labeled gold set in the data's format, evaluated every round (never queried)
    test: str | None = None
    test_sha256: str | None = None
    classes: list[str]
    strategy: ComponentConfig = Field(default_factory=lambda: ComponentConfig(name="entropy"))
    backbone: ComponentConfig | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    stop: list[str] = Field(default_factory=list)
    stop_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    stop_mode: Literal["stop", "record"] = "record"
    seed: int = 0
    tracking: bool = True
    tracking_uri: str | None = None
    experiment: str = "alscope-label"


class LabelProject:
    """A project folder: :meth:`init` creates one, :meth:`open` continues it."""

    def __init__(self, folder: Path, settings: ProjectSettings, data: UserData, learner: LearnerLoop) -> None:
        self.folder, self.settings, self.data, self.learner = folder, settings, data, learner
        self.index_of = {sample: k for k, sample in enumerate(data.ids)}

    # -- creation -------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        folder: Path,
        data: Path,
        classes: list[str],
        *,
        labels: Path | None = None,
        test: Path | None = None,
        kind: Literal["auto", "text", "features", "images"] = "auto",
        id_column: str | None = None,
        text_column: str | None = None,
        label_column: str | None = None,
        strategy: ComponentConfig | None = None,
        backbone: ComponentConfig | None = None,
        training: dict[str, Any] | None = None,
        stop: list[str] | None = None,
        stop_params: dict[str, dict[str, Any]] | None = None,
        stop_mode: Literal["stop", "record"] = "record",
        seed: int = 0,
        tracking: bool = True,
        tracking_uri: str | None = None,
        experiment: str = "alscope-label",
    ) -> LabelProject:
        """A new project over ``data`` with ``classes``; labels the data file already holds
        (its label column) and those of a ``labels`` answer file are the first answers."""
        if (folder / PROJECT_FILE).is_file():
            raise ConfigError(
                f"{folder} holds a labelling project already; continue it with alscope label next"
            )
        names = [c.strip() for c in classes if c.strip()]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"the classes name {sorted(c for c, n in Counter(names).items() if n > 1)} twice"
            )
        if len(names) < 2:
            raise ConfigError(f"a project needs at least 2 classes, got {names}")
        clash = [c for c in names if c.casefold() in ("skip", "unsure")]
        if clash:
            raise ConfigError(f"{clash[0]!r} cannot be a class: skip and unsure set a sample aside")
        path = data.expanduser().resolve()
        user = read_user_data(
            path,
            kind=kind,
            classes=names,
            id_column=id_column,
            text_column=text_column,
            label_column=label_column,
        )
        test_path = None if test is None else test.expanduser().resolve()
        settings = ProjectSettings(
            data=str(path),
            sha256=fingerprint(path),
            kind=user.kind,
            id_column=id_column,
            text_column=text_column,
            label_column=label_column,
            test=None if test_path is None else str(test_path),
            test_sha256=fingerprint(test_path) if test_path is not None and test_path.exists() else None,
            classes=names,
            strategy=strategy or ComponentConfig(name="entropy"),
            backbone=backbone,
            training=dict(training or {}),
            stop=list(stop or []),
            stop_params=dict(stop_params or {}),
            stop_mode=stop_mode,
            seed=seed,
            tracking=tracking,
            tracking_uri=tracking_uri,
            experiment=experiment,
        )
        given = _given_labels(user, names, path)
        extra = (
            read_answers(labels, {s: k for k, s in enumerate(user.ids)}, names)
            if labels is not None
            else None
        )
        marker = folder / INIT_MARKER
        if folder.is_dir() and any(folder.iterdir()) and not marker.is_file():
            raise ConfigError(f"{folder} is a folder with files in it; give init a new or empty folder")
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / "state").is_dir():
            shutil.rmtree(folder / "state")  # an init of ours that stopped before project.json
        marker.write_text("alscope label init is creating this project\n", encoding="utf-8")
        project = cls(folder, settings, user, _learner(folder, settings, user))
        # written last: a project without project.json is no project, and init may run again
        answers = Answers(dict(given), {}, 0)
        if extra is not None:
            answers.labels.update(extra.labels)
            answers.set_aside.update(extra.set_aside)
        project._apply(answers, relabel=True)
        atomic_write(folder / PROJECT_FILE, settings.model_dump_json(indent=1))
        marker.unlink()
        return project

    @classmethod
    def open(cls, folder: Path) -> LabelProject:
        path = folder / PROJECT_FILE
        if not path.is_file():
            raise ConfigError(
                f"{folder} is not a labelling project (no {PROJECT_FILE}); create one with alscope label init"
            )
        try:
            settings = ProjectSettings.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ResumeError(f"{path} is damaged ({str(exc).splitlines()[0]})") from None
        data = Path(settings.data)
        if not data.exists():
            raise DataError(f"the project's data {data} is gone; put it back where it was")
        if fingerprint(data) != settings.sha256:
            raise DataError(
                f"the project's data file {data} changed since alscope label init; its ids may name other "
                "samples now. Restore the file, or start a new project on the new file"
            )
        if settings.test is not None and (
            not Path(settings.test).exists() or fingerprint(Path(settings.test)) != settings.test_sha256
        ):
            raise DataError(
                f"the project's test file {settings.test} is gone or changed since alscope label init; "
                "put the original back"
            )
        user = read_user_data(
            data,
            kind=settings.kind,
            classes=settings.classes,
            id_column=settings.id_column,
            text_column=settings.text_column,
            label_column=settings.label_column,
        )
        return cls(folder, settings, user, _learner(folder, settings, user))

    # -- the loop -------------------------------------------------------------------

    def next(self, n: int, out: Path | None = None) -> tuple[Path, int]:
        """Train on the labels so far and write the batch to annotate; asked again before
        its answers are imported, it writes the same batch again. Returns the file and the
        number of rows (0 where a stopping criterion ended the project)."""
        if not len(self.learner.labeled):
            raise DataError(
                "nothing is labeled yet: give some labels (init --labels, or import a file with "
                "id and label columns) before the first batch"
            )
        batch = self.learner.query(n)
        round_number = self.learner.trial.cycles[-1].cycle if self.learner.trial.cycles else 0
        path = out or self.folder / "rounds" / f"round-{round_number:03d}.csv"
        notes = self.learner.pending_annotations
        rows = []
        for k, index in enumerate(batch.tolist()):
            row: dict[str, Any] = {"id": self.data.ids[index], "round": round_number}
            if "score" in notes:
                row["score"] = f"{notes['score'][k]:.6g}"
            if "prediction" in notes:
                row["prediction"] = self.settings.classes[int(notes["prediction"][k])]
                row["confidence"] = f"{notes['confidence'][k]:.4f}"
            row["label"] = ""
            if self.data.texts is not None:
                row["text"] = self.data.texts[index]
            rows.append(row)
        write_batch(path, rows)
        return path, len(rows)

    def import_answers(self, path: Path, relabel: bool = False) -> dict[str, int]:
        """Apply an answer file (checked whole first); the counts of what changed."""
        answers = read_answers(path, self.index_of, self.settings.classes)
        if not len(answers):
            raise DataError(f"{path} answers nothing: every label cell is empty")
        return self._apply(answers, relabel)

    def _apply(self, answers: Answers, relabel: bool) -> dict[str, int]:
        ids = list(answers.labels)
        return self.learner.teach(
            [self.index_of[s] for s in ids],
            np.asarray([answers.labels[s] for s in ids], dtype=np.int64),
            set_aside={self.index_of[s]: why for s, why in answers.set_aside.items()},
            relabel=relabel,
        )

    def status(self) -> dict[str, Any]:
        learner, classes = self.learner, self.settings.classes
        counts = Counter(classes[int(y)] for y in learner.labels)
        rounds = []
        for record in learner.trial.cycles:
            metrics = record.metrics
            rounds.append(
                {
                    "round": record.cycle,
                    "trained_on": record.n_labeled,
                    "picked": len(record.selected),
                    "answered": record.logged,
                    "train_accuracy": metrics.get("train_accuracy"),
                    "val_accuracy": metrics.get("val_accuracy"),
                    "test_accuracy": metrics.get("accuracy"),
                    "stopping": {
                        k.removeprefix("stop/").removesuffix("/fired"): bool(v)
                        for k, v in metrics.items()
                        if k.startswith("stop/") and k.endswith("/fired")
                    },
                }
            )
        return {
            "project": str(self.folder),
            "data": self.settings.data,
            "samples": len(self.data),
            "labeled": len(learner.labeled),
            "set_aside": dict(Counter(learner.set_aside.values())),
            "unlabeled": len(learner.unlabeled),
            "pending": len(learner.pending),
            "per_class": {c: counts.get(c, 0) for c in classes},
            "strategy": self.settings.strategy.name,
            "backbone": learner.adapter.backbone_name,
            "rounds": rounds,
            "stopped": learner.stopped,
        }

    def export(self, out: Path) -> list[Path]:
        """The labeled samples (``labels.csv``: id, label) and, once a model is trained,
        the last one (``model.pt``: its state dict, with the classes and the backbone)."""
        out.mkdir(parents=True, exist_ok=True)
        rows = [
            {"id": self.data.ids[i], "label": self.settings.classes[y]}
            for i, y in zip(self.learner.labeled.tolist(), self.learner.labels.tolist(), strict=True)
        ]
        rows += [{"id": self.data.ids[i], "label": why} for i, why in sorted(self.learner.set_aside.items())]
        written = [out / "labels.csv"]
        write_batch(written[0], rows)
        adapter: TorchModel = self.learner.adapter  # type: ignore[assignment]
        if adapter.backbone is None and len(self.learner.labeled):
            adapter.fit(
                self.learner.labeled,
                self.learner.labels,
                self.learner.strategy,
                RoundSeeds.of(self.learner.seed, self.learner.trial.next_cycle),
            )
        if adapter.backbone is not None:
            torch.save(
                {
                    "state_dict": adapter.backbone.state_dict(),
                    "classes": self.settings.classes,
                    "backbone": self.settings.backbone.model_dump() if self.settings.backbone else None,
                    "n_labeled": len(self.learner.labeled),
                },
                out / "model.pt",
            )
            written.append(out / "model.pt")
        return written


def _given_labels(user: UserData, classes: list[str], where: Path) -> dict[str, int]:
    index = {c: k for k, c in enumerate(classes)}
    out = {}
    for sample, label in zip(user.ids, user.given_labels, strict=True):
        if label is None:
            continue
        if label not in index:
            raise DataError(
                f"{where}: sample {sample!r} is labeled {label!r}, which is not one of the classes "
                f"{', '.join(classes)}"
            )
        out[sample] = index[label]
    return out


def _gold(settings: ProjectSettings, kind: str) -> tuple[UserData | None, np.ndarray]:
    """The test file's samples and class indices: every row labeled with a class."""
    if settings.test is None:
        return None, np.empty(0, dtype=np.int64)
    path = Path(settings.test)
    gold = read_user_data(
        path,
        kind=kind,  # type: ignore[arg-type]  # the pool's kind
        classes=settings.classes,
        id_column=settings.id_column,
        text_column=settings.text_column,
        label_column=settings.label_column,
    )
    index = {c: k for k, c in enumerate(settings.classes)}
    missing = [s for s, y in zip(gold.ids, gold.given_labels, strict=True) if y is None]
    if missing:
        raise DataError(
            f"{path}: a test file labels every sample; {missing[:3]} have no label (label column)"
        )
    unknown = sorted({str(y) for y in gold.given_labels if y not in index})
    if unknown:
        raise DataError(
            f"{path}: labels {unknown[:5]} are not among the classes {', '.join(settings.classes)}"
        )
    return gold, np.asarray([index[y] for y in gold.given_labels], dtype=np.int64)  # type: ignore[index]


def _dataset(user: UserData, settings: ProjectSettings) -> ALDataset:
    classes, name = settings.classes, Path(settings.data).stem
    unknown = np.full(len(user), -1, dtype=np.int64)
    gold, gold_labels = _gold(settings, user.kind)
    if user.kind == "text":
        try:
            from alscope_nlp.datasets import DEFAULT_BACKBONE
            from alscope_nlp.sources import TextSource
        except ImportError:
            raise ConfigError("a project of texts needs the text plugin: pip install alscope-nlp") from None
        assert user.texts is not None
        return ALDataset(
            name=name,
            domain="text",
            classes=classes,
            pool=TextSource(user.texts, unknown),
            test=TextSource(gold.texts if gold is not None and gold.texts else [], gold_labels),
            input_spec=InputSpec("tokens", extra={"raw_text": True}),
            default_backbone=f"nlp:{DEFAULT_BACKBONE}",
        )
    if user.kind == "images":
        return _image_dataset(user, gold, gold_labels, settings)
    assert user.features is not None
    x = user.features
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std <= 1e-6 * max(float(std.max()), 1e-12)] = 1.0
    # the pool's own mean and std, for the test set too, as the tabular datasets do
    features = torch.from_numpy(np.ascontiguousarray((x - mean) / std, dtype=np.float32))
    if gold is not None:
        assert gold.features is not None
        if gold.features.shape[1] != x.shape[1]:
            raise DataError(f"{settings.test} has {gold.features.shape[1]} features, the data {x.shape[1]}")
        test = torch.from_numpy(np.ascontiguousarray((gold.features - mean) / std, dtype=np.float32))
    else:
        test = features[:0]
    return ALDataset(
        name=name,
        domain="tabular",
        classes=classes,
        pool=TensorSource(features, unknown),
        test=TensorSource(test, gold_labels),
        input_spec=InputSpec("vector", (features.shape[1],)),
        default_backbone="mlp",
    )


def _image_dataset(
    user: UserData, gold: UserData | None, gold_labels: np.ndarray, settings: ProjectSettings
) -> ALDataset:
    try:
        from alscope_cv.datasets.folders import ImageFolderParams, check_headers, image_dataset
    except ImportError:
        raise ConfigError("a project of images needs the image plugin: pip install alscope-cv") from None
    assert user.paths is not None
    root = Path(settings.data)
    check_headers(user.paths + (gold.paths or [] if gold is not None else []), root)
    pool = (np.asarray(user.paths), np.full(len(user), -1, dtype=np.int64))
    test = (np.asarray(gold.paths if gold is not None and gold.paths else [], dtype=str), gold_labels)
    params = ImageFolderParams(path=root)
    return image_dataset(root.name or "images", settings.classes, pool, test, params, settings.seed, root)


def _learner(folder: Path, settings: ProjectSettings, user: UserData) -> LearnerLoop:
    registry = get_registry()
    dataset = _dataset(user, settings)
    component = settings.backbone or ComponentConfig(name=dataset.default_backbone)
    spec, implied = registry.resolve_claimed("backbone", component.name)
    if dataset.domain not in spec.domains:
        raise ConfigError(
            f"backbone {spec.name!r} does not take {dataset.domain} data (it takes {', '.join(spec.domains)})"
        )
    backbone_cls = registry.load_spec("backbone", spec)
    params = validate_params(backbone_cls.Params, {**implied, **component.params}, f"backbone {spec.name}")
    training = TrainingConfig(**settings.training)
    device = resolve_device(training.device)
    cache = Path(os.environ["ALSCOPE_CACHE_DIR"]) if os.environ.get("ALSCOPE_CACHE_DIR") else None
    ctx = PrepareContext(
        cache or default_results_dir() / "cache", device, training.eval_batch_size, settings.seed
    )
    dataset = backbone_cls.prepare_dataset(dataset, params, ctx)
    defaults = backbone_cls.training_defaults(params, ctx)
    explicit = training.model_fields_set
    training = training.model_copy(update={k: v for k, v in defaults.items() if k not in explicit})

    def build() -> Any:
        return backbone_cls(dataset.input_spec, dataset.n_classes, params)

    build.__name__ = spec.name
    has_test = settings.test is not None
    adapter = TorchModel(
        build, dataset.pool, dataset.n_classes, test=dataset.test if has_test else None, training=training
    )
    return LearnerLoop(
        adapter,
        test_labels=dataset.test.labels if has_test else None,
        strategy=settings.strategy.name,
        strategy_params=settings.strategy.params,
        seed=settings.seed,
        stop=settings.stop,
        stop_params=settings.stop_params,
        stop_mode=settings.stop_mode,
        state_dir=folder / "state",
        tracking=settings.tracking,
        tracking_uri=settings.tracking_uri,
        experiment=settings.experiment,
        dataset_name=dataset.name,
    )
