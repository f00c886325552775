"""The PIT-ECDF figure draws the band the uniformity test uses."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from bayes_irl.app.calibration_plots import plot_pit_ecdf  # noqa: E402
from bayes_irl.inference.calibration import CalibrationResult  # noqa: E402
from bayes_irl.inference.calibration_statistics import _null_gammas  # noqa: E402


def test_pit_ecdf_band_is_the_uniformity_tests_band():
    # N = 200: the 95% simultaneous band of Säilynoja et al. is +-0.105 at z = 1/2 (the
    # band implied by the gamma test's critical value, computed below; KS gives +-0.095).
    # ArviZ's "simulated" band, chosen when rvs= is passed, was +-0.055 there: the figure
    # showed a calibrated run outside its band. Tolerance: one ECDF step on the plotted
    # grid (0.01) plus one count (1/200).
    n = 200
    pit = np.random.default_rng(0).random((n, 1))
    result = CalibrationResult(names=["x"], rank=np.zeros((n, 1), int), pit=pit,
                               truth=np.zeros((n, 1)), seconds=np.ones(n), num_rank_draws=99,
                               attrs={})
    ax = plot_pit_ecdf(result)[0]
    vertices = np.concatenate([p.vertices for c in ax.collections for p in c.get_paths()])
    near = vertices[np.abs(vertices[:, 0] - 0.5) < 0.006]
    half_width = (near[:, 1].max() - near[:, 1].min()) / 2
    plt.close(ax.figure)
    critical = np.quantile(_null_gammas(n, 2000, 0), 0.05)
    counts = np.arange(n + 1)
    inside = 2 * np.minimum(stats.binom.cdf(counts, n, 0.5),
                            stats.binom.sf(counts - 1, n, 0.5)) >= critical
    expected = (counts[inside].max() - counts[inside].min()) / (2 * n)
    assert abs(half_width - expected) <= 0.01 + 1 / n, (half_width, expected)
