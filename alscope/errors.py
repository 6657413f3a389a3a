"""The exceptions alscope raises on purpose.

Every error a user can cause derives from :class:`AlscopeError`; the CLI prints its
message on one line and exits non-zero instead of showing a traceback. Anything else
that escapes is a bug.

```
AlscopeError
├── ConfigError                 a configuration value is wrong (field, value, what is accepted)
├── RegistryError
│   ├── UnknownComponentError   no component of that kind has that name (did-you-mean)
│   └── AmbiguousComponentError two distributions register the name (qualify it)
├── DataError                   a dataset's files are missing or malformed
├── ModelError                  the model cannot give what a strategy needs (e.g. no dropout)
├── SelectionError              a strategy returned an invalid selection (names the strategy)
├── BudgetError                 the budget cannot be met by the unlabeled pool
├── TrackingError               the MLflow store cannot be reached or written
└── ResumeError                 a run cannot be resumed
```
"""

from __future__ import annotations


class AlscopeError(Exception):
    """Base class of every error alscope raises for a user to read."""


class ConfigError(AlscopeError, ValueError):
    """A configuration value is wrong: the message names the field, the value and what is accepted."""


class RegistryError(AlscopeError, LookupError):
    """A component name could not be resolved."""


class UnknownComponentError(RegistryError):
    """No registered component of the kind has the name; the message suggests close names."""

    def __init__(self, kind: str, name: str, suggestions: list[str], known: list[str]):
        self.kind, self.name, self.suggestions, self.known = kind, name, suggestions, known
        if suggestions:
            hint = "did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
        else:
            hint = f"known: {', '.join(known) or '(none installed)'}"
        super().__init__(f"unknown {kind} {name!r}; {hint}")


class AmbiguousComponentError(RegistryError):
    """Two or more distributions register the same name; the message says how to pick one."""


class DataError(AlscopeError):
    """A dataset cannot be loaded: missing files, malformed content, unusable parameters."""


class ModelError(AlscopeError):
    """The model cannot provide what a strategy needs (e.g. MC dropout on a model without dropout)."""


class SelectionError(AlscopeError):
    """A strategy returned a selection that breaks the contract; the message names the strategy."""


class BudgetError(AlscopeError, ValueError):
    """The requested budget cannot be met by the unlabeled pool."""


class TrackingError(AlscopeError):
    """The tracking store cannot be reached or written."""


class ResumeError(AlscopeError):
    """A run cannot be resumed (unknown run, finished run, or a changed configuration)."""
