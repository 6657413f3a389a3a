"""Self-supervised pool embeddings (alscope.ssl): the NT-Xent loss, training that learns,
the on-disk cache, seeding, and CSI's shifted instances and fallback."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import alscope.ssl as ssl
from alscope.data.base import ALDataset, LoadContext, TensorSource
from alscope.data.tabular import Digits
from alscope.errors import ConfigError
from alscope.models.mlp import MLP
from alscope.strategies.base import SSLRequest

CPU = torch.device("cpu")


def digits(tmp_path: Path, n: int = 300) -> ALDataset:
    return Digits(max_pool_size=n).load(LoadContext(tmp_path, seed=0))


def mlp(dataset: ALDataset):
    return lambda: MLP.build(dataset.input_spec, dataset.n_classes, {"hidden_sizes": [64]})


def embeddings(dataset: ALDataset, tmp_path: Path, request: SSLRequest, seed: int = 0, candidates=None):
    pool = np.arange(len(dataset.pool)) if candidates is None else candidates
    return ssl.pool_embeddings(
        request, dataset, pool, mlp(dataset), cache_dir=tmp_path, device=CPU, seed=seed, batch_size=128
    )


QUICK = SSLRequest(epochs=2, dim=16, batch_size=64)


def test_nt_xent_is_the_simclr_loss():
    rng = np.random.default_rng(0)
    za, zb = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    z = np.concatenate([za, zb])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    t, n = 0.5, 3
    expected = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        logits = np.array([z[i] @ z[j] / t for j in range(2 * n) if j != i])
        pos = z[i] @ z[positive] / t
        expected += -(pos - np.log(np.exp(logits).sum()))
    got = ssl.nt_xent(torch.tensor(za, dtype=torch.float32), torch.tensor(zb, dtype=torch.float32), t)
    assert float(got) == pytest.approx(expected / (2 * n), rel=1e-5)


def test_training_lowers_the_loss_and_the_embeddings_cluster_by_class(tmp_path):
    data = digits(tmp_path, 200)
    encoder = mlp(data)()
    request = SSLRequest(epochs=10, dim=32, batch_size=50)
    with ssl.seeded(0, CPU):
        trained = ssl.train_encoder(request, data, np.arange(len(data.pool)), encoder, device=CPU, seed=0)
    assert len(trained.losses) == 10
    assert trained.losses[-1] < trained.losses[0] - 0.3  # SimCSE: dropout makes the two views
    z = ssl.embed(trained, data, np.arange(len(data.pool)), device=CPU, batch_size=128)
    knn = KNeighborsClassifier(5, metric="cosine")
    accuracy = cross_val_score(knn, z.numpy(), data.pool.labels, cv=3).mean()
    assert accuracy > 0.6  # ten classes: chance is 0.1


def test_embeddings_cover_the_pool_are_unit_rows_and_are_cached(tmp_path, monkeypatch):
    data = digits(tmp_path, 200)
    candidates = np.arange(0, 200, 2)  # trained on half the pool, embedded everywhere
    first = embeddings(data, tmp_path, QUICK, candidates=candidates)
    assert first.shape == (200, 16) and first.dtype == torch.float32 and first.device.type == "cpu"
    torch.testing.assert_close(first.norm(dim=1), torch.ones(200))
    files = list((tmp_path / "ssl").glob("digits-simclr-*.pt"))
    assert len(files) == 1 and not list((tmp_path / "ssl").glob("*.tmp"))

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(ssl, "train_encoder", no_training)
    again = embeddings(digits(tmp_path, 200), tmp_path, QUICK, candidates=candidates)  # a fresh load
    assert torch.equal(first, again)
    # another pool, another request or another seed is another entry
    for request, seed, cands in ((QUICK, 0, np.arange(200)), (replace(QUICK, dim=8), 0, candidates)):
        with pytest.raises(AssertionError, match="trained again"):
            embeddings(data, tmp_path, request, seed=seed, candidates=cands)
    relabeled = replace(data, pool=data.pool.relabeled(np.array([0, 1, 2, 3, 4, 5, -1, -1, -1, -1])))
    with pytest.raises(AssertionError, match="trained again"):
        embeddings(relabeled, tmp_path, QUICK, candidates=candidates)


def test_the_cache_key_depends_on_content_only(tmp_path):
    """The key has no object ids or memory addresses in it, so another process finds the file."""
    a, b = digits(tmp_path, 200), digits(tmp_path, 200)
    pool = np.arange(200)
    key_a = ssl.cache_key(QUICK, a, pool, mlp(a)(), seed=0)
    assert key_a == ssl.cache_key(QUICK, b, pool, mlp(b)(), seed=0)
    assert key_a != ssl.cache_key(QUICK, b, pool, mlp(b)(), seed=1)
    standardized_off = Digits(max_pool_size=200, standardize=False).load(LoadContext(tmp_path, seed=0))
    assert key_a != ssl.cache_key(QUICK, standardized_off, pool, mlp(a)(), seed=0)


def test_same_seed_same_embeddings(tmp_path):
    data = digits(tmp_path, 120)
    one = embeddings(data, tmp_path / "a", QUICK, seed=3)
    two = embeddings(data, tmp_path / "b", QUICK, seed=3)
    other = embeddings(data, tmp_path / "c", QUICK, seed=4)
    assert torch.equal(one, two)
    assert not torch.allclose(one, other)


def test_unusable_cache_file_is_rebuilt(tmp_path):
    data = digits(tmp_path, 120)
    first = embeddings(data, tmp_path, QUICK)
    (path,) = (tmp_path / "ssl").glob("*.pt")
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="not usable"):
        again = embeddings(data, tmp_path, QUICK)
    assert torch.equal(first, again)


def test_csi_without_shifts_warns_and_trains_as_simclr(tmp_path):
    data = digits(tmp_path, 120)
    with pytest.warns(UserWarning, match="trains as simclr"):
        z = embeddings(data, tmp_path, replace(QUICK, method="csi"))
    assert z.shape == (120, 16)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(120))


@dataclass
class NoisyOffsets:
    """Vector views: Gaussian noise; shifts: the identity and an offset of every feature
    (a toy shifting transformation, to exercise CSI's shifted instances without images)."""

    n_shifts: int = 2

    def views(self, inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return inputs + 0.3 * torch.randn(inputs.shape, generator=generator)

    def shift(self, inputs: torch.Tensor, k: int) -> torch.Tensor:
        return inputs + 2.0 * k


def test_csi_trains_on_shifted_instances_with_a_shift_head(tmp_path):
    data = replace(digits(tmp_path, 120), contrastive=NoisyOffsets())
    request = replace(QUICK, method="csi", epochs=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the domain has shifts: no fallback warning
        with ssl.seeded(0, CPU):
            trained = ssl.train_encoder(request, data, np.arange(120), mlp(data)(), device=CPU, seed=0)
    assert trained.n_shifts == 2 and trained.model.shift_head is not None
    z = ssl.embed(trained, data, np.arange(120), device=CPU, batch_size=64)
    assert z.shape == (120, 2 * 16)
    # each shift's projection is a unit vector scaled by 1/sqrt(K): a dot product of two
    # rows is the mean cosine over the shifts
    for part in z.split(16, dim=1):
        torch.testing.assert_close(part.norm(dim=1), torch.full((120,), 2**-0.5))
    # the shift head learnt to tell the original from the shifted copy
    with torch.no_grad():
        assert isinstance(data.pool, TensorSource)
        x = data.pool.inputs
        _, shift_logits = trained.model(torch.cat([x, x + 2.0]))
    accuracy = (shift_logits.argmax(1) == torch.arange(2).repeat_interleave(120)).float().mean()
    assert accuracy > 0.9


def test_bad_requests_are_config_errors(tmp_path):
    data = digits(tmp_path, 60)
    with pytest.raises(ConfigError, match="method 'byol' is unknown"):
        embeddings(data, tmp_path, SSLRequest(method="byol"))
    with pytest.raises(ConfigError, match="epochs=0"):
        embeddings(data, tmp_path, SSLRequest(epochs=0))
    with pytest.raises(ConfigError, match="temperature"):
        embeddings(data, tmp_path, SSLRequest(temperature=0.0))
