"""Tracking: MLflow is the record of every run.

Layout in MLflow (what ``alscope report`` reads):

* experiment: ``tracking.experiment`` (default ``alscope``);
* one *parent* run per experiment run, tags ``alscope.kind=experiment``,
  ``alscope.run`` (the resumable run id), ``alscope.strategy``, ``alscope.dataset``,
  ``alscope.backbone``, ``alscope.scenario`` and, when started from the command line,
  ``alscope.command`` (the command as typed); params: the resolved config, flattened;
  metrics: ``aubc`` (mean over trials), ``aubc_std``, ``final_accuracy``, ``n_pool``;
  artifacts: ``config.yaml``, ``learning_curve.png``, ``summary.json``;
* one nested run per trial (``mlflow.parentRunId``), tags ``alscope.kind=trial`` and
  ``alscope.trial``; per-cycle metrics with the labeled count as step (``accuracy``,
  ``macro_f1``, ``balanced_accuracy``, ``nll``, ``ece``, ``class_accuracy/<c>``,
  ``train_time``, ``selection_time``, ``query_count/<c>``, ``n_labeled``, ``cycle``);
  ``aubc`` at the end; artifacts ``selections/cycle_<k>.json``.

Logging a cycle is one atomic batch, and on resume the steps already in the store
are skipped, so a killed run never loses or duplicates a metric.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from alscope.errors import TrackingError

TAG_KIND = "alscope.kind"
TAG_RUN = "alscope.run"
TAG_TRIAL = "alscope.trial"
#: the command line that started an experiment run (``alscope run ...``), where one did
TAG_COMMAND = "alscope.command"
COMPONENT_TAGS = ("strategy", "dataset", "backbone", "scenario")


def default_tracking_uri(results_dir: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


class Tracker:
    """Does nothing: what ``--no-track`` uses."""

    enabled = False
    uri = ""

    def start_experiment(
        self, run_name: str, tags: dict[str, str], params: dict[str, str], existing: str | None = None
    ) -> str | None:
        return None

    def start_trial(
        self, parent: str | None, trial: int, tags: dict[str, str], existing: str | None = None
    ) -> str | None:
        return None

    def logged_steps(self, run_id: str | None, key: str = "n_labeled") -> set[int]:
        return set()

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_text(self, run_id: str | None, text: str, path: str) -> None:
        pass

    def log_file(self, run_id: str | None, local_path: Path, artifact_dir: str | None = None) -> None:
        pass

    def finish(self, run_id: str | None, status: str = "FINISHED") -> None:
        pass


class MLflowTracker(Tracker):
    """Writes to an MLflow tracking store through ``MlflowClient`` (explicit run ids,
    so a resumed process can continue the very same runs)."""

    enabled = True

    def __init__(self, uri: str, experiment: str, results_dir: Path) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow import MlflowClient

        # mlflow configures its loggers on import; quiet them afterwards.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)

        self.uri = uri
        if uri.startswith("sqlite:///"):
            from alscope.engine.state import ensure_writable_folder

            store = Path(uri[len("sqlite:///") :])
            hint = "choose another with --tracking-uri or --results-dir, or run with --no-track"
            ensure_writable_folder(store.parent, "the MLflow store's folder", hint)
            if store.exists() and not os.access(store, os.W_OK):
                raise TrackingError(f"the MLflow store {str(store)!r} is read-only; {hint}")
        try:
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                location = None
                if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
                    location = (results_dir / "mlartifacts").resolve().as_uri()
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
            else:
                self.experiment_id = found.experiment_id
        except Exception as exc:
            raise TrackingError(
                f"cannot reach the MLflow tracking store at {uri!r}: {_short(exc)}; "
                f"start the server, fix --tracking-uri / MLFLOW_TRACKING_URI, or run with --no-track"
            ) from None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise TrackingError(f"MLflow {what} failed at {self.uri!r}: {_short(exc)}") from None

    def start_experiment(
        self, run_name: str, tags: dict[str, str], params: dict[str, str], existing: str | None = None
    ) -> str:
        if existing:
            self._call("update_run", self.client.update_run, existing, status="RUNNING")
            return existing
        run = self._call(
            "create_run",
            self.client.create_run,
            self.experiment_id,
            run_name=run_name,
            tags={TAG_KIND: "experiment", **tags},
        )
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self._call("log_batch", self.client.log_batch, run.info.run_id, params=items[start : start + 100])
        return str(run.info.run_id)

    def start_trial(
        self, parent: str | None, trial: int, tags: dict[str, str], existing: str | None = None
    ) -> str:
        if existing:
            self._call("update_run", self.client.update_run, existing, status="RUNNING")
            return existing
        all_tags = {TAG_KIND: "trial", TAG_TRIAL: str(trial), **tags}
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        run = self._call(
            "create_run", self.client.create_run, self.experiment_id, run_name=f"trial-{trial}", tags=all_tags
        )
        return str(run.info.run_id)

    def logged_steps(self, run_id: str | None, key: str = "n_labeled") -> set[int]:
        """The steps at which ``key`` is in the store (``n_labeled``: the cycles logged)."""
        if not run_id:
            return set()
        history = self._call("get_metric_history", self.client.get_metric_history, run_id, key)
        return {int(m.step) for m in history}

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:
        if not run_id:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self._call("log_batch", self.client.log_batch, run_id, metrics=batch)

    def log_text(self, run_id: str | None, text: str, path: str) -> None:
        if run_id:
            self._call("log_text", self.client.log_text, run_id, text, path)

    def log_file(self, run_id: str | None, local_path: Path, artifact_dir: str | None = None) -> None:
        if run_id:
            self._call("log_artifact", self.client.log_artifact, run_id, str(local_path), artifact_dir)

    def finish(self, run_id: str | None, status: str = "FINISHED") -> None:
        if run_id:
            self._call("set_terminated", self.client.set_terminated, run_id, status)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def make_tracker(enabled: bool, uri: str | None, experiment: str, results_dir: Path) -> Tracker:
    """The tracker for a run; checks that the store answers before anything trains."""
    if not enabled:
        return Tracker()
    return MLflowTracker(uri or default_tracking_uri(results_dir), experiment, results_dir)


def tags_for(config: Any) -> dict[str, str]:
    return {
        f"alscope.{kind}": (getattr(config, kind).name if getattr(config, kind) is not None else "")
        for kind in COMPONENT_TAGS
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
