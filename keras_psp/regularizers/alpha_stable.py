"""Symmetric alpha-stable (SαS) densities, tabulated for `SoftDiamond`.

A SαS law with tail index α ∈ (0, 2] and dispersion γ > 0 has the
characteristic function `φ(t) = exp(-γ |t|^α)`: α = 2 is the Gaussian of
variance 2γ, α = 1 the Cauchy law of scale γ; below 2 the tails are power
laws, `p(w) ~ γ Γ(1+α) sin(πα/2) / (π |w|^(1+α))`. Only α = 1 and α = 2
(and α = 1/2, through Fresnel integrals) have closed forms. Scaling: if X
has dispersion 1, `γ^(1/α) X` has dispersion γ, so one table per α (for
γ = 1) serves every γ.

The density is computed here by inverting the characteristic function,

    p(u) = (1/π) ∫_0^∞ exp(-t^α) cos(t u) dt,
    p'(u) = -(1/π) ∫_0^∞ t exp(-t^α) sin(t u) dt,

with Gauss-Legendre quadrature on panels no longer than a period of the
fastest oscillation (geometric panels near t = 0, where `t^α` is not
smooth for α < 1), in float64. It needs only NumPy; `scipy.stats.levy_stable`
(which special-cases α = 1/2, 1 and 2) is used in the tests as a check.
"""

import functools
import math
import numbers

import numpy as np

# The table covers u = |w| / γ^(1/α) in [0, TABLE_END], in TABLE_STEP steps;
# beyond, `SoftDiamond` uses the density's series in u^-α (`tail_coefficients`).
TABLE_END = 20.0
TABLE_STEP = 0.02
ALPHA_RANGE = (0.5, 2.0)
# Where p falls below this share of p(0) the quadrature's absolute error
# (~1e-16) would show in -log p: the table stops there (α near 2 only).
_SMALLEST_SHARE = 1e-8
_NODES = 12  # Gauss-Legendre nodes per panel (a period of cos(t u) at most)


def validate_alpha(alpha, name="alpha"):
    """Returns `alpha` as a float, or raises naming `name` unless it is a
    real number in [0.5, 2]."""
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(
        alpha, numbers.Real
    ):
        raise TypeError(
            f"Argument `{name}` must be a real number in [0.5, 2] (the "
            f"tail index α). Received: {name}={alpha!r} of type "
            f"{type(alpha).__name__}."
        )
    value = float(alpha)
    if not ALPHA_RANGE[0] <= value <= ALPHA_RANGE[1]:
        raise ValueError(
            f"Argument `{name}` must be in [0.5, 2] (the tail index α of "
            "the symmetric alpha-stable prior; 2 is Gaussian, 1 Cauchy, "
            "0.5 the soft diamond paper's choice; below 0.5 the density's "
            f"quadrature is not accurate). Received: {name}={alpha!r}."
        )
    return value


def _t_nodes(alpha, u_max):
    """Quadrature nodes and weights on [0, T] for the inversion integrals."""
    # exp(-T^α) < 3e-16: the rest of the integral is below float64's reach.
    end = 36.0 ** (1.0 / alpha)
    edges = [0.0] + list(np.geomspace(1e-8, 1.0, 17))
    width = min(1.0, 2 * math.pi / max(u_max, 1e-12))
    count = max(1, math.ceil((end - 1.0) / width))
    edges += list(np.linspace(1.0, end, count + 1)[1:])
    edges = np.asarray(edges)
    x, w = np.polynomial.legendre.leggauss(_NODES)
    left, right = edges[:-1, None], edges[1:, None]
    half = (right - left) / 2
    nodes = (left + half * (x[None, :] + 1)).ravel()
    weights = (half * w[None, :]).ravel()
    return nodes, weights


def standard_density(grid_step, size, alpha):
    """The SαS density of dispersion 1, and its derivative, on a grid.

    Args:
        grid_step: the grid's step Δ (the points are `k * Δ`, k >= 0).
        size: the number of points.
        alpha: the tail index, in [0.5, 2].

    Returns:
        `(p, dp)`: float64 arrays of `p(kΔ)` and `p'(kΔ)`, k = 0..size-1.
    """
    alpha = validate_alpha(alpha)
    nodes, weights = _t_nodes(alpha, grid_step * (size - 1))
    damping = weights * np.exp(-(nodes**alpha)) / math.pi
    # cos and sin of t·kΔ by rotating (cos, sin) of t·(k-1)Δ by t·Δ: no
    # cosine or sine per point and node (the rounding grows like k ε).
    cos_step, sin_step = np.cos(nodes * grid_step), np.sin(nodes * grid_step)
    cos, sin = np.ones_like(nodes), np.zeros_like(nodes)
    slope_weights = damping * nodes
    p = np.empty(size)
    dp = np.empty(size)
    for k in range(size):
        p[k] = cos @ damping
        dp[k] = -(sin @ slope_weights)
        cos, sin = (
            cos * cos_step - sin * sin_step,
            cos * sin_step + sin * cos_step,
        )
    return p, dp


@functools.lru_cache(maxsize=16)
def negative_log_density_table(alpha):
    """`-log p` of the dispersion-1 SαS law, and its derivative, on a grid.

    Args:
        alpha: the tail index, in [0.5, 2].

    Returns:
        `(step, values, slopes)`: the grid `u_k = k * step`, k = 0..K-1,
        `values[k] = -log p(u_k)` and `slopes[k] = -p'(u_k) / p(u_k)`
        (float64 NumPy arrays, read-only). The grid ends at `TABLE_END`, or
        earlier where p falls below 1e-8 of p(0) (α near 2, whose tails are
        thin), so that every entry is accurate.
    """
    alpha = validate_alpha(alpha)
    size = round(TABLE_END / TABLE_STEP) + 1
    p, dp = standard_density(TABLE_STEP, size, alpha)
    keep = p > _SMALLEST_SHARE * p[0]
    # The density falls monotonically: keep the leading run of good points.
    size = int(np.argmin(keep)) if not keep.all() else size
    values = -np.log(p[:size])
    slopes = -dp[:size] / p[:size]
    for array in (values, slopes):
        array.setflags(write=False)
    return TABLE_STEP, values, slopes


def tail_coefficients(alpha, terms=10):
    """The coefficients `a_k` of the SαS density's series in `u^-α`.

    For dispersion 1 and α < 2 (Bergström's series; convergent for α < 1,
    asymptotic for 1 < α < 2),

        p(u) = (1/π) Σ_{k>=1} a_k u^-(αk+1),
        a_k = (-1)^(k+1) Γ(αk + 1) / k! · sin(kπα/2).

    With 10 terms, at u = 20 (where the table ends) it agrees with the
    table to 2e-6 in -log p for every α in [0.5, 2) (tested), and it gets
    better as u grows.

    Returns:
        A list of `terms` floats.
    """
    alpha = validate_alpha(alpha)
    return [
        (-1) ** (k + 1)
        * math.gamma(alpha * k + 1)
        / math.factorial(k)
        * math.sin(k * math.pi * alpha / 2)
        for k in range(1, terms + 1)
    ]
