"""Argument validation shared by every layer: one definition of each check.

Errors name the argument, say what was received and what is expected (see the style guide:
validate early, errors say what to do).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_int_tensor",
    "check_finite",
    "check_precision",
    "integer_scalar",
    "positive_int",
    "validate_prior",
]


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int, checking that it is an integer >= ``minimum``.

    Accepts Python and numpy integers (and one-element integer tensors); rejects bools,
    floats (also integral ones such as 6.0: silent coercion hides mistakes) and strings.

    Args:
        value: the argument to check.
        name: the argument's name, used in the error message.
        minimum: smallest allowed value.

    Raises:
        ValueError: ``"{name} must be an integer >= {minimum}; got {value!r}"``.
    """
    if torch.is_tensor(value) and value.numel() == 1 and not value.is_floating_point():
        value = int(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def integer_scalar(value: Any, name: str, minimum: int = 1) -> int:
    """Return an integer stored as a 0-d or one-element array, never truncating.

    For values read from files (``horizon`` in an ``.npz``): accepts integer dtypes and
    integral floats (``6.0``), rejects empty arrays, several values (``[6, 9]``),
    non-integral floats (``6.7``), NaN/inf, strings and bools.

    Args:
        value: array-like holding one number.
        name: the field's name, used in the error messages.
        minimum: smallest allowed value.

    Raises:
        ValueError: naming ``name``, what was received and what is expected.
    """
    array = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
    expected = f"one integer >= {minimum}"
    if array.size != 1:
        raise ValueError(
            f"{name} must be {expected}; got an array of shape {array.shape} "
            f"({array.size} values)"
        )
    if array.dtype.kind == "b" or array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be {expected}; got {array.reshape(-1)[0]!r} "
                         f"(dtype {array.dtype})")
    item = array.reshape(-1)[0]
    if array.dtype.kind == "f" and not (np.isfinite(item) and float(item).is_integer()):
        raise ValueError(f"{name} must be {expected}; got {float(item)!r} (not an integer)")
    if int(item) < minimum:
        raise ValueError(f"{name} must be {expected}; got {int(item)}")
    return int(item)


def as_int_tensor(value: Any, name: str, expected: str = "") -> torch.Tensor:
    """Convert integer-valued ``value`` to int64, rejecting NaN/inf and non-integral floats.

    Args:
        value: array-like or tensor.
        name: argument name used in the error messages.
        expected: optional description of the expected shape, appended to the messages.

    Raises:
        ValueError: naming ``name`` for non-finite, non-integral or non-numeric input.
    """
    what = f" {expected}" if expected else ""
    array = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(f"{name} must be finite integers{what}; found NaN or inf")
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"{name} must hold integers{what}; got non-integral floats")
    elif array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array{what}; got dtype {array.dtype}")
    return torch.as_tensor(array.astype(np.int64))


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise if ``tensor`` holds NaN or inf, naming the first bad index.

    Raises:
        ValueError: ``"{name} must be finite; found {value} at index {index}"``.
    """
    if not bool(torch.isfinite(tensor).all()):
        bad = (~torch.isfinite(tensor)).nonzero()[0].tolist()
        raise ValueError(
            f"{name} must be finite; found {tensor[tuple(bad)].item()} at index {tuple(bad)}"
        )


def validate_prior(prior: Any, num_params: int, name: str = "prior"):
    """Check a univariate prior with batch shape () or (D,) and expand it to (D,).

    Args:
        prior: a torch/pyro ``Distribution`` with ``event_shape ()``.
        num_params: D.
        name: argument name used in the error messages.

    Returns:
        The prior expanded to batch shape ``(D,)``.

    Raises:
        ValueError: for a non-distribution, a multivariate prior or a wrong batch shape.
    """
    if not isinstance(prior, torch.distributions.Distribution):
        raise ValueError(f"{name} must be a univariate torch/pyro Distribution; got {prior!r}")
    if prior.event_shape != ():
        raise ValueError(
            f"{name} must be univariate (event_shape ()), one value per parameter; got "
            f"event_shape {tuple(prior.event_shape)}. Use e.g. dist.Normal(0., 1.) or "
            f"dist.Normal(torch.zeros({num_params}), scales)"
        )
    if prior.batch_shape not in ((), (num_params,)):
        raise ValueError(
            f"{name} must have batch_shape () or ({num_params},); got {tuple(prior.batch_shape)}"
        )
    return prior.expand((num_params,))


FLOAT32_MAX_HORIZON = 100
"""Longest horizon accepted in float32 (a gradient measured 0.574x too small at
T = 500 in float32; errors accumulate over the T steps of the recursion)."""

FLOAT32_MAX_RETURN = 1e3
"""Largest ``T * max |phi|`` (the return of a unit-weight reward) accepted in float32
(measured: gradient error 1e-7 at unit rewards, 1% at rewards ~1e4)."""


def check_precision(dtype: torch.dtype, horizon: int, feature_scale: float, *,
                    allow_float32: bool = False) -> None:
    """Refuse single (or lower) precision where the exact recursion loses accuracy silently.

    Args:
        dtype: the floating dtype of the MDP.
        horizon: T.
        feature_scale: ``max |phi|``.
        allow_float32: skip the check (the caller accepts the error).

    Raises:
        ValueError: for a dtype with fewer than 53 mantissa bits when ``horizon`` exceeds
            :data:`FLOAT32_MAX_HORIZON` or ``horizon * feature_scale`` exceeds
            :data:`FLOAT32_MAX_RETURN`.
    """
    if allow_float32 or not dtype.is_floating_point or torch.finfo(dtype).bits >= 64:
        return
    scale = horizon * feature_scale
    if horizon > FLOAT32_MAX_HORIZON or scale > FLOAT32_MAX_RETURN:
        raise ValueError(
            f"dtype {dtype} is too imprecise for horizon {horizon} with max |feature| "
            f"{feature_scale:.3g} (limits: horizon <= {FLOAT32_MAX_HORIZON}, horizon x max "
            f"|feature| <= {FLOAT32_MAX_RETURN:g}): the log-normaliser and its gradient lose "
            "accuracy silently. Use float64, or pass allow_float32=True to accept it"
        )
