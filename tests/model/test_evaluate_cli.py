"""`difflsrec evaluate`: the artifact's own split, and clear refusals when the options do not give it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from difflsrec import cli


def invoke(*args: str):
    if not cli.app.registered_commands:
        cli._mount()  # the subcommands, as `main` adds them
    result = CliRunner().invoke(cli.app, ["--threads", "1", *args])
    result.text = " ".join(result.output.replace("│", " ").split())  # the message without rich's box and wrapping
    return result


@pytest.fixture(scope="module")
def trained(ml100k_file, tmp_path_factory):
    """GRU4Rec trained one epoch on 60 ml-100k users drawn with --subset-seed 0 while training with --seed 1."""
    import os

    home = tmp_path_factory.mktemp("home")
    old, os.environ["DIFFLSREC_HOME"] = os.environ.get("DIFFLSREC_HOME"), str(home)
    out = tmp_path_factory.mktemp("art") / "gru"
    try:
        result = invoke("train", "--input", str(ml100k_file), "--model", "gru4rec", "--users", "60", "--seed", "1", "--subset-seed", "0",
                        "--epochs", "1", "--out", str(out))
        assert result.exit_code == 0, result.output
        yield ml100k_file, out
    finally:
        if old is None:
            os.environ.pop("DIFFLSREC_HOME")
        else:
            os.environ["DIFFLSREC_HOME"] = old


def test_evaluate_rebuilds_the_split_with_the_subset_seed_and_says_what_it_scored(trained):
    data, art = trained
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["data_options"]["users"] == 60 and manifest["data_options"]["seed"] == 0  # recorded with the artifact
    result = invoke("evaluate", "--artifact", str(art), "--input", str(data), "--users", "60", "--seed", "1", "--subset-seed", "0")
    assert result.exit_code == 0, result.output
    assert "gru4rec on 60 test examples (full ranking)" in result.output and "NDCG@10" in result.output
    valid = invoke("evaluate", "--artifact", str(art), "--input", str(data), "--users", "60", "--subset-seed", "0", "--on", "valid")
    assert valid.exit_code == 0 and "60 valid examples" in valid.output


def test_a_mismatch_names_the_options_that_differ(trained):
    data, art = trained
    wrong_seed = invoke("evaluate", "--artifact", str(art), "--input", str(data), "--users", "60", "--seed", "1")
    assert wrong_seed.exit_code == 2
    assert "it was prepared with seed 0 (given 1)" in wrong_seed.text, wrong_seed.output
    two = invoke("evaluate", "--artifact", str(art), "--input", str(data), "--kcore", "3")
    assert "kcore 5 (given 3), users 60 (given None)" in two.text, two.output


def test_mistyped_split_names_and_cutoffs_are_refused(trained):
    data, art = trained
    typo = invoke("evaluate", "--artifact", str(art), "--input", str(data), "--users", "60", "--subset-seed", "0", "--on", "tset")
    assert typo.exit_code == 2 and "evaluate on test or valid, not 'tset'" in typo.text
    zero = invoke("evaluate", "--artifact", str(art), "--input", str(data), "--users", "60", "--subset-seed", "0", "--k", "0")
    assert zero.exit_code == 2 and "cut-offs are positive" in zero.text


def test_the_same_ratings_gzipped_or_moved_are_the_same_dataset_other_ratings_are_not(trained, tmp_path):
    """The dataset's cache key covers the input's bytes, so a gzipped copy of the training file gave another
    key and evaluate refused it; artifacts now also record the prepared data's own hash (sequences + split)."""
    import gzip

    data, art = trained
    assert json.loads((art / "manifest.json").read_text())["data_content"]
    args = ("--users", "60", "--seed", "1", "--subset-seed", "0")
    plain = invoke("evaluate", "--artifact", str(art), "--input", str(data), *args)
    packed = tmp_path / "elsewhere" / (data.name + ".gz")
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(data.read_bytes()))
    zipped = invoke("evaluate", "--artifact", str(art), "--input", str(packed), *args)
    assert plain.exit_code == 0 and zipped.exit_code == 0, zipped.output
    metrics = [line for line in plain.output.splitlines() if "CI" in line]
    assert metrics and metrics == [line for line in zipped.output.splitlines() if "CI" in line]  # the same numbers

    lines = data.read_text().splitlines()
    later = tmp_path / "later.data"  # every rating one second later: other times, another dataset
    later.write_text("".join("\t".join([*line.split("\t")[:3], str(int(line.split("\t")[3]) + 1)]) + "\n" for line in lines))
    refused = invoke("evaluate", "--artifact", str(art), "--input", str(later), *args)
    assert refused.exit_code == 2 and "artifact was trained on dataset" in refused.text, refused.output
