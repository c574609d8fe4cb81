"""``cryovis demo`` end to end on a small tomogram: every step runs, is scored against the
truth and lands in summary.json and the summary table; a second run needs --force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryoet_integration.commands.demo import print_summary
from cryoet_integration.demo import choose_template_class, run_demo
from cryoet_integration.errors import CryovisError
from formats import positions_voxels, read_particles, read_volume

STEPS = ("simulate", "segment", "membranes", "pick", "classify", "baselines", "render",
         "turntable")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    summary = run_demo(out, seed=5, size_xyz=(96, 96, 48), log=lines.append,
                       angular_step=60.0, max_oriented=6, turntable_frames=3)
    return out, summary, lines


def test_demo_scores_every_step_against_the_truth(demo):
    out, summary, lines = demo
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["segmentation"]["dice"] == summary["segmentation"]["dice"]
    assert 0 <= on_disk["segmentation"]["dice"] <= 1 and 0 <= on_disk["picking"]["F1"] <= 1
    assert set(STEPS) <= set(on_disk["seconds"]) and set(STEPS) <= set(on_disk["cpu_seconds"])
    assert len(lines) >= len(STEPS)
    base = on_disk["baselines"]
    assert 0 <= base["blob_picker"]["F1"] <= 1 and 0 <= base["threshold_membranes"]["dice"] <= 1
    cls = on_disk["classification"]
    assert sum(cls["called"].values()) == len(read_particles(out / "picks.csv"))
    assert len(read_particles(out / "classified.csv")) == len(read_particles(out / "picks.csv"))
    for key in ("view", "turntable", "picks_relion5", "classified_csv"):
        assert Path(on_disk["files"][key]).stat().st_size > 0, key


def test_demo_orients_exports_and_averages_one_class(demo):
    out, summary, _ = demo
    ori, avg = summary["orientation"], summary["average"]
    if "skipped" in ori:
        pytest.fail(f"seed 5 should give a templated class: {ori['skipped']}")
    assert 1 <= ori["n_picks"] <= 6 and ori["n_matched"] <= ori["n_picks"]
    # duplicates are gone before export and averaging: no two oriented picks within the
    # template's radius, and the count removed is what the matcher gave minus what is left
    assert ori["n_picks"] + ori["duplicates_removed"] <= 6
    assert avg["duplicates_removed"] == ori["duplicates_removed"]
    assert ori["n_matched"] + ori["n_other_class"] + ori["n_background"] <= ori["n_picks"]
    if ori["n_matched"]:
        assert 0 <= ori["median_deg"] <= 180
    relion = read_particles(summary["files"]["oriented_relion5"],
                            tomograms=summary["files"]["tomograms_star"])
    dynamo = read_particles(summary["files"]["oriented_dynamo"],
                            voxel_size=summary["voxel_size_angst"])
    assert len(relion) == len(dynamo) == ori["n_picks"]
    xyz = positions_voxels(dynamo)
    gaps = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)[np.triu_indices(len(xyz), 1)]
    assert (gaps > ori["min_distance_voxels"]).all()
    average = read_volume(summary["files"]["average"])
    assert average.data.shape == (avg["box"],) * 3
    assert -1 <= avg["correlation_with_truth"] <= 1 and avg["fsc0143_angst"] > 0
    assert (out / "subtomograms" / "particles.star").is_file()


def test_demo_summary_table_and_second_run(demo, capsys):
    out, summary, _ = demo
    print_summary(summary)
    err = capsys.readouterr().err
    for word in ("segment", "blob picker F1", "threshold baseline Dice", "turntable",
                 "files written", "total"):
        assert word in err
    with pytest.raises(CryovisError, match="--force"):
        run_demo(out, seed=5, size_xyz=(96, 96, 48), log=lambda s: None)


def test_the_oriented_class_is_the_one_called_most_confidently():
    classified = pd.DataFrame({
        "class": ["barrel"] * 5 + ["ribosome"] * 2 + ["random_shape"] * 9,
        "class_probability": [0.3] * 5 + [0.8, 0.6] + [0.9] * 9})
    templates = {"barrel": 1, "ribosome": 2}
    assert choose_template_class(classified, templates) == "ribosome"
    assert choose_template_class(classified, templates, min_probability=0.95) == "barrel"
    assert choose_template_class(classified[classified["class"] == "random_shape"],
                                 templates) is None
