import numpy as np
import pytest

from w2v_cli import sampling
from w2v_cli.examples import assemble, draw_examples, in_order, shuffled
from w2v_cli.config import Config


def rng(seed=0):
    return np.random.default_rng(seed)


def test_window_one_gives_exact_neighbours_within_sentences():
    # sentences [1 2 3] [4] [5 6]: the lone 4 has no pairs; no window crosses a boundary
    ids = np.array([1, 2, 3, 4, 5, 6], dtype=np.int32)
    offsets = np.array([0, 3, 4, 6])
    w = sampling.windows(ids, offsets, window=1, rng=rng())
    assert w.centers.tolist() == [1, 2, 3, 5, 6]
    pairs = [sorted(row[:n].tolist()) for row, n in zip(w.contexts, w.n_ctx)]
    assert pairs == [[2], [1, 3], [2], [6], [5]]
    assert w.contexts.shape == (5, 2)
    assert w.contexts[0, 1] == 0  # padding after the packed contexts


def test_windows_respect_the_drawn_size_and_sentence_bounds():
    n = 2000
    ids = np.arange(1, n + 1, dtype=np.int32)  # id == position + 1, so distances are readable
    offsets = np.array([0, 700, 1500, n])
    sentence = np.searchsorted(offsets, np.arange(n), side="right") - 1
    w = sampling.windows(ids, offsets, window=4, rng=rng(1))
    for c, row, k in zip(w.centers, w.contexts, w.n_ctx):
        ctx = row[:k]
        assert (row[k:] == 0).all()
        assert (ctx != c).all()
        assert (np.abs(ctx - c) <= 4).all()
        assert (sentence[ctx - 1] == sentence[c - 1]).all()
        assert list(ctx) == sorted(ctx)  # corpus order
        # contexts are a full symmetric window of one size, clipped only at sentence ends
        size = int(np.abs(ctx - c).max())
        lo, hi = offsets[sentence[c - 1]] + 1, offsets[sentence[c - 1] + 1]
        expected = [x for x in range(c - size, c + size + 1) if x != c and lo <= x <= hi]
        assert list(ctx) == expected
    # interior centers see window sizes 1..4 about uniformly
    interior = (w.centers > 10) & (w.centers < 690)
    sizes = w.n_ctx[interior] // 2
    assert set(sizes.tolist()) == {1, 2, 3, 4}
    assert np.abs(np.bincount(sizes)[1:] / sizes.size - 0.25).max() < 0.05


def test_subsample_keeps_rare_words_and_thins_frequent_ones():
    counts = np.array([0, 100_000, 5], dtype=np.int64)
    ids = np.repeat(np.array([1, 2], dtype=np.int32), [100_000, 5])
    offsets = np.array([0, 50_000, ids.size])
    kept, kept_offsets = sampling.subsample(ids, offsets, counts, 1e-4, rng())
    n = counts[1:].sum()
    p1 = np.sqrt(1e-4 * n / 100_000)
    assert abs((kept == 1).sum() / 100_000 - p1) < 0.01
    assert (kept == 2).sum() == 5  # sqrt(t / f) > 1: always kept
    assert kept_offsets[0] == 0 and kept_offsets[-1] == kept.size
    assert kept_offsets[1] == (kept[: kept_offsets[1]] == 1).sum()
    same, same_offsets = sampling.subsample(ids, offsets, counts, 0.0, rng())
    assert same is ids and same_offsets is offsets


def test_noise_words_follow_count_power_and_avoid_unk_and_contexts():
    counts = np.array([500, 1000, 400, 100, 50, 10], dtype=np.int64)
    probs = sampling.noise_distribution(counts)
    assert probs[0] == 0
    expected = counts[1:] ** 0.75 / (counts[1:] ** 0.75).sum()
    assert np.allclose(probs[1:], expected)
    # every center has context word 1 (the most likely noise word): rejection must remove it
    n = 20_000
    contexts = np.zeros((n, 2), dtype=np.int32)
    contexts[:, 0] = 1
    w = sampling.Windows(np.full(n, 2, dtype=np.int32), contexts, np.ones(n, dtype=np.int64))
    noise = sampling.negatives(w, probs, k=5, rng=rng())
    assert noise.shape == (n, 10)
    drawn = noise[:, :5]
    assert (noise[:, 5:] == 0).all()
    assert not (drawn == 0).any() and not (drawn == 1).any()
    # conditional on not being 1, frequencies follow count**0.75 (chi-square, 4 dof)
    observed = np.bincount(drawn.ravel(), minlength=6)[2:]
    p = probs[2:] / probs[2:].sum()
    chi2 = (((observed - p * drawn.size) ** 2) / (p * drawn.size)).sum()
    assert chi2 < 18.5  # p = 0.001 for 4 degrees of freedom


def test_guide_table_gives_exactly_the_binary_search_answers():
    # Zero-probability words (flat steps), a very likely word, and u on every bin edge and
    # every cdf value, where a floating-point slip would show.
    probs = np.array([0.0, 0.5, 0.0, 1e-9, 0.25, 0.0, 0.25 - 1e-9, 0.0])
    cdf = np.cumsum(probs)
    inverse = sampling.Inverse(cdf, bins_per_word=3)
    edges = np.arange(inverse.bins + 1) * (cdf[-1] / inverse.bins)
    u = np.concatenate([edges, np.nextafter(edges, -1), np.nextafter(edges, 2), cdf,
                        np.nextafter(cdf, -1), rng().random(200_000) * cdf[-1]])
    u = np.clip(u, 0.0, cdf[-1])
    expected = np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1)
    assert inverse(u).tolist() == expected.tolist()
    assert sampling.draw(inverse, 5, rng(3)).tolist() == sampling.draw(cdf, 5, rng(3)).tolist()


def test_noise_words_avoid_contexts_of_their_own_row_only():
    probs = sampling.noise_distribution(np.array([0, 50, 50, 50], dtype=np.int64))
    # row 0 may not draw 1 or 2 (only 3 is left); row 1 may not draw 3; row 2 has no contexts
    # to avoid beyond its one, 1; padding 0s never count as a context
    contexts = np.array([[1, 2], [3, 0], [1, 0]], dtype=np.int32)
    w = sampling.Windows(np.array([3, 1, 2], dtype=np.int32), contexts, np.array([2, 1, 1]))
    noise = sampling.negatives(w, probs, k=200, rng=rng(5))
    assert (noise[0] == 3).all()
    assert set(noise[1, :200].tolist()) == {1, 2} and (noise[1, 200:] == 0).all()
    assert set(noise[2, :200].tolist()) == {2, 3} and (noise[2, 200:] == 0).all()


def test_noise_falls_back_to_exact_draws_and_fails_clearly_when_impossible():
    probs = sampling.noise_distribution(np.array([0, 1_000_000, 1], dtype=np.int64))
    # the only allowed noise word has probability ~3e-5: plain rejection would take ages
    w = sampling.Windows(np.array([2], dtype=np.int32), np.array([[1, 0]], dtype=np.int32),
                         np.array([1]))
    assert sampling.negatives(w, probs, k=3, rng=rng()).tolist() == [[2, 2, 2, 0, 0, 0]]
    w = sampling.Windows(np.array([1], dtype=np.int32), np.array([[1, 2]], dtype=np.int32),
                         np.array([2]))
    with pytest.raises(Exception, match="cannot draw noise words"):
        sampling.negatives(w, probs, k=1, rng=rng())


def test_examples_and_batches_line_up_items_mask_and_label():
    w = sampling.Windows(np.array([5, 6], dtype=np.int32),
                         np.array([[1, 2], [3, 0]], dtype=np.int32), np.array([2, 1]))
    noise = np.array([[7, 8, 9, 7], [8, 9, 0, 0]], dtype=np.int32)
    ex = assemble(w, noise, k=2)
    assert ex.items.tolist() == [[1, 2, 7, 8, 9, 7], [3, 8, 9, 0, 0, 0]]
    (b,) = list(in_order(ex, np.arange(2), 8))
    assert b.center.tolist() == [5, 6]
    assert b.items.tolist() == ex.items.tolist()
    assert b.mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    assert b.label.tolist() == [[1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    assert b.mask.dtype == np.float32 and b.center.shape == (2,)


def test_draw_examples_is_seeded_and_batches_cover_every_example_once():
    ids = np.random.default_rng(3).integers(1, 50, size=3000).astype(np.int32)
    offsets = np.arange(0, 3001, 10)
    counts = np.bincount(ids, minlength=50).astype(np.int64)
    cfg = Config(subsample=0.0, window=2, negatives=3)
    a = draw_examples(ids, offsets, counts, cfg, rng(7))
    b = draw_examples(ids, offsets, counts, cfg, rng(7))
    assert np.array_equal(a.items, b.items) and np.array_equal(a.center, b.center)
    assert len(a) == 3000
    seen = np.concatenate([bt.center for bt in shuffled(a, 64, rng())])
    assert np.array_equal(np.sort(seen), np.sort(a.center))
    # contexts of each row are never among its noise words
    for row, n in zip(a.items[:200], a.n_ctx[:200]):
        assert not set(row[n:n * 4]) & set(row[:n])


def test_a_huge_threshold_keeps_every_word_without_a_warning():
    import warnings

    counts = np.array([0, 10 ** 6, 5, 1], dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would reach the user
        p = sampling.keep_probability(counts, 1e308)
    assert p.tolist() == [1.0, 1.0, 1.0, 1.0]
