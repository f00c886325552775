"""Preference files: CSV/JSONL/DataFrame round trips, ragged items, named row errors."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.io import save_demonstrations
from bayes_irl.models import (
    TIE,
    PairwiseComparisons,
    PreferenceModel,
    Rankings,
    load_preferences,
    preferences_from_dataframe,
    save_preferences,
    simulate_comparisons,
    simulate_rankings,
)
from bayes_irl.trajectories import TrajectoryBatch
from tests.helpers import item_pool


@pytest.fixture(scope="module")
def world():
    return GridWorld.create(size=4, horizon=6, seed=1)


@pytest.fixture(scope="module")
def pool(world):
    return item_pool(world.mdp, world.reward_model, num_rewards=8)


def _ragged(pool):
    """Cut every third item short: lengths 6, 3, 6, 6, 3, ... (padded with -1)."""
    batch = TrajectoryBatch.from_tensor(pool)
    lengths = torch.where(torch.arange(len(pool)) % 3 == 1, 3, 6)
    return TrajectoryBatch.create(states=batch.states, actions=batch.actions,
                                  lengths=lengths).as_tensor()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_round_trip_ids_and_inline_gives_identical_log_likelihood(world, pool, tmp_path, suffix):
    theta = torch.tensor([0.3, -1.2, 0.8, 0.5], dtype=torch.float64)
    # ids into an item pool, with ties
    pool_model = PreferenceModel(world.reward_model, pool, ties="davidson")
    data = simulate_comparisons(pool_model, world.true_weights, 40, seed=0)
    assert (torch.as_tensor(data.outcomes) == TIE).any()
    loaded = load_preferences(save_preferences(tmp_path / f"ids{suffix}", data), items=pool)
    assert torch.equal(loaded.first, torch.as_tensor(data.first))
    before = pool_model.log_likelihood(theta, pool_model.prepare_data(data))
    after = pool_model.log_likelihood(theta, pool_model.prepare_data(loaded))
    assert torch.equal(before, after)  # the same numbers, not just close
    # inline ragged trajectories on the MDP: padded automatically on load and by the model
    mdp_model = PreferenceModel(world.reward_model, world.mdp, ties="davidson")
    items = _ragged(pool)
    inline = simulate_comparisons(mdp_model, world.true_weights, 30, seed=1, items=items)
    path = save_preferences(tmp_path / f"inline{suffix}", inline)
    loaded = load_preferences(path)
    assert loaded.first.shape[1] == 7  # padded to the longest item (T = 6)
    before = mdp_model.log_likelihood(theta, mdp_model.prepare_data(inline))
    after = mdp_model.log_likelihood(theta, mdp_model.prepare_data(loaded))
    assert torch.equal(before, after)
    # the short items were written without their padding
    if suffix == ".jsonl":
        first = json.loads(path.read_text().splitlines()[1])["first"]
        assert len(first["actions"]) in (3, 6) and len(first["states"]) == len(
            first["actions"]) + 1
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        save_preferences(path, inline)


def test_rankings_round_trip_and_dataframe(world, pool, tmp_path):
    theta = world.true_weights
    model = PreferenceModel(world.reward_model, pool, likelihood="plackett_luce")
    rankings = simulate_rankings(model, theta, 10, set_size=3, seed=0)
    for suffix in (".csv", ".jsonl"):
        loaded = load_preferences(save_preferences(tmp_path / f"r{suffix}", rankings))
        assert torch.equal(loaded.rankings, torch.as_tensor(rankings.rankings))
    mdp_model = PreferenceModel(world.reward_model, world.mdp, likelihood="plackett_luce")
    inline = simulate_rankings(mdp_model, theta, 5, set_size=3, seed=1, items=_ragged(pool))
    for suffix in (".csv", ".jsonl"):
        loaded = load_preferences(save_preferences(tmp_path / f"ri{suffix}", inline))
        assert torch.equal(mdp_model.log_likelihood(theta, mdp_model.prepare_data(loaded)),
                           mdp_model.log_likelihood(theta, mdp_model.prepare_data(inline)))
    # a DataFrame: ids, inline lists and space-separated strings all work
    frame = pd.DataFrame({"first": [0, 3], "second": [1, 2], "outcome": [1, 0.5],
                          "who": ["ann", "bob"]})
    data = preferences_from_dataframe(frame, items=pool)
    assert data.first.tolist() == [0, 3] and data.outcomes.tolist() == [1.0, 0.5]
    frame = pd.DataFrame({"first_states": [[0, 1, 2], "4 5"], "first_actions": [[1, 1], "2"],
                          "second_states": ["0 4", "5 6"], "second_actions": ["3", [1]],
                          "outcome": [0, 1]})
    data = preferences_from_dataframe(frame)
    assert data.first.shape == (2, 3, 2)
    assert data.first[1].tolist() == [[4, 2], [5, -1], [-1, -1]]


def test_skips_and_extra_columns_are_ignored(tmp_path):
    path = tmp_path / "answers.jsonl"
    lines = [
        {"query_id": 0, "first": 1, "second": 2, "answer": "left", "outcome": 1.0},
        {"query_id": 1, "first": 3, "second": 0, "answer": "skip", "outcome": None},
        {"query_id": 2, "first": 3, "second": 0, "answer": "tie", "outcome": 0.5},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    data = load_preferences(path)
    assert data.first.tolist() == [1, 3] and data.outcomes.tolist() == [1.0, 0.5]


def _write_csv(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("first,second,outcome\n0,1,1\n2,1,yes\n", r"bad\.csv line 3: outcome must be 1"),
    ("first,second,outcome\n0,1,1\n0,1,2\n", r"line 3: outcome must be 1"),
    ("first,second,outcome\n0,1,1\n0,,1\n", r"line 3: missing 'second'"),
    ("first,second,outcome\n0,1.5,1\n", r"line 2: second must be an integer"),
    ("first,second,outcome\n0,-1,1\n", r"line 2: second must be an item id >= 0"),
    ("first,second,outcome\n0,99,1\n", r"line 2: second must be an item id >= 0 and < 24"),
    ("first,second,outcome\n0,1,1,7\n", r"line 2: 1 more fields than the 3 columns"),
    ("first_states,first_actions,second_states,second_actions,outcome\n"
     "0 1 2,1,0 1,1,1\n", r"line 2: first needs L >= 1 actions and L \+ 1 states"),
    ("first_states,first_actions,second_states,second_actions,outcome\n"
     "0 1,1,0 x,1,1\n", r"line 2: second states must be an integer"),
    ("ranking\n0 1 2\n0 1\n", r"line 3: every ranking must rank the same number k = 3"),
    ("ranking\n0 1 1\n", r"line 2: a ranking must not repeat an item"),
    ("first,second,outcome,answer\n0,1,1,skip\n", r"holds no judgements"),
])
def test_malformed_csv_rows_name_file_and_line(tmp_path, pool, text, message):
    path = _write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=message):
        load_preferences(path, items=pool)


def test_malformed_jsonl_and_other_errors(tmp_path, pool):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"first": 0, "second": 1, "outcome": 1}\n{"first": 0, "second": 1,\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl line 2: not valid JSON"):
        load_preferences(path)
    path.write_text('{"first": 0, "second": 1, "outcome": 1}\n'
                    '{"first": {"states": [0, 1], "actions": [1]}, "second": 1, "outcome": 1}\n')
    with pytest.raises(ValueError, match="line 2: a inline pair row after id pair rows"):
        load_preferences(path)
    path.write_text('[1, 2]\n')
    with pytest.raises(ValueError, match="line 1: expected a JSON object"):
        load_preferences(path)
    frame = pd.DataFrame({"first": [0, 1], "second": [1, 2], "outcome": [1, np.nan]},
                         index=["a", "b"])
    with pytest.raises(ValueError, match="DataFrame row 'b': missing 'outcome'"):
        preferences_from_dataframe(frame)
    with pytest.raises(ValueError, match="must end in .csv or .jsonl"):
        load_preferences(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        load_preferences(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="data must be PairwiseComparisons or Rankings"):
        save_preferences(tmp_path / "y.csv", {"first": [0]})
    # ids checked against an item file on disk
    items_path = save_demonstrations(tmp_path / "items.npz", TrajectoryBatch.from_tensor(pool))
    path = _write_csv(tmp_path / "ids.csv", "first,second,outcome\n0,23,1\n1,24,0\n")
    with pytest.raises(ValueError, match=r"ids\.csv line 3: second must be an item id >= 0 "
                                         r"and < 24"):
        load_preferences(path, items=items_path)


def test_mdp_model_pads_short_trajectories_and_rejects_long_ones(world, pool):
    model = PreferenceModel(world.reward_model, world.mdp)
    short = TrajectoryBatch.create(states=pool[:4, :4, 0], actions=pool[:4, :3, 1]).as_tensor()
    data = PairwiseComparisons(short[:2], short[2:], torch.tensor([1.0, 0.0]))
    prepared = model.prepare_data(data)
    assert prepared.items.shape == (4, 7, 2) and (prepared.items[:, 4:] == -1).all()
    # returns of the padded items equal those of the short ones
    returns = model.returns(world.true_weights, prepared.items)
    direct = world.reward_model.returns(world.true_weights.unsqueeze(-2), short[..., 0],
                                        short[..., :-1, 1])
    torch.testing.assert_close(returns, direct, atol=1e-12, rtol=0)
    long = TrajectoryBatch.create(states=torch.zeros(2, 9, dtype=torch.int64),
                                  actions=torch.zeros(2, 8, dtype=torch.int64),
                                  lengths=torch.tensor([2, 2])).as_tensor()  # T = 8 > 6
    with pytest.raises(ValueError, match="horizon is 6"):
        model.prepare_data(PairwiseComparisons(long, long, torch.tensor([1.0, 0.0])))
    with pytest.raises(ValueError, match="data must be Rankings"):
        PreferenceModel(world.reward_model, pool, likelihood="plackett_luce").prepare_data(
            PairwiseComparisons(torch.arange(2), torch.arange(2), torch.ones(2)))
    assert isinstance(Rankings(torch.zeros(1, 2)), Rankings)
