"""Which reward weights the demonstrations cannot identify, found from the features alone.

For a linear reward r(s, a) = theta . phi(s, a) summed over a fixed horizon, a weight
direction v with v . phi(s, a) = c for every (s, a) adds the same T·c to every
trajectory's return, so it cancels in the maxent distribution: the posterior along v is
the prior, whatever the data. Such v exist exactly when the centred feature matrix
(rows (s, a), columns k) has rank < K: a constant column, a duplicated column, or a
column that is a linear combination of others (up to a constant).
:func:`identifiability_issues` names them; :func:`check_identifiability` warns.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["IdentifiabilityWarning", "check_identifiability", "identifiability_issues"]


class IdentifiabilityWarning(UserWarning):
    """Some reward weights are not identified by any data (see the message)."""


def identifiability_issues(
    features: torch.Tensor, names: list[str] | tuple[str, ...] | None = None, *, rtol: float = 1e-8
) -> list[str]:
    """Name the constant, duplicated and collinear feature columns.

    Args:
        features: ``phi[s, a, k]`` of shape (S, A, K) or (S, K).
        names: K column names (default ``feature_k``).
        rtol: singular values below ``rtol`` times the largest count as zero.

    Returns:
        One sentence per problem; empty when every weight is identified.
    """
    flat = features.reshape(-1, features.shape[-1]).to(torch.float64)
    k = flat.shape[-1]
    names = list(names) if names is not None else [f"feature_{i}" for i in range(k)]
    centred = flat - flat.mean(0)
    spread = centred.abs().amax(0)
    issues = []
    tol = rtol * max(1.0, float(flat.abs().max()))
    constant = [names[i] for i in range(k) if spread[i] <= tol]
    if constant:
        issues.append(f"constant feature column(s) {constant}: their weights are not identified "
                      "(a constant reward per step cancels in the maxent model)")
    seen: dict[tuple, str] = {}
    for i in range(k):
        if names[i] in constant:
            continue
        key = tuple(flat[:, i].tolist())
        if key in seen:
            issues.append(f"feature columns {seen[key]!r} and {names[i]!r} are identical: only "
                          "the sum of their weights is identified")
        else:
            seen[key] = names[i]
    if issues:
        return issues
    _, sing, vh = torch.linalg.svd(centred, full_matrices=False)
    top = float(sing.max())
    null = sing <= rtol * top if top > 0 else torch.ones_like(sing, dtype=torch.bool)
    for row in vh[null]:
        involved = [names[i] for i in range(k) if abs(float(row[i])) > 1e-6]
        issues.append(f"feature columns {involved} are collinear (a linear combination is "
                      "constant): one direction of their weights is not identified")
    return issues


def check_identifiability(features: torch.Tensor, names=None, *, source: str = "") -> list[str]:
    """Warn (:class:`IdentifiabilityWarning`) for every problem found; return them."""
    issues = identifiability_issues(features, names)
    where = f"{source}: " if source else ""
    for issue in issues:
        warnings.warn(where + issue, IdentifiabilityWarning, stacklevel=2)
    return issues
