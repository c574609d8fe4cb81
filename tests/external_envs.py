"""Cached foreign Pythons for the integration tests: real Scipion 3 and real ChimeraX 1.7.1.

The Scipion-plugin and ChimeraX-bundle suites stand on these::

    from external_envs import chimerax_env, install_project, scipion_env
    env = scipion_env()          # creates it the first time (minutes), then reuses it
    install_project(env)         # this checkout's wheel, `pip install WHEEL` as a user types it

The environments are built by the project's own set-up scripts,
``scripts/hosts/scipion/setup.sh VENV`` and ``scripts/hosts/chimerax/setup.sh VENV`` (see
``scripts/hosts/README.md``); nothing outside the repository is read. They live outside the
clone, in ``$CRYOVIS_ENV_CACHE`` (default ``~/.cache/cryovis/envs``), as ``scipion-<key>``
and ``chimerax-<key>``: ``key`` hashes what defines the env (every file of its set-up folder
and the Python version), so a change to any of them builds a fresh env next to the old one.
Creation holds a lock and writes a completion marker last; a directory without the marker is
the remains of an interrupted build and is rebuilt from scratch. (Venvs hard-code their own
path in their scripts, so "build in a temp dir, then rename" would leave a broken env.)
Each build also records the env's package versions as built (``pristine_versions``); an env
whose packages have since moved (``drifted``) is rebuilt on next use.

API:

- ``scipion_env()``, ``chimerax_env()``: the cached env (built on first use); ``*_env_path()``
  says where it is without building it.
- ``install_project(env)``: the base package (no extras) of this checkout, installed with
  the plain ``pip install WHEEL`` - no constraints file, so pip resolves the declared base
  dependencies against what the env holds, as it does for a user. A stamp of the sources'
  digest makes a repeat call a no-op until the sources change.
- ``fresh_copy(env, dest)``: a private copy of the env as built, for tests that change it
  (the plain-install test) without touching the shared cached env others use.
- ``env_python(env)``, ``installed_versions(env)``, ``pip_check(env)``;
  ``pristine_record(env)``: versions and ``pip check`` output as the build left them. (The
  headless ChimeraX is not ``pip check`` clean as built: its bundle stubs require the GUI
  bundles the wheel lacks, and its imagecodecs is not the wheel's pin; see
  ``scripts/hosts/README.md``. Scipion is.)
- ``scipion_environ(home, env)``: the variables every Scipion run needs (and its
  ``config/hosts.conf`` under ``home``).
- ``chimerax_command(env)``: the command prefix of a headless ChimeraX session (append
  ``--cmd ...`` or ``--script "FILE ARGS"``). ``CHIMERAX_RUN_PYTEST`` is a ``--script`` that
  runs a pytest suite inside one session (the session on ``builtins._chimerax_test_session``).
- ``relion_program(name)``: a RELION 3.1 program (``relion_reconstruct``), installing
  Debian's ``relion`` package with apt-get when it is missing (root or sudo).
- ``ExternalEnvError``: an env could not be created or could not take a package.

Build them ahead of a test run with ``.venv/bin/python tests/external_envs.py [scipion]
[chimerax] [relion]``. Environment variables: ``CRYOVIS_ENV_CACHE`` (cache root),
``CRYOVIS_EXTERNAL_PYTHON`` (the interpreter the envs are made from; default ``python3.11``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]
HOSTS = REPO / "scripts" / "hosts"
SCIPION_KIT = HOSTS / "scipion"
CHIMERAX_KIT = HOSTS / "chimerax"
CHIMERAX_RUN_PYTEST = Path(__file__).resolve().parent / "external" / "chimerax_pytest.py"
PROJECT = "cryoet-integration"

COMPLETE_MARKER = ".cryovis-env-complete"
PRISTINE_RECORD = ".cryovis-env-pristine.json"
PROJECT_STAMP = ".cryovis-project-digest"


class ExternalEnvError(RuntimeError):
    """A foreign environment could not be created or could not take our package."""


def cache_root() -> Path:
    """Where the cached environments live (``$CRYOVIS_ENV_CACHE`` or ``~/.cache/cryovis/envs``)."""
    return Path(os.environ.get("CRYOVIS_ENV_CACHE", Path.home() / ".cache" / "cryovis" / "envs"))


@functools.cache
def base_python() -> Path:
    """The real interpreter (not a pyenv shim) the foreign envs are created from."""
    name = os.environ.get("CRYOVIS_EXTERNAL_PYTHON", "python3.11")
    exe = shutil.which(name)
    if exe is None:
        raise ExternalEnvError(f"{name}: not found on PATH (set CRYOVIS_EXTERNAL_PYTHON)")
    out = subprocess.run([exe, "-c", "import sys; print(sys.executable)"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@functools.cache
def _python_version() -> str:
    out = subprocess.run([str(base_python()), "-c", "import sys; print(sys.version.split()[0])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def env_key(*parts: bytes) -> str:
    """Short hash (12 hex digits) of everything that defines an environment."""
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:12]


def kit_content(kit: Path) -> bytes:
    """Every file of a set-up folder, names and bytes: a change to any one changes the env."""
    if not (kit / "setup.sh").is_file():
        raise ExternalEnvError(f"{kit / 'setup.sh'}: missing (is this a complete checkout?)")
    return b"".join(p.relative_to(kit).as_posix().encode() + b"\0" + p.read_bytes() + b"\0"
                    for p in sorted(kit.rglob("*"))
                    if p.is_file() and "__pycache__" not in p.parts)


def scipion_env_path() -> Path:
    """Where the Scipion env for the current set-up scripts lives (created or not)."""
    return cache_root() / f"scipion-{env_key(kit_content(SCIPION_KIT), _python_version().encode())}"


def chimerax_env_path() -> Path:
    """Where the ChimeraX env for the current set-up scripts lives (created or not)."""
    key = env_key(kit_content(CHIMERAX_KIT), _python_version().encode())
    return cache_root() / f"chimerax-{key}"


def env_python(env: Path) -> Path:
    """The interpreter of a cached environment."""
    return env / "bin" / "python"


def env_pip(env: Path) -> list[str]:
    """The command prefix of the env's pip, isolated from the caller's working directory.

    ``-I`` keeps the current directory off ``sys.path``: run from a checkout, whose editable
    install leaves ``cryoet_integration.egg-info`` at its root, pip and ``importlib.metadata``
    would otherwise count that folder as an installed ``cryoet-integration`` of the env.
    """
    return [str(env_python(env)), "-I", "-m", "pip"]


@contextlib.contextmanager
def env_lock(env: Path) -> Iterator[None]:
    """Exclusive lock on one environment (its creation, or installing into it)."""
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f"{env.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


NETWORK_HINT = ("; it needs the package index (a fresh machine without network access cannot"
                " build the foreign envs)")


def _run(cmd: Sequence[str], what: str, env: dict | None = None, hint: str = "",
         cwd: Path | None = None) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise ExternalEnvError(f"{what} failed (exit {proc.returncode}){hint}.\n"
                               f"Command: {' '.join(map(str, cmd))}\n{tail}")
    return proc.stdout


def drifted(env: Path) -> dict[str, tuple[str, str | None]]:
    """``{package: (as built, now)}`` for the packages of ``env`` moved since its build."""
    pristine = pristine_versions(env)
    now = installed_versions(env)
    return {n: (v, now.get(n)) for n, v in pristine.items() if now.get(n) != v}


def _usable(env: Path) -> bool:
    # An install into the shared env with a different checkout's dependency ranges can move a
    # package the build put there (it once downgraded ChimeraX's pandas): such an env no longer
    # is what its set-up scripts make, so it is rebuilt rather than trusted.
    return ((env / COMPLETE_MARKER).is_file() and (env / PRISTINE_RECORD).is_file()
            and not drifted(env))


def _ensure(env: Path, build: Callable[[Path], None]) -> Path:
    if _usable(env):
        return env
    with env_lock(env):
        if _usable(env):
            return env
        if env.exists():
            shutil.rmtree(env)  # interrupted, drifted or older: never trust half an env
        build(env)
        (env / COMPLETE_MARKER).write_text(json.dumps({"python": _python_version()}) + "\n")
    return env


def _kit_builder(kit: Path, what: str) -> Callable[[Path], None]:
    def build(env: Path) -> None:
        # Built away from the checkout, for the reason of ``env_pip``.
        _run(["bash", kit / "setup.sh", env], f"{what} set-up into {env}",
             env=dict(os.environ, PYTHON=str(base_python())), hint=NETWORK_HINT,
             cwd=env.parent)
        record = {"versions": installed_versions(env), "pip_check": pip_check(env)}
        (env / PRISTINE_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return build


@functools.cache
def scipion_env() -> Path:
    """A venv with real Scipion 3 (pyworkflow, pwem, tomo) and pytest; created on first use."""
    return _ensure(scipion_env_path(), _kit_builder(SCIPION_KIT, "Scipion 3"))


@functools.cache
def chimerax_env() -> Path:
    """A venv with headless ChimeraX 1.7.1 (``scripts/hosts/chimerax/setup.sh``)."""
    return _ensure(chimerax_env_path(), _kit_builder(CHIMERAX_KIT, "ChimeraX 1.7.1"))


def installed_versions(env: Path) -> dict[str, str]:
    """``{distribution name (normalised): version}`` of everything installed in ``env``."""
    code = ("import json, re\nfrom importlib import metadata\n"
            "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
            " for d in metadata.distributions() if d.metadata['Name']}))")
    # -I: the caller's working directory is not the env (see ``env_pip``).
    return json.loads(_run([env_python(env), "-I", "-c", code], f"reading versions in {env}"))


def pristine_record(env: Path) -> dict:
    """The env as its build left it: ``{"versions": installed_versions, "pip_check": ...}``."""
    record = env / PRISTINE_RECORD
    if not record.is_file():
        raise ExternalEnvError(f"{record}: missing (an env built by older code: delete {env})")
    return json.loads(record.read_text())


def pristine_versions(env: Path) -> dict[str, str]:
    """The env's ``installed_versions`` as its build left it."""
    return pristine_record(env)["versions"]


def fresh_copy(env: Path, dest: Path) -> Path:
    """Copy ``env`` to ``dest`` and take out everything installed after its build.

    The copy is a working venv for ``python -m pip`` and ``python -m ...`` (its interpreter
    link and ``pyvenv.cfg`` do not name the env's folder); only console scripts in ``bin/``
    keep the old path in their first line (pip writes new ones for what it installs).
    Raises ``ExternalEnvError`` when a package the build installed has since changed
    version: the cached env itself is then no longer as built.
    """
    pristine = pristine_versions(env)
    with env_lock(env):
        # A real copy, not hard links: nothing done in the copy may reach the shared env.
        _run(["cp", "-a", env, dest], f"copying {env} to {dest}")
    moved = drifted(dest)
    if moved:
        raise ExternalEnvError(f"{env}: packages changed since its build {moved}; delete it"
                               " and it is rebuilt on next use")
    now = installed_versions(dest)
    added = sorted(set(now) - set(pristine))
    if added:
        _run([*env_pip(dest), "uninstall", "-q", "-y", *added],
             f"removing {added} from the copy {dest}")
    (dest / PROJECT_STAMP).unlink(missing_ok=True)
    return dest


PACKAGE_FILES = ("pyproject.toml", "README.md")
PACKAGE_DIRS = ("cryoet_integration", "formats")


@functools.cache
def project_snapshot() -> tuple[Path, str]:
    """A copy of the files the package is built from, and a digest of them (once per process).

    Copying keeps setuptools' ``build/`` and ``*.egg-info`` out of the work tree, and pins
    what is built and stamped to one moment while others edit the tree.
    """
    tmp = Path(tempfile.mkdtemp(prefix="cryovis-wheel-"))
    atexit.register(shutil.rmtree, tmp, True)
    src = tmp / "src"
    src.mkdir()
    for name in PACKAGE_FILES:
        shutil.copy2(REPO / name, src / name)
    for pkg in PACKAGE_DIRS:
        shutil.copytree(REPO / pkg, src / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    digest = hashlib.sha256()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        digest.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes())
    return src, digest.hexdigest()


@functools.cache
def project_wheel() -> Path:
    """A wheel of this checkout's snapshot, built once per process into a temporary folder."""
    src, _ = project_snapshot()
    dist = src.parent / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", dist, src], "building the project wheel")
    wheels = sorted(dist.glob("*.whl"))
    if len(wheels) != 1:
        raise ExternalEnvError(f"{dist}: expected one wheel, found {len(wheels)}")
    return wheels[0]


def _installed_digest(env: Path) -> str | None:
    stamp = env / PROJECT_STAMP
    dist_info = list(env.glob("lib/python*/site-packages/cryoet_integration-*.dist-info"))
    return stamp.read_text().strip() if stamp.is_file() and dist_info else None


def install_project(env: Path, force: bool = False) -> None:
    """Install this checkout's base package into ``env`` with ``pip install WHEEL``.

    Exactly what a user types (no constraints file, no ``--no-deps``): pip installs the
    declared base dependencies that the env lacks and, should a declared range exclude what
    the env holds, moves it - which the tests of ``tests/test_external_pythons.py`` catch.
    An earlier copy of the project is uninstalled first, so a rebuilt wheel of the same
    version replaces it. Nothing is done when the env already holds a copy of exactly these
    sources (a stamp in the env records their digest), unless ``force``.
    Raises ``ExternalEnvError``.
    """
    _, digest = project_snapshot()
    with env_lock(env):
        if not force and _installed_digest(env) == digest:
            return
        (env / PROJECT_STAMP).unlink(missing_ok=True)
        wheel = project_wheel()
        if PROJECT in installed_versions(env):
            _run([*env_pip(env), "uninstall", "-q", "-y", PROJECT],
                 f"removing the earlier {PROJECT} from {env}")
        _run([*env_pip(env), "install", "-q", wheel],
             f"pip install {wheel.name} into {env}", hint=NETWORK_HINT)
        (env / PROJECT_STAMP).write_text(digest + "\n")


def pip_check(env: Path) -> str:
    """``pip check`` output for ``env`` (empty string when it finds no problem)."""
    proc = subprocess.run([*env_pip(env), "check"], capture_output=True, text=True)
    return "" if proc.returncode == 0 else (proc.stdout + proc.stderr).strip()


SCIPION_HOSTS_CONF = ("[localhost]\n"
                      "PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node %_(COMMAND)s\n")


def scipion_environ(home: Path, env: Path) -> dict[str, str]:
    """``os.environ`` plus what every headless Scipion run in ``env`` needs, rooted at ``home``.

    ``home`` gets ``config/hosts.conf`` (localhost) and the projects (``ScipionUserData``).
    ``SCIPION_DOMAIN=pwem`` (without it pyworkflow has no mapper dictionary),
    ``SCIPION_PYTHON`` (protocols run as subprocesses of that interpreter),
    ``SCIPION_TEST_NOSYNC`` (no test-data download), ``SCIPION_NOTIFY=False``.
    """
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "hosts.conf").write_text(SCIPION_HOSTS_CONF)
    return dict(os.environ, SCIPION_HOME=str(home),
                SCIPION_USER_DATA=str(home / "ScipionUserData"), SCIPION_DOMAIN="pwem",
                SCIPION_PYTHON=str(env_python(env)), SCIPION_TEST_NOSYNC="1",
                SCIPION_NOTIFY="False")


def chimerax_command(env: Path) -> list[str]:
    """``[python, -m, chimerax.core, --nogui, --offscreen, --exit]`` for ``env``.

    A failing command or an exception in a ``--script`` exits with status 70. Start-up costs
    about 5 s: run a whole suite in one session (``--script`` of ``CHIMERAX_RUN_PYTEST``).
    """
    return [str(env_python(env)), "-m", "chimerax.core", "--nogui", "--offscreen", "--exit"]



# RELION 3.1 (Debian's `relion` package) for the subtomogram tests: a system package, so the
# "cache" is the installed package itself; a second run finds it on PATH at once.
RELION_APT_PACKAGE = "relion"
RELION_PROGRAMS = ("relion_reconstruct",)


def relion_program(name: str = "relion_reconstruct") -> Path:
    """The path of a RELION 3.1 program, installing Debian's ``relion`` when it is missing.

    Installing needs root (or password-less sudo) and the Debian archive: ``apt-get update``
    then ``apt-get install -y --no-install-recommends relion``, under a lock so parallel test
    runs install once. Raises ExternalEnvError (never skips) when it cannot be installed.
    """
    found = shutil.which(name)
    if found is None:
        with env_lock(cache_root() / "relion-apt"):
            found = shutil.which(name) or _install_relion(name)
    return Path(found)


def _install_relion(name: str) -> str:
    if shutil.which("apt-get") is None:
        raise ExternalEnvError(f"{name}: not on PATH, and without apt-get RELION 3.1 cannot be "
                               f"installed (install Debian's '{RELION_APT_PACKAGE}' package)")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise ExternalEnvError(f"{name}: not on PATH; installing '{RELION_APT_PACKAGE}' "
                                   "with apt-get needs root or sudo")
        prefix = ["sudo", "-n"]
    environ = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    hint = "; it needs the Debian archive (apt-get update must reach it)"
    _run(prefix + ["apt-get", "update"], "apt-get update", env=environ, hint=hint)
    _run(prefix + ["apt-get", "install", "-y", "--no-install-recommends", RELION_APT_PACKAGE],
         f"apt-get install {RELION_APT_PACKAGE}", env=environ, hint=hint)
    found = shutil.which(name)
    if found is None:
        raise ExternalEnvError(f"{name}: still not on PATH after installing "
                               f"'{RELION_APT_PACKAGE}'")
    return found


if __name__ == "__main__":
    # `python tests/external_envs.py [scipion|chimerax ...]`: create (or find) the envs.
    for which in sys.argv[1:] or ["scipion", "chimerax"]:
        path = {"scipion": scipion_env, "chimerax": chimerax_env,
                "relion": relion_program}[which]()
        print(f"{which}: {path}")
