"""Running the ``cryovis`` engine from a protocol step: one call, its record, its failure.

Each call leaves its JSON result, ``<tag>.json``, in the protocol's extra folder: the engine
writes it (``--json FILE``, atomically, after every other output) only once the call has
succeeded, so a resumed run finds it and does not redo that tomogram, while an interrupted
call leaves none and is redone. stdout is never parsed: the engine keeps it for people.
Every call passes ``--force`` because the extra folder holds only this protocol's own files
(the engine writes atomically, so what an interrupted call left behind are complete files,
safe to replace).
"""

import json
import os
import shlex
import sys

from .. import Plugin


class EngineError(RuntimeError):
    """The engine failed on one item; the message is its one-line reason."""


def quote(args):
    """One shell-safe argument string (runJob runs its command through the shell)."""
    return " ".join(shlex.quote(str(a)) for a in args)


def engineRecord(protocol, tag):
    """The JSON result of a finished call ``tag``, or None when it has not finished."""
    path = protocol._getExtraPath(f"{tag}.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def runEngine(protocol, tag, args):
    """Run ``cryovis ARGS`` for item ``tag`` unless it already finished; returns its result.

    The engine writes its result to ``<tag>.json`` (``--json FILE``). stdout and stderr go to
    ``<tag>.out``/``<tag>.err`` in the extra folder and are copied to the run log afterwards;
    on a non-zero exit raises EngineError with the engine's last stderr line (its one-line
    reason), which Scipion shows as the step's error.
    """
    done = engineRecord(protocol, tag)
    if done is not None:
        print(f"cryovis {tag}: already done in an earlier run", flush=True)
        return done
    program = Plugin.getProgram()
    if program is None:
        raise EngineError(Plugin.programProblem())
    record = protocol._getExtraPath(f"{tag}.json")
    out, err = protocol._getExtraPath(f"{tag}.out"), protocol._getExtraPath(f"{tag}.err")
    redirect = f" > {shlex.quote(out)} 2> {shlex.quote(err)}"
    failure = None
    try:
        command = quote([*args, "--json", os.path.abspath(record), "--force"])
        protocol.runJob(program, command + redirect,
                        env=Plugin.getEnviron(), numberOfMpi=1, numberOfThreads=1)
    except Exception as exc:  # noqa: BLE001 - runJob raises a bare Exception on exit != 0
        failure = exc
    finally:
        for path, stream in ((out, sys.stdout), (err, sys.stderr)):
            if os.path.exists(path):
                with open(path) as fh:
                    stream.write(fh.read())
                stream.flush()
    if failure is not None:
        lines = [ln.strip() for ln in _read(err).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"{failure}"
        raise EngineError(f"{tag}: {reason}") from None
    result = engineRecord(protocol, tag)
    if result is None:
        raise EngineError(f"{tag}: cryovis exited 0 but wrote no result to {record}")
    return result


def _read(path):
    if not os.path.exists(path):
        return ""
    with open(path) as fh:
        return fh.read()
