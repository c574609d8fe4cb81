"""The bad-input corpus through the real CLI: one error line naming the file, no output.

Every file in ``tests/data/bad_inputs/`` is run through ``cryovis info FILE`` and
``cryovis convert FILE OUT --to csv`` (and ``--to mrc`` for volume files). Each must exit
non-zero with exactly one stderr line that names the file, never a traceback or an
"internal error" (an unhandled exception type in a reader), and leave nothing behind in the
output folder. To keep within the test budget on a 2-core machine, all invocations run in ONE
child Python that calls ``cryoet_integration.cli.main`` once per file with its own stderr
(an uncaught exception there is reported as a traceback); a sample of files also runs through
a separate ``python -m cryoet_integration.cli`` process each, the exact user path.
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cli_batch import run_batch, run_one

import formats

CORPUS = Path(__file__).parent / "data" / "bad_inputs"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix != ".py")
VOLUME_SUFFIXES = formats.VOLUME_SUFFIXES
HAS_CONVERT = importlib.util.find_spec("cryoet_integration.commands.convert") is not None


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _jobs(out_root: Path) -> list[tuple[str, Path, list[str], Path]]:
    jobs = []
    for index, path in enumerate(FILES):
        out_dir = out_root / f"{index:03d}"
        out_dir.mkdir()
        jobs.append(("info", path, ["info", str(path)], out_dir))
        if HAS_CONVERT:
            out = out_dir / "out.csv"
            jobs.append(("convert-csv", path,
                         ["convert", str(path), str(out), "--to", "csv"], out_dir))
            if path.suffix.lower() in VOLUME_SUFFIXES:
                out = out_dir / "out.mrc"
                jobs.append(("convert-mrc", path,
                             ["convert", str(path), str(out), "--to", "mrc"], out_dir))
    return jobs


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every (file, command) run once, all in one child interpreter."""
    jobs = _jobs(tmp_path_factory.mktemp("bad_out"))
    runs = run_batch([job[2] for job in jobs])
    return {(job[0], job[1].name): (run, job[3]) for job, run in zip(jobs, runs)}


def _sample() -> list[Path]:
    """A few files of different kinds that also run as their own ``cryovis`` process."""
    names = ["mrc_truncated_data.mrc", "star_misspelt_columns.star", "json_invalid.json",
             "unknown_extension.xyz"]
    return [CORPUS / n for n in names]


def test_corpus_is_large_and_regenerates_identically(tmp_path):
    assert len(FILES) >= 30
    fresh = _load_generator().write_corpus(tmp_path)
    assert sorted(p.name for p in fresh) == [p.name for p in FILES]
    for path in fresh:
        assert path.read_bytes() == (CORPUS / path.name).read_bytes(), path.name


CASES = [(path, command) for path in FILES
         for command in ("info", "convert-csv", "convert-mrc")
         if command != "convert-mrc" or path.suffix.lower() in VOLUME_SUFFIXES]


@pytest.mark.parametrize("path, command", CASES, ids=lambda v: getattr(v, "name", v))
def test_bad_file_gives_one_line_and_writes_nothing(results, path, command):
    if command != "info" and not HAS_CONVERT:
        pytest.skip("cryovis convert is not there yet")
    run, out_dir = results[(command, path.name)]
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0, run.stdout
    assert len(lines) == 1, run.stderr
    assert path.name in lines[0], lines[0]
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, lines[0]
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("path", _sample(), ids=lambda p: p.name)
def test_bad_file_in_its_own_process(tmp_path, path):
    arg_lists = [["info", str(path)]]
    if HAS_CONVERT:
        arg_lists.append(["convert", str(path), str(tmp_path / "out.csv"), "--to", "csv"])
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(run_one, arg_lists))
    for run in runs:
        lines = run.stderr.strip().splitlines()
        assert run.returncode != 0 and len(lines) == 1, run.stderr
        assert path.name in lines[0] and "internal error" not in lines[0]
    assert list(tmp_path.iterdir()) == []
