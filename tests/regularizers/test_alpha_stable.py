import math

import keras
import numpy as np
import pytest
from scipy import stats

from keras_psp.regularizers import alpha_stable

# Backend-independent: the TensorFlow pass runs it (the other passes would
# only repeat it, and CI's time is short).
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent NumPy table: runs in the TensorFlow pass",
)


def _grid(alpha):
    step, values, slopes = alpha_stable.negative_log_density_table(alpha)
    return np.arange(values.size) * step, values, slopes


def test_alpha_2_is_the_gaussian_of_variance_2():
    u, values, slopes = _grid(2.0)
    # exp(-t²) is the characteristic function of N(0, 2).
    np.testing.assert_allclose(
        values, u**2 / 4 + math.log(2 * math.sqrt(math.pi)), rtol=1e-4
    )
    np.testing.assert_allclose(slopes[1:], u[1:] / 2, rtol=1e-4)
    # Thin tails: the table stops where p is too small to be accurate.
    assert 8 < u[-1] < 10


def test_alpha_1_is_the_cauchy_law():
    u, values, slopes = _grid(1.0)
    np.testing.assert_allclose(values, np.log(math.pi * (1 + u**2)), rtol=1e-4)
    np.testing.assert_allclose(
        slopes[1:], 2 * u[1:] / (1 + u[1:] ** 2), rtol=1e-4
    )
    assert u[-1] == pytest.approx(alpha_stable.TABLE_END)


@pytest.mark.parametrize("alpha", [0.5, 0.8, 1.5])
def test_other_alphas_match_scipy(alpha):
    # scipy: exp(-|c t|^α) with c = 1 is dispersion 1; at α = 0.5 it uses
    # the closed form through Fresnel integrals, elsewhere Nolan's integral.
    u, values, slopes = _grid(alpha)
    points = u[::25]
    np.testing.assert_allclose(
        values[::25], -stats.levy_stable.logpdf(points, alpha, 0.0), rtol=1e-6
    )
    h = 1e-5
    numeric = -(
        stats.levy_stable.logpdf(points[1:] + h, alpha, 0.0)
        - stats.levy_stable.logpdf(points[1:] - h, alpha, 0.0)
    ) / (2 * h)
    np.testing.assert_allclose(slopes[::25][1:], numeric, rtol=1e-4)
    # The peak: p(0) = Γ(1 + 1/α) / π.
    assert math.exp(-values[0]) == pytest.approx(
        math.gamma(1 + 1 / alpha) / math.pi, rel=1e-9
    )


@pytest.mark.parametrize("alpha", [0.3, 2.5, -1.0])
def test_alpha_out_of_range_is_refused(alpha):
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0.5, 2\]"):
        alpha_stable.validate_alpha(alpha)


@pytest.mark.parametrize("alpha", ["0.5", True, None])
def test_alpha_of_wrong_type_is_refused(alpha):
    with pytest.raises(TypeError, match="`alpha` must be a real number"):
        alpha_stable.validate_alpha(alpha)


@pytest.mark.parametrize("alpha", [0.5, 0.8, 1.0, 1.5, 1.99])
def test_series_meets_the_table_at_its_end(alpha):
    step, values, _ = alpha_stable.negative_log_density_table(alpha)
    end = step * (values.size - 1)
    coefficients = alpha_stable.tail_coefficients(alpha)
    density = (
        sum(a * end ** -(alpha * k + 1) for k, a in enumerate(coefficients, 1))
        / math.pi
    )
    assert -math.log(density) == pytest.approx(values[-1], rel=2e-6)
