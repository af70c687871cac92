"""Several output files written all or none: staged in a hidden folder, moved into place together.

:func:`hcp_cam.io.atomic_path` keeps one file whole; a command that writes several files (a CAM,
its [0, 1] copy, a box JSON and a figure) also needs the *set* to be whole: a run that fails
half-way must leave the outputs of an earlier run under the same names untouched, not a mix of
new and old files. :func:`staged_outputs` gives the writers temporary paths in a hidden folder
beside the outputs, and only when every file is written moves the earlier files aside, the new
ones in, and drops the earlier ones; if a move fails, the earlier files are put back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from hcp_cam.errors import InputError

__all__ = ["staged_outputs", "check_outputs"]

logger = logging.getLogger(__name__)

_STAGING_PREFIX = ".hcp-cam-staging-"
# who stages: a folder of a process that is gone (killed) is removed by the next run in its folder
_OWNER = f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


def check_outputs(paths: Iterable[str | os.PathLike], option: str = "--out") -> None:
    """Check, before any work, that ``paths`` can be written: the nearest existing folder above
    each is a writable folder (missing folders below it are created when writing) and none of
    them is an existing folder.

    Raises:
        InputError: an output is a folder, lies under a file, or in a folder that cannot be written.
    """
    for path in map(Path, paths):
        if path.is_dir():
            raise InputError(f"{option}: this output is an existing folder; choose another {option}", path)
        existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
        if not existing.is_dir():
            raise InputError(
                f"{option} lies under {existing}, which is a file, not a folder; choose another path", path
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(
                f"cannot write in {existing} (permission denied); choose a writable {option}", path
            )


@contextlib.contextmanager
def staged_outputs(
    outputs: Mapping[str, str | os.PathLike], stale: Iterable[str | os.PathLike] = ()
) -> Iterator[dict[str, Path]]:
    """Yield a temporary path per output; on success put them all in place, on failure none.

    Args:
        outputs: ``{key: final path}``, all in one folder (created if missing).
        stale: earlier outputs under the same names that this run does not write (e.g. a figure
            left by a run with other options): removed on success, so that the folder holds one
            run's set; left as they are on failure. Never pass an input of the run.

    Yields:
        ``{key: temporary path}``, same file names (so writers that choose a format by extension
        work) in a hidden ``.hcp-cam-staging-*`` folder beside the outputs. Every one must be
        written by the end of the block.

    Raises:
        InputError: an output is a folder; the outputs' folder cannot be created or written.
        FileNotFoundError: the block ended without writing one of the temporary paths.
    """
    finals = {k: Path(p) for k, p in outputs.items()}
    folders = {p.parent for p in finals.values()}
    if len(folders) != 1:
        raise ValueError(f"staged outputs must share one folder, got {sorted(map(str, folders))}")
    folder = folders.pop()
    check_outputs(finals.values())
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(folder)
        staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{_OWNER}-", dir=folder))
    except OSError as e:
        raise InputError(f"cannot write in {folder} ({e.strerror or e})", folder) from e
    committed = False
    try:
        staged = {k: staging / p.name for k, p in finals.items()}
        yield staged
        _commit(staged, finals, [Path(p) for p in stale], staging)
        committed = True
    finally:
        previous = staging / ".previous"
        if not committed and previous.is_dir() and any(previous.iterdir()):
            # an earlier file could not be put back: keep it (under a name no clean-up removes)
            kept = staging.with_name(staging.name.replace(_STAGING_PREFIX, ".hcp-cam-unrestored-", 1))
            with contextlib.suppress(OSError):
                staging = staging.rename(kept)
            logger.error(
                "could not restore earlier outputs in %s; they are in %s", folder, staging / ".previous"
            )
        else:
            shutil.rmtree(staging, ignore_errors=True)
        if not committed:  # folders made for this run only go again
            for d in created:
                with contextlib.suppress(OSError):
                    d.rmdir()


def _remove_abandoned(folder: Path) -> None:
    """Remove staging folders left in ``folder`` by killed runs of this machine (a run cut off by
    SIGKILL cannot clean up). A folder of a live process, or of another machine, is left alone."""
    host = socket.gethostname().replace("-", "_")
    for d in folder.glob(f"{_STAGING_PREFIX}{host}-*"):
        pid = d.name[len(_STAGING_PREFIX) + len(host) + 1 :].split("-", 1)[0]
        if d.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            logger.info("removed %s, left by a run that was killed", d)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _commit(staged: dict[str, Path], finals: dict[str, Path], stale: list[Path], staging: Path) -> None:
    """Move earlier files aside, the staged ones in; undo every move if one fails."""
    for key, tmp in staged.items():
        if not tmp.is_file():
            raise FileNotFoundError(f"{finals[key]} was not written (no {tmp})")
    previous = staging / ".previous"
    previous.mkdir()
    moved_aside: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for i, old in enumerate([*finals.values(), *stale]):
            if old.exists() or old.is_symlink():
                aside = previous / f"{i}_{old.name}"
                os.replace(old, aside)
                moved_aside.append((old, aside))
        modes = {old: aside.stat().st_mode & 0o7777 for old, aside in moved_aside if aside.is_file()}
        for key, final in finals.items():
            if final in modes:  # a replaced file keeps its permissions, as atomic_path does
                os.chmod(staged[key], modes[final])
            os.replace(staged[key], final)
            placed.append(final)
    except BaseException:
        for final in placed:
            with contextlib.suppress(OSError):
                final.unlink()
        for old, aside in moved_aside:
            with contextlib.suppress(OSError):
                os.replace(aside, old)
        raise
    for old in stale:
        if any(old == o for o, _ in moved_aside):
            logger.info("removed %s, left by an earlier run with other options", old)
