"""Names users bring from ALScope and DeepAL+ for components other distributions provide.

When such a name is not installed, the error says what it means and where it comes from
instead of only "unknown". Installed components declare these spellings as aliases, which
win over this table.
"""

from __future__ import annotations

# normalised name -> (canonical name, the distribution that registers it)
PROVIDED_ELSEWHERE: dict[str, dict[str, tuple[str, str]]] = {
    # no strategy distribution besides the core exists yet: the core installs the names
    # ALScope and DeepAL+ users bring (coremse and corelog are BEMPS, AlphaMixSampling is
    # alfa_mix); a name nobody installs stays "unknown" with the closest installed names,
    # rather than pointing at a plugin nobody can install
    "strategy": {},
    "dataset": {
        name: (canonical, "alscope-cv")
        for name, canonical in {
            "mnist": "mnist",
            "fashionmnist": "fashion_mnist",
            "emnist": "emnist",
            "cifar10": "cifar10",
            "cifar100": "cifar100",
            "svhn": "svhn",
            "tinyimagenet": "tiny_imagenet",
            "medmnist": "medmnist",
            "imagefolder": "imagefolder",
        }.items()
    }
    | {
        name: (canonical, "alscope-nlp")
        for name, canonical in {
            "agnews": "agnews",
            "yelp": "yelp",
            "sst5": "sst5",
            "trec": "trec",
            "imdb": "imdb",
            "dbpedia": "dbpedia",
            "text": "text",
        }.items()
    },
    "backbone": {
        name: (canonical, "alscope-cv")
        for name, canonical in {
            "resnet18": "resnet18",
            "resnet34": "resnet34",
            "resnet50": "resnet50",
            "vgg16": "vgg16",
            "cnn": "cnn",
        }.items()
    }
    | {
        name: (canonical, "alscope-nlp")
        for name, canonical in {
            "distilbert": "distilbert",
            "distilbertbaseuncased": "distilbert",
            "bert": "bert",
            "bertbase": "bert",
            "robertabase": "roberta",
            "roberta": "roberta",
        }.items()
    },
    "scenario": {},
    "stopping": {},
}


def provided_elsewhere(kind: str, key: str) -> str | None:
    """A hint for a known but uninstalled name, or None."""
    found = PROVIDED_ELSEWHERE.get(kind, {}).get(key)
    if found is None:
        return None
    canonical, source = found
    return (
        f"that is {canonical!r}, provided by the {source} distribution, which is not installed "
        f"here (pip install {source})"
    )
