"""`python train.py ARGS` for tests, run in this process: ~0.5 s instead of ~10 s of importing torch,
Lightning and Hydra again in a subprocess.

`run_train` executes train.py's `__main__` block with `runpy` under the run's argv, environment and working
directory, captures stdout and stderr at the file-descriptor level (Python, logging and C output alike), and
turns `SystemExit` into the exit status, so a test asserts what a user of the command line sees: the exit
status, the one line `error: ...`, no traceback (Hydra prints an unexpected exception itself and exits 1).
Afterwards it undoes what the run changed in this process: the environment (bertlab's set_environment
does os.environ.setdefault), logging (Hydra's job logging replaces the root handlers), Hydra's global
state, the working directory, RNG states, and the constants huggingface_hub and datasets read from the
environment when imported.

BERTLAB_TEST_SUBPROCESS=1 runs every call as a real `python train.py` subprocess instead, to check the
command line itself (imports, argv handling, logging set up in a fresh process) on demand:
    BERTLAB_TEST_SUBPROCESS=1 pytest tests/test_bad_input_cli.py
Warnings differ by design: in-process they go to pytest's warnings summary, not to the captured stderr.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import random
import runpy
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS = os.environ.get("BERTLAB_TEST_SUBPROCESS") == "1"
OFFLINE = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# modules that read the environment into constants when imported: re-read under the run's environment
ENV_CONSTANTS = ("huggingface_hub.constants", "datasets.config")
# Lightning's loggers as a fresh `python train.py` sets them up (root has no handlers when it is imported):
# their own stderr handler, not propagating to Hydra's root handlers
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


@dataclass(frozen=True)
class CompletedRun:
    """What `python train.py ARGS` left: its exit status and everything it wrote to stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


def offline_env(**extra: str) -> dict[str, str]:
    """This process's environment, offline (W&B, hub, datasets) and without HYDRA_FULL_ERROR, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return env | OFFLINE | extra


def run_train(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> CompletedRun:
    """`python train.py *args` with cwd=REPO and environment `env` (the whole environment, as subprocess's
    env=; None: this process's). In this process unless BERTLAB_TEST_SUBPROCESS=1; `timeout` (seconds)
    applies to the subprocess only."""
    if SUBPROCESS:
        proc = subprocess.run(
            [sys.executable, "train.py", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CompletedRun(proc.returncode, proc.stdout, proc.stderr)
    with _captured() as (out, err), _isolated(dict(os.environ) if env is None else env):
        code = _run_main(args)
    return CompletedRun(code, out.getvalue(), err.getvalue())


def _run_main(args: list[str]) -> int:
    """Run train.py as `__main__` with argv `args`; its exit status as the interpreter would report it."""
    saved_argv = sys.argv
    sys.argv = ["train.py", *args]
    try:
        runpy.run_path(str(REPO / "train.py"), run_name="__main__")
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)  # sys.exit("message"): the interpreter prints it, status 1
        return 1
    except BaseException:  # an uncaught exception: the interpreter's traceback, status 1
        import traceback

        traceback.print_exc()
        return 1
    finally:
        sys.argv = saved_argv
    return 0


@contextlib.contextmanager
def _captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """stdout and stderr of the block, at the file-descriptor level; the two StringIOs hold them after it.
    Stream handlers bound to this process's sys.stdout/sys.stderr (Lightning's, set up at import) write
    into the capture meanwhile, as they would to a fresh process's streams."""
    results = io.StringIO(), io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        saved_fds = os.dup(1), os.dup(2)
        saved_streams = sys.stdout, sys.stderr
        os.dup2(out_file.fileno(), 1)
        os.dup2(err_file.fileno(), 2)
        out = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
        err = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
        rebound = _rebind_stream_handlers({id(saved_streams[0]): out, id(saved_streams[1]): err})
        sys.stdout, sys.stderr = out, err
        try:
            yield results
        finally:
            out.flush()
            err.flush()
            sys.stdout, sys.stderr = saved_streams
            for handler, stream in rebound:
                handler.setStream(stream)
            for fd, saved in zip((1, 2), saved_fds):
                os.dup2(saved, fd)
                os.close(saved)
            for file, result in zip((out_file, err_file), results):
                file.seek(0)
                result.write(file.read().decode("utf-8", errors="backslashreplace"))


def _rebind_stream_handlers(streams: dict[int, io.TextIOBase]) -> list[tuple[logging.StreamHandler, object]]:
    """Point every logging StreamHandler writing to a stream in `streams` (by id) at its replacement;
    (handler, old stream) pairs to undo it."""
    rebound = []
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if type(handler) is logging.StreamHandler and id(handler.stream) in streams:
                rebound.append((handler, handler.setStream(streams[id(handler.stream)])))
    return rebound


@contextlib.contextmanager
def _isolated(env: dict[str, str]) -> Iterator[None]:
    """The block runs with environment `env`, in REPO, with the logging, Hydra, RNG and env-derived
    constants of a fresh process as far as they matter here; all of it is restored afterwards."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_logging = _logging_state()
    saved_hydra_cfg = HydraConfig.instance().cfg
    saved_rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
    saved_torch = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(REPO)
    constants = _reload_env_constants()
    GlobalHydra.instance().clear()
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [logging.StreamHandler()]  # to sys.stderr: the captured one (_captured is outside)
        logger.propagate = False
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = saved_hydra_cfg
        _restore_logging(saved_logging)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for module, saved in constants:
            for key in set(module.__dict__) - set(saved):
                del module.__dict__[key]
            module.__dict__.update(saved)
        random.setstate(saved_rng[0])
        np.random.set_state(saved_rng[1])
        torch.set_rng_state(saved_rng[2])
        torch.set_num_threads(saved_torch[0])
        torch.use_deterministic_algorithms(saved_torch[1])


def _reload_env_constants() -> list[tuple[ModuleType, dict]]:
    """Re-import the already imported ENV_CONSTANTS modules under the current environment; (module, its
    namespace before) pairs to restore."""
    saved = []
    for name in ENV_CONSTANTS:
        module = sys.modules.get(name)
        if module is not None:
            saved.append((module, dict(module.__dict__)))
            importlib.reload(module)
    return saved


LoggingState = list[tuple[logging.Logger, int, list[logging.Handler], bool, bool]]


def _logging_state() -> LoggingState:
    """Level, handlers, propagate and disabled of the root logger and of every logger made so far."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        (lg, lg.level, list(lg.handlers), lg.propagate, lg.disabled)
        for lg in loggers
        if isinstance(lg, logging.Logger)
    ]


def _restore_logging(saved: LoggingState) -> None:
    """Put `saved` back; close the handlers the run added (Hydra's train.log file handler among them)."""
    before = {id(h) for _, _, handlers, _, _ in saved for h in handlers}
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if id(handler) not in before:
                handler.close()
    for logger, level, handlers, propagate, disabled in saved:
        logger.setLevel(level)
        logger.handlers = handlers
        logger.propagate = propagate
        logger.disabled = disabled
