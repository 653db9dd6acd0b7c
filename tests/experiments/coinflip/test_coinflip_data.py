import numpy as np

from deltahall.experiments.coinflip.data import derive_seeds, make_dataset, sample_coin_sets


def test_dataset_shapes_sets_and_truth(tiny):
    cfg = tiny(n=3, m=500)
    d = make_dataset(cfg, derive_seeds(cfg.seed)[0])
    assert d.train_labels.shape == (400, 3) and d.val_labels.shape == (100, 3)
    assert np.all(np.diff(d.train_labels, axis=1) > 0)  # sorted, distinct coins
    np.testing.assert_array_equal(d.sets[d.train_set], d.train_labels)
    np.testing.assert_array_equal(d.sets[d.val_set], d.val_labels)
    assert d.pmf.shape == (len(d.sets), 4)
    np.testing.assert_allclose(d.pmf @ np.arange(4), d.mean)
    assert d.train_y.min() >= 0 and d.train_y.max() <= 3


def test_same_seed_same_data_other_seed_other_data(tiny):
    a = make_dataset(tiny(), derive_seeds(1)[0])
    b = make_dataset(tiny(), derive_seeds(1)[0])
    c = make_dataset(tiny(), derive_seeds(2)[0])
    np.testing.assert_array_equal(a.train_y, b.train_y)
    assert not np.array_equal(a.train_labels, c.train_labels)


def test_coin_sets_are_uniform_and_heads_follow_probabilities(tiny):
    rng = np.random.default_rng(0)
    sets = sample_coin_sets(2, 60000, rng)
    _, counts = np.unique(sets, axis=0, return_counts=True)
    assert len(counts) == 6 and np.all(np.abs(counts / 60000 - 1 / 6) < 0.01)
    cfg = tiny(m=20000)
    d = make_dataset(cfg, derive_seeds(3)[0])
    assert abs(d.train_y.mean() - d.mean[d.train_set].mean()) < 0.03
