"""Read and write tabular MDPs and demonstrations as ``.npz`` files.

So users can bring their own MDP and data. Keys (validated on load; errors name the key):

MDP file:
    ``transitions``      float (S, A, S), P[s, a, s'] — or, sparse:
    ``successors``       int (S, A, F) with ``successor_probs`` float (S, A, F)
    ``initial``          float (S,)
    ``features``         float (S, K) (state features) or (S, A, K)
    ``horizon``          int scalar T: actions per trajectory; states are s_0..s_T and the
                         step reward r(s_t, a_t) is earned at t = 0..T-1
    ``true_weights``     optional float (K,)
    ``action_log_base``  optional float (S, A): log of the action base measure (log pi_ref)
    ``feature_names``    optional str (K,)

Demonstrations file:
    ``states``   int (n, T+1): states[i, t] = s_t
    ``actions``  int (n, T):   actions[i, t] = a_t, taken in s_t, leading to s_{t+1}
    ``lengths``  optional int (n,): observed actions per trajectory (padded, masked
                 variable-length trajectories); entries past a length are ignored
    ``contexts`` optional int (n,)

Writers never overwrite an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from bayes_irl.identifiability import check_identifiability
from bayes_irl.mdp import TabularMDP
from bayes_irl.trajectories import TrajectoryBatch
from bayes_irl.validation import integer_scalar

__all__ = ["save_mdp", "load_mdp", "save_demonstrations", "load_demonstrations"]


def _check_writable(path: Path, overwrite: bool) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path must end in .npz; got {str(path)!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _load(path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file; every failure is a ValueError naming the file.

    Truncated or corrupted archives (bad zip structure, bad CRC), empty files, a ``.npy``
    (or any other file) under an ``.npz`` name, pickled object arrays and unreadable
    members all raise ``ValueError(f"{path} ...: what is wrong")``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes); expected an .npz archive")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            magic = handle.read(6)
        what = "a .npy array, not an .npz archive" if magic == b"\x93NUMPY" else (
            "not a zip archive (truncated, or not written by numpy.savez)")
        raise ValueError(f"{path} is not a readable .npz file: {what}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile,
            zipfile.LargeZipFile, NotImplementedError, RuntimeError) as err:
        message = str(err)
        if "pickle" in message or "Object arrays" in message:
            raise ValueError(f"{path} holds an object (pickled) array, which is never loaded; "
                             "store numeric arrays only") from err
        raise ValueError(f"{path} is not a readable .npz file (corrupted or truncated?): "
                         f"{type(err).__name__}: {message}") from err
    if not arrays:
        raise ValueError(f"{path} is an .npz archive without arrays")
    return arrays


def _require(arrays: dict, key: str, path, expected: str) -> np.ndarray:
    if key not in arrays:
        raise ValueError(f"{path} is missing key {key!r} ({expected})")
    return arrays[key]


@contextmanager
def _naming(path):
    """Prefix every ValueError raised inside with the file's name (once)."""
    try:
        yield
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: {err}") from err


def _names(value, path) -> list[str]:
    """``feature_names`` must be a 1-D array of names (K,)."""
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"feature_names in {path} must be a 1-D array of K names; got shape "
                         f"{array.shape}")
    return [str(n) for n in array]


def _field(check, value, name: str, path):
    """Run ``check(value, name)``, prefixing its ValueError with the file's name."""
    try:
        return check(value, name)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def save_mdp(path, mdp: TabularMDP, *, true_weights=None, overwrite: bool = False) -> Path:
    """Write ``mdp`` (sparse form) and optional ``true_weights`` (K,) to ``path``.

    Returns:
        The path written.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """
    path = _check_writable(path, overwrite)
    features = mdp.features[:, 0, :] if mdp.state_features else mdp.features
    arrays = {
        "successors": mdp.successors.cpu().numpy(),
        "successor_probs": mdp.successor_log_probs.exp().cpu().numpy(),
        "initial": mdp.initial.cpu().numpy(),
        "features": features.cpu().numpy(),
        "horizon": np.asarray(mdp.horizon),
        "action_log_base": mdp.action_log_base.cpu().numpy(),
        "feature_names": np.asarray(mdp.feature_names),
    }
    if true_weights is not None:
        arrays["true_weights"] = torch.as_tensor(true_weights).cpu().numpy()
    np.savez(path, **arrays)
    return path


def load_mdp(
    path, *, dtype: torch.dtype = torch.float64, device: str | torch.device | None = None
) -> tuple[TabularMDP, torch.Tensor | None]:
    """Load an MDP file (see module docstring for keys).

    Returns:
        ``(mdp, true_weights)``; ``true_weights`` is None when the file has none.

    Raises:
        ValueError: for a missing or malformed key (the message names it).
    """
    arrays = _load(path)
    with _naming(path):
        mdp, weights = _mdp_from_arrays(arrays, path, dtype=dtype, device=device)
    # a user's MDP: name the weights no data can identify
    check_identifiability(mdp.features, mdp.feature_names, source=str(path))
    return mdp, weights


def _mdp_from_arrays(arrays, path, *, dtype, device):
    common = {
        "initial": _require(arrays, "initial", path, "float (S,)"),
        "features": _require(arrays, "features", path, "float (S, K) or (S, A, K)"),
        "horizon": _field(integer_scalar, _require(arrays, "horizon", path, "int scalar"),
                          "horizon", path),
        "action_log_base": arrays.get("action_log_base"),
        "feature_names": _names(arrays["feature_names"], path) if "feature_names" in arrays
        else None,
        "dtype": dtype,
        "device": device,
    }
    if "transitions" in arrays:
        mdp = TabularMDP.from_dense(transitions=arrays["transitions"], **common)
    elif "successors" in arrays:
        probs = _require(arrays, "successor_probs", path, "float (S, A, F) beside successors")
        mdp = TabularMDP.from_sparse(
            successors=arrays["successors"], successor_probs=probs, **common
        )
    else:
        raise ValueError(
            f"{path} is missing key 'transitions' (float (S, A, S)) or 'successors' + "
            "'successor_probs' (int/float (S, A, F))"
        )
    weights = None
    if "true_weights" in arrays:
        raw_weights = np.asarray(arrays["true_weights"])
        if raw_weights.dtype.kind not in "iuf":
            raise ValueError(f"true_weights in {path} must be a float array (K,); got dtype "
                             f"{raw_weights.dtype}")
        weights = torch.as_tensor(raw_weights, dtype=dtype, device=device)
        if weights.shape != (mdp.num_features,):
            raise ValueError(
                f"true_weights in {path} must have shape ({mdp.num_features},); got "
                f"{tuple(weights.shape)}"
            )
    return mdp, weights


def save_demonstrations(path, batch: TrajectoryBatch, *, overwrite: bool = False) -> Path:
    """Write a :class:`TrajectoryBatch` to ``path``.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """
    path = _check_writable(path, overwrite)
    arrays = {
        "states": batch.states.numpy(),
        "actions": batch.actions.numpy(),
        "lengths": batch.lengths.numpy(),
    }
    if batch.contexts is not None:
        arrays["contexts"] = batch.contexts.numpy()
    np.savez(path, **arrays)
    return path


def load_demonstrations(path, *, mdp: TabularMDP | None = None) -> TrajectoryBatch:
    """Load demonstrations (see module docstring); validated against ``mdp`` if given.

    Raises:
        ValueError: for a missing or malformed key, or data that do not fit ``mdp``.
    """
    arrays = _load(path)
    with _naming(path):
        return TrajectoryBatch.create(
            states=_require(arrays, "states", path, "int (n, T+1)"),
            actions=_require(arrays, "actions", path, "int (n, T)"),
            lengths=arrays.get("lengths"),
            contexts=arrays.get("contexts"),
            mdp=mdp,
        )
