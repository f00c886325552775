"""Every bad file is a ValueError naming the file and what is wrong; integers never truncate.

The cases are those of benchmarks/guard_cases.py (truncated / bad-CRC / empty archives, a
.npy named .npz,
random bytes, pickled arrays, horizon 6.7, [6, 9], "six", NaN or empty, successor 2.6),
plus a property test: random malformed arrays fed to the loaders and to TrajectoryBatch
raise ValueError and nothing else.
"""

import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bayes_irl import GridWorld, TabularMDP, TrajectoryBatch
from bayes_irl.identifiability import IdentifiabilityWarning
from bayes_irl.io import load_demonstrations, load_mdp, save_demonstrations, save_mdp


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("io")
    world = GridWorld.create(size=3, horizon=4, seed=0)
    mdp = save_mdp(folder / "mdp.npz", world.mdp)
    demos = save_demonstrations(folder / "demos.npz", world.sample_demonstrations(5, seed=0))
    return folder, world, mdp, demos


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _corrupt_crc(raw: bytes) -> bytes:
    data = bytearray(raw)
    data[len(data) // 3] ^= 0xFF  # inside the first member's compressed/stored bytes
    return bytes(data)


@pytest.mark.parametrize(
    "case, make, message",
    [
        ("truncated", lambda raw: raw[: len(raw) // 2], "not a zip archive"),
        ("bad CRC", _corrupt_crc, "corrupted or truncated"),
        ("empty", lambda raw: b"", "is empty"),
        ("random bytes", lambda raw: bytes(np.random.default_rng(0).integers(0, 256, 400,
                                                                               np.uint8)),
         "not a zip archive"),
    ],
)
def test_broken_archives_name_the_file(files, case, make, message):
    folder, _, mdp, demos = files
    for loader, good in ((lambda p: load_mdp(p), mdp), (load_demonstrations, demos)):
        path = _write(folder / f"{case.replace(' ', '_')}.npz", make(good.read_bytes()))
        with pytest.raises(ValueError, match=message) as err:
            loader(path)
        assert str(path) in str(err.value)


def test_wrong_formats(files):
    folder, _, _, _ = files
    np.save(folder / "a.npy", np.zeros(3))
    path = _write(folder / "array.npz", (folder / "a.npy").read_bytes())
    with pytest.raises(ValueError, match=r"array\.npz.*a \.npy array, not an \.npz archive"):
        load_mdp(path)
    np.savez(folder / "pickled.npz", states=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"pickled\.npz.*object \(pickled\) array"):
        load_demonstrations(folder / "pickled.npz")


@pytest.mark.parametrize(
    "horizon, message",
    [
        (np.array([], dtype=np.int64), r"shape \(0,\)"),
        (np.array("six"), "'six'"),
        (np.array(np.nan), "nan"),
        (np.array(6.7), "6.7 .not an integer"),
        (np.array([6, 9]), r"shape \(2,\)"),
        (np.array(0), "got 0"),
    ],
)
def test_horizon_is_one_integer_never_truncated(files, horizon, message):
    folder, _, mdp, _ = files
    arrays = dict(np.load(mdp))
    arrays["horizon"] = horizon
    path = folder / "bad_horizon.npz"
    np.savez(path, **arrays)
    expected = f"bad_horizon.npz: horizon must be one integer.*{message}"
    with pytest.raises(ValueError, match=expected):
        load_mdp(path)


def test_fractional_successor_is_rejected(files):
    folder, _, mdp, _ = files
    arrays = dict(np.load(mdp))
    successors = arrays["successors"].astype(float)
    successors[0, 0, 0] = 2.6
    arrays["successors"] = successors
    np.savez(folder / "succ.npz", **arrays)
    with pytest.raises(ValueError, match=r"succ\.npz: successors must hold integers"):
        load_mdp(folder / "succ.npz")


def test_unidentified_feature_columns_are_named(files):
    folder, world, _, _ = files
    mdp = world.mdp
    base = mdp.features[:, 0, :].numpy()
    cases = {
        "constant": (np.c_[base, np.ones(len(base))], r"constant feature column\(s\) \['c'\]"),
        "duplicate": (np.c_[base, base[:, 1]], r"'f1' and 'c' are identical"),
        "collinear": (np.c_[base, base[:, 0] + 2 * base[:, 2] + 3], r"collinear"),
    }
    for name, (features, message) in cases.items():
        path = folder / f"{name}.npz"
        np.savez(path, successors=mdp.successors.numpy(),
                 successor_probs=mdp.successor_log_probs.exp().numpy(),
                 initial=mdp.initial.numpy(), features=features, horizon=np.array(4),
                 feature_names=np.array(["f0", "f1", "f2", "f3", "c"]))
        with pytest.warns(IdentifiabilityWarning, match=message):
            load_mdp(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        load_mdp(files[2])  # the gridworld's features are identified: no warning


def test_float32_refused_for_long_horizons_and_large_features(files):
    _, world, _, _ = files
    mdp = world.mdp
    common = dict(successors=mdp.successors, successor_probs=mdp.successor_log_probs.exp(),
                  initial=mdp.initial, dtype=torch.float32)
    with pytest.raises(ValueError, match="too imprecise for horizon 500"):
        TabularMDP.from_sparse(features=mdp.features, horizon=500, **common)
    with pytest.raises(ValueError, match="max |feature|"):
        TabularMDP.from_sparse(features=mdp.features * 1000, horizon=4, **common)
    assert TabularMDP.from_sparse(features=mdp.features, horizon=500, allow_float32=True,
                                  **common).dtype == torch.float32
    assert TabularMDP.from_sparse(features=mdp.features, horizon=4, **common).horizon == 4


# ------------------------------------------------------------------ property-based tests
_DTYPES = st.sampled_from([np.int64, np.int8, np.uint8, np.float64, np.float32, np.bool_,
                           np.complex64, "U3", "S2"])


def _arrays():
    return st.one_of(
        hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)),
        st.just(np.array([np.nan, np.inf])),
        st.just(np.array([], dtype=np.int64)),
    )


_MDP_KEYS = ["transitions", "successors", "successor_probs", "initial", "features", "horizon",
             "true_weights", "action_log_base", "feature_names"]
_DEMO_KEYS = ["states", "actions", "lengths", "contexts"]
_SETTINGS = settings(max_examples=60, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])


def _only_value_errors(call):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # identifiability warnings are fine here
            call()
    except ValueError:
        pass  # the one allowed failure


@_SETTINGS
@given(data=st.data())
def test_malformed_mdp_files_raise_only_value_error(files, data):
    folder, _, mdp, _ = files
    arrays = dict(np.load(mdp))
    for key in data.draw(st.lists(st.sampled_from(_MDP_KEYS), min_size=1, max_size=3)):
        if data.draw(st.booleans()):
            arrays[key] = data.draw(_arrays())
        else:
            arrays.pop(key, None)
    path = folder / f"prop_mdp_{os.getpid()}.npz"
    np.savez(path, **arrays)
    _only_value_errors(lambda: load_mdp(path))


@_SETTINGS
@given(data=st.data())
def test_malformed_demonstrations_raise_only_value_error(files, data):
    folder, world, _, demos = files
    arrays = dict(np.load(demos))
    for key in data.draw(st.lists(st.sampled_from(_DEMO_KEYS), min_size=1, max_size=3)):
        arrays[key] = data.draw(_arrays())
    path = folder / f"prop_demos_{os.getpid()}.npz"
    np.savez(path, **arrays)
    mdp = world.mdp if data.draw(st.booleans()) else None
    _only_value_errors(lambda: load_demonstrations(path, mdp=mdp))


@_SETTINGS
@given(states=_arrays(), actions=_arrays(), lengths=st.one_of(st.none(), _arrays()))
def test_trajectory_batch_raises_only_value_error(files, states, actions, lengths):
    _only_value_errors(lambda: TrajectoryBatch.create(
        states=states, actions=actions, lengths=lengths, mdp=files[1].mdp))
