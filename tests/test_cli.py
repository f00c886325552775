"""The bayes-irl command: fit writes InferenceData + plots, never overwrites silently."""

import arviz as az
import numpy as np

from bayes_irl.app.cli import OUTPUT_FILES, main


def test_simulate_then_fit_user_files(tmp_path, capsys):
    mdp, demos = tmp_path / "mdp.npz", tmp_path / "demos.npz"
    assert (
        main(
            [
                "simulate",
                "--grid-size",
                "3",
                "--horizon",
                "4",
                "--num-demos",
                "30",
                "--out-mdp",
                str(mdp),
                "--out-demos",
                str(demos),
            ]
        )
        == 0
    )
    out = tmp_path / "run"
    code = main(
        [
            "fit",
            "--mdp",
            str(mdp),
            "--demos",
            str(demos),
            "--method",
            "svi",
            "--num-steps",
            "300",
            "--num-samples",
            "100",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "weights[feature_0]" in printed and "true" in printed
    for name in OUTPUT_FILES:
        assert (out / name).stat().st_size > 0
    idata = az.from_netcdf(str(out / "posterior.nc"))
    assert idata.posterior["weights"].shape == (1, 100, 4)
    assert "log_likelihood" in idata.groups()


def test_fit_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "posterior.nc").write_bytes(b"precious")
    code = main(
        [
            "fit",
            "--grid-size",
            "3",
            "--method",
            "svi",
            "--num-steps",
            "10",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "posterior.nc").read_bytes() == b"precious"


def test_fit_nuts_on_gridworld_with_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "posterior.nc").write_bytes(b"old")
    code = main(
        [
            "fit",
            "--grid-size",
            "3",
            "--horizon",
            "4",
            "--num-demos",
            "30",
            "--num-samples",
            "30",
            "--warmup",
            "30",
            "--out",
            str(out),
            "--overwrite",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "r_hat" in capsys.readouterr().out
    idata = az.from_netcdf(str(out / "posterior.nc"))
    assert idata.posterior["weights"].shape == (2, 30, 4)
    assert np.isfinite(idata.log_likelihood["demonstrations"].values).all()


def test_bad_input_gives_named_error(tmp_path, capsys):
    code = main(
        [
            "fit",
            "--mdp",
            str(tmp_path / "missing.npz"),
            "--demos",
            str(tmp_path / "d.npz"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["fit", "--grid-size", "1", "--out", str(tmp_path / "o2")]) == 2
    assert "size must be an int >= 2" in capsys.readouterr().err
