"""A scikit-learn LogisticRegression on the digits data, queried by alscope's BADGE and
stopped by stabilizing predictions.

    python examples/sklearn_digits.py [--strategy margin]
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from alscope.integrations import SklearnLearner


def main(
    strategy: str = "badge", n_initial: int = 20, n_query: int = 20, rounds: int = 8, **learner_options
) -> SklearnLearner:
    x, y = load_digits(return_X_y=True)
    x_pool, x_test, y_pool, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    learner = SklearnLearner(
        estimator,
        x_pool,
        n_classes=10,
        strategy=strategy,
        test=(x_test, y_test),
        stop="stabilizing_predictions",
        **learner_options,
    )
    initial = np.random.default_rng(learner.seed).choice(len(x_pool), n_initial, replace=False)
    learner.teach(initial, y_pool[initial])
    for _ in range(rounds):
        batch = learner.query(n_query)
        if not len(batch):
            print(f"stopped: {learner.stopped}")
            break
        learner.teach(batch, y_pool[batch])
        last = learner.history[-1]  # the round that chose this batch
        print(f"trained on {last['n_labeled']:.0f} labels: test accuracy {last['accuracy']:.3f}")
    print(learner.finish())
    return learner


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="badge")
    main(**vars(parser.parse_args()))
