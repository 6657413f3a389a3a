"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``, ``nox -s bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "uv|virtualenv"


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run(
        "python", "-m", "pytest", *session.posargs, env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    )


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.4")
    session.run(
        "ruff",
        "check",
        "alscope",
        "alscope-cv",
        "alscope-nlp",
        "tests",
        "benchmarks",
        "plugins",
        "examples",
        "noxfile.py",
    )


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]", "-e", "./alscope-cv", "-e", "./alscope-nlp")
    session.run("mypy")
    session.run("mypy", "alscope-cv/alscope_cv", "alscope-nlp/alscope_nlp")


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", ".")
    session.run("python", "benchmarks/cli_startup.py", *session.posargs)
