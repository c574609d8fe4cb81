"""The engine program from ChimeraX: configuration, segmentation, cancelling, thresholds."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import one_line_user_error


def test_commands_and_help_pages(session, run, log):
    """ChimeraX's own ``help`` finds each command's page in the bundle and opens it.

    Without a GUI ``help`` hands the page to Python's ``webbrowser`` (the GUI's help viewer
    takes the same URL): a browser registered here records what it is given instead of
    starting one. ``help cryovis NAME`` gives the command's ``help:`` URL, which ``help``
    resolves to the page file in the installed bundle."""
    import re
    import webbrowser
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from chimerax.core.commands import cli

    opened: list[str] = []

    class Recorder(webbrowser.BaseBrowser):
        def open(self, url, new=0, autoraise=True):
            opened.append(url)
            return True

    webbrowser.register("cryovis-test", None, Recorder("cryovis-test"), preferred=True)
    for name in ("render", "segment", "pseudolabel", "membranes", "pick", "open", "save",
                 "threshold", "config", "jobs", "cancel"):
        url = cli.command_url(f"cryovis {name}")
        assert url and url.startswith("help:"), (name, url)
        log.clear()
        run(f"help cryovis {name}")
        assert opened[-1] == url
        run(f"help {url}")
        assert not log.errors(), log.errors()
        page = urlparse(opened[-1])
        assert page.scheme == "file", opened[-1]
        text = open(url2pathname(page.path), encoding="utf-8").read()
        title = re.search(r"<title>(.*?)</title>", text).group(1)
        assert re.search(rf"\bcryovis {name}\b", title), (name, title)


def test_chimerax_python_is_untouched():
    import importlib.util

    import numpy

    assert numpy.__version__ == "1.26.4"
    assert importlib.util.find_spec("torch") is None


def test_missing_engine_is_one_line(run, opened, monkeypatch, tmp_path):
    from chimerax.cryovis.settings import get_settings

    monkeypatch.setenv("PATH", "/nonexistent")
    get_settings(opened["tomo"].session).engine = ""
    msg = one_line_user_error(run, f"cryovis segment #{opened['tomo'].id_string}")
    assert "engine not found" in msg
    text_file = tmp_path / "cryovis"
    text_file.write_text("not a program\n")
    assert "not an executable" in one_line_user_error(run, f"cryovis config engine {text_file}")
    assert "not the cryovis program" in one_line_user_error(run, "cryovis config engine /bin/true")


def test_config_engine_is_kept(run, session, engine_program, log):
    from chimerax.cryovis.settings import get_settings

    run(f"cryovis config engine {engine_program}")
    assert get_settings(session).engine == engine_program
    run("cryovis config")
    assert engine_program in log.text()


def test_segment_adds_class_volumes(run, session, opened, engine_program, log):
    from chimerax.map import Volume

    run(f"cryovis config engine {engine_program}")
    tomo = opened["tomo"]
    before = set(session.models.list(type=Volume))
    run(f"cryovis segment #{tomo.id_string} threads 2 wait true")
    new = [v for v in session.models.list(type=Volume) if v not in before]
    assert len(new) >= 1, log.text()[-2000:]
    for v in new:
        assert tuple(v.data.size) == tuple(tomo.data.size)
        assert np.allclose(v.data.origin, tomo.data.origin)
        assert np.allclose(v.data.step, tomo.data.step)
        m = v.full_matrix()
        assert 0.0 <= m.min() and m.max() <= 1.0 and m.max() > 0.5
    assert tomo.cryovis_classes == new


def test_membranes_opens_instances_and_surfaces(run, session, opened, engine_program, log):
    from chimerax.core.models import Surface
    from chimerax.map import Volume

    run(f"cryovis config engine {engine_program}")
    membrane = opened["classes"][0]
    before = set(session.models.list())
    run(f"cryovis membranes #{membrane.id_string} threads 2 wait true")
    fitted = membrane.cryovis_membranes
    label_map, surfaces, table = fitted["instances"], fitted["surfaces"], fitted["table"]
    assert isinstance(label_map, Volume) and label_map not in before
    assert tuple(label_map.data.size) == tuple(membrane.data.size)
    assert np.allclose(label_map.data.origin, membrane.data.origin)
    assert len(table) == int(label_map.full_matrix().max()) >= 1, log.text()[-2000:]
    assert 1 <= len(surfaces) <= len(table)
    assert all(isinstance(s, Surface) and s not in before for s in surfaces)
    assert f"{len(table)} membrane(s)" in log.text()
    # each surface sits on its membrane: the engine's meshes moved by the grid's origin
    for surface, row in zip(surfaces, (r for r in table if r.get("mesh"))):
        xyz = surface.scene_position * surface.vertices
        centre = np.array([row[f"centroid_{a}_angst"] for a in "xyz"]) + membrane.data.origin
        assert np.linalg.norm(xyz.mean(axis=0) - centre) < 0.25 * np.ptp(xyz, axis=0).max()


def test_cancel_stops_the_engine(run, session, opened, engine_program, log):
    from chimerax.cryovis import engine
    from chimerax.map import Volume

    run(f"cryovis config engine {engine_program}")
    before = len(session.models.list(type=Volume))
    job_id = run(f"cryovis segment #{opened['tomo'].id_string} wait false")
    job = next(j for j in engine.jobs(session) if j.id == job_id)
    time.sleep(1.0)
    assert run("cryovis jobs") == [job_id]
    run(f"cryovis cancel {job_id}")
    job.wait()
    assert "cancelled" in log.text()
    assert len(session.models.list(type=Volume)) == before
    assert run("cryovis jobs") == []
    assert "no job" in one_line_user_error(run, "cryovis cancel")


def test_engine_failure_is_one_line(run, opened, engine_program, tmp_path, log):
    bad_model = tmp_path / "model.pt"
    bad_model.write_bytes(b"not a model")
    log.clear()
    run(f"cryovis segment #{opened['tomo'].id_string} model {bad_model} wait true")
    errors = log.errors()
    assert len(errors) == 1 and "\n" not in errors[0].strip(), errors
    assert "Traceback" not in log.text()


def test_threshold_matches_the_renderer(run, opened, log):
    from cryoet_integration.rendering.transfer import estimate_threshold

    classes = opened["classes"]
    values = run("cryovis threshold #" + ",".join(v.id_string for v in classes))
    want = [estimate_threshold(v.full_matrix()).value for v in classes]
    assert values == pytest.approx(want)
    assert "ramp limit" in log.text()
    assert "not a volume" not in log.text()
    assert "not probabilities" in one_line_user_error(
        run, f"cryovis threshold #{opened['tomo'].id_string}")
