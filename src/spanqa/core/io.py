"""File output that never leaves a half-written file, and one way to name an OS error's path and cause."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from spanqa.core.errors import DataError, OutputError, SpanQAError

__all__ = [
    "atomic_open",
    "atomic_folder",
    "recover_folder",
    "sync_folder",
    "check_new_file",
    "check_output_folder",
    "write_json",
    "read_json",
    "finite_json",
    "describe_os_error",
    "output_error",
    "file_mode",
    "share_files",
]

_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "exists and is not a folder",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "file name too long",
}


def describe_os_error(err: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """``PATH: cause`` for an OSError, in words a user can act on.

    Args:
        err: The error.
        path: The path to name; default: the error's own ``filename``.
    """
    where = path if path is not None else err.filename
    cause = _CAUSES.get(err.errno or -1) or err.strerror or type(err).__name__
    return f"{where}: {cause}" if where is not None else cause


def output_error(path: str | os.PathLike[str], err: OSError) -> OutputError:
    """An :class:`OutputError` saying that ``path`` could not be written, and why."""
    return OutputError(f"cannot write {describe_os_error(err, path)}")


_umask_lock = threading.Lock()


def current_umask() -> int:
    """This process's umask, read without changing it where the OS allows (Linux)."""
    try:
        found = re.search(r"^Umask:\s+([0-7]+)", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return int(found.group(1), 8)
    with _umask_lock:  # elsewhere: set and restore, under a lock against our own threads
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets under this process's umask (0o644 under the usual 022)."""
    return 0o666 & ~current_umask()


def share_files(folder: str | os.PathLike[str]) -> None:
    """Give the files directly in ``folder`` the umask's mode: transformers' ``save_pretrained`` writes
    weights through a private temporary file (0600), so a saved model could not be shared."""
    mode = file_mode()
    for file in Path(folder).iterdir():
        if file.is_file() and not file.is_symlink() and file.stat().st_mode & 0o777 != mode:
            file.chmod(mode)


# Temporaries are named ``.NAME.spanqa-HOST-PID-RANDOM.KIND`` beside their target NAME: hidden, marked
# as spanqa's, and owned by exactly one target (no other name can produce a match for NAME, so a
# sibling such as ``NAME.2024`` is never mistaken for NAME's). HOST is a hash of the host name,
# since a pid only says something about a process on the same host (folders may be shared).
_STALE_AFTER_S = {"tmp": 86400.0, "staging": 86400.0, "old": 600.0}
"""How old another host's leftovers must be to count as dead: a live swap holds ``old`` for milliseconds,
a live build may fill its staging folder for hours."""
_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _temporary_prefix(path: Path) -> str:
    """The start of every temporary name of ``path`` made by this process."""
    return f".{path.name}.spanqa-{_HOST}-{os.getpid()}-"


def _leftovers(path: Path, kind: str) -> list[Path]:
    """The temporaries of ``kind`` (``tmp``, ``staging``, ``old``) beside ``path`` whose writer is gone, found
    by the exact pattern of ``path``'s temporary names.

    Earlier versions named them ``.NAME.PID.RANDOM.tmp``, ``.NAME.PID.RANDOM.staging`` and
    ``.NAME.PID.old`` (a killed run of one of those is recovered too); those are read as this host's.
    """
    name = re.escape(path.name)
    patterns = [re.compile(rf"\.{name}\.spanqa-(?P<host>[0-9a-f]{{8}})-(?P<pid>\d+)-[0-9a-z_]+\.{kind}")]
    patterns.append(re.compile(rf"\.{name}\.(?P<pid>\d+)\.old" if kind == "old" else rf"\.{name}\.(?P<pid>\d+)\.[0-9a-z_]+\.{kind}"))
    found = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = next((m for m in (p.fullmatch(entry.name) for p in patterns) if m), None)
        if match and _stale(entry, match.groupdict().get("host") or _HOST, int(match["pid"]), kind):
            found.append(entry)
    return found


def _stale(entry: Path, host: str, pid: int, kind: str) -> bool:
    """Whether the process that made ``entry`` is gone: a dead pid on this host, else old enough."""
    if host == _HOST:
        return not _alive(pid)
    try:
        info = entry.lstat()
    except OSError:
        return False
    return time.time() - max(info.st_mtime, info.st_ctime) > _STALE_AFTER_S[kind]


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files of ``path`` left by killed writers (never a live writer's, nor another file's)."""
    for tmp in _leftovers(path, "tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass


def sync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush ``folder``'s entries to the disk, so that a rename or a new file in it survives a power loss.

    Quietly does nothing where folders cannot be opened or synced (Windows).

    Args:
        folder: The folder whose entries changed.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` before it is renamed into place: a rename that
    reaches the disk before the contents would put empty files there after a power loss."""
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)
        sync_folder(root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def check_new_file(
    path: str | os.PathLike[str],
    overwrite: bool = False,
    *,
    expected: str = "a file name",
    owned: Callable[[Path], bool] | None = None,
    owned_name: str = "",
) -> Path:
    """``path`` if a file may be written there: it does not exist yet, ``overwrite`` is given, or it
    is one that this kind of output replaces by itself (``owned``). The one rule for output files.

    Args:
        path: The output file.
        overwrite: Replace an existing file.
        expected: What the file should be, for the message when ``path`` is a folder.
        owned: Whether an existing file is an earlier output of the same kind (replaced without ``overwrite``).
        owned_name: What ``owned`` accepts, for the message (``"a spanqa report"``).

    Raises:
        OutputError: ``path`` is a folder, or exists (and is not ``owned``) and ``overwrite`` is False.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: is a folder, expected {expected}")
    if path.is_file() and not overwrite:  # a device or pipe (/dev/null, /dev/stdout) holds no work to lose
        if owned is None:
            raise OutputError(f"{path}: exists; pass --overwrite to replace it")
        if not owned(path):
            raise OutputError(f"{path}: exists and is not {owned_name or 'an earlier output'}; pass --overwrite to replace it, or choose another file")
    return path


def check_output_folder(
    folder: str | os.PathLike[str],
    overwrite: bool = False,
    *,
    owned: Callable[[str], bool] | None = None,
    what: str = "output",
    error: type[SpanQAError] = OutputError,
) -> Path:
    """``folder`` if a run's output files may go there: it does not exist or is empty, or it holds an
    earlier output and ``overwrite`` is given. The one rule for output folders; checked before any work,
    so that a long run never ends in a refusal. A swap into ``folder`` that a kill cut short is
    finished first (see :func:`recover_folder`), so the check sees the earlier output, not "nothing there".

    Args:
        folder: The output folder.
        overwrite: Replace an earlier output.
        owned: Whether a file name is one this kind of run writes; with it, a folder holding any
            other file is refused even with ``overwrite`` (replacing the folder would delete it).
            None: any content is an earlier output.
        what: The kind of output, for the messages (``"evaluation"``).
        error: The exception raised (the commands that checked with ConfigError keep it).

    Raises:
        OutputError (or ``error``): ``folder`` is a file, holds files of other kinds (with ``owned``),
            or is not empty and ``overwrite`` is False.
    """
    out = Path(folder)
    try:
        recover_folder(out)
    except OSError:
        pass  # e.g. a read-only folder: the write that follows reports it
    if out.exists() and not out.is_dir():
        raise error(f"{out}: exists and is not a folder (it is a file); choose a folder for the {what} files")
    if not out.exists():
        return out
    entries = sorted(entry.name for entry in out.iterdir())
    if owned is not None:
        others = [name for name in entries if not owned(name)]
        if others:
            more = ", ..." if len(others) > 3 else ""
            raise error(f"{out}: holds other files ({', '.join(others[:3])}{more}); choose a new or empty folder")
    if entries and not overwrite:
        held = f"holds an earlier {what} ({', '.join(entries)})" if owned is not None else "folder exists and is not empty"
        raise error(f"{out}: {held}; pass --overwrite to replace it, or choose another folder")
    return out


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    On an exception (or a kill) the old file, if any, is left untouched; temporaries of killed
    runs are removed by the next write to the same path. The file gets the usual mode for the
    user's umask (a temporary file would be private). A full disk, a read-only or missing folder,
    or a folder where the file should be raise :class:`~spanqa.core.errors.OutputError` naming ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: is a folder, expected a file name")
    if path.exists() and not path.is_file():
        # A device or pipe (/dev/null, /dev/stdout, a FIFO) is written in place: renaming over it would replace it.
        try:
            with open(path, mode, encoding=None if "b" in mode else encoding) as handle:
                yield handle
        except OSError as err:
            raise output_error(path, err) from None
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(path, err) from None
    _remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
        os.fchmod(fd, file_mode())
    except OSError as err:
        raise output_error(path, err) from None
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        sync_folder(path.parent)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and err.filename in (None, tmp, str(path)):
            raise output_error(path, err) from None  # writing failed (not some input the caller read)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Fill a staging folder beside ``path``, then swap it in for ``path`` as a whole.

    Readers see the old set of files or the new one, never a mix: the staging folder's files are
    synced, the old folder is renamed aside, the new one renamed into place (and the parent folder
    synced), and the old one deleted. On an exception the staging folder is removed and ``path`` is
    as it was (a failed second rename puts the old folder back). A run killed mid-swap leaves no
    ``path`` but its previous folder aside; :func:`recover_folder` (run first here, and by
    :func:`check_output_folder`) puts that back.

    Args:
        path: The folder to replace (it may not exist yet). The caller checks that replacing it is allowed.
    """
    path = Path(path).resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_folder(path)
        staging = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".staging", dir=path.parent))
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's folder is private; use the umask's mode
    except OSError as err:
        raise output_error(path, err) from None
    aside = path.parent / f"{_temporary_prefix(path)}{secrets.token_hex(4)}.old"
    try:
        yield staging
        _sync_tree(staging)
        _swap(staging, path, aside)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise output_error(path, err) from None
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _swap(staging: Path, path: Path, aside: Path) -> None:
    """Move ``path`` (if any) to ``aside`` and ``staging`` to ``path``; if the second move fails, move ``path`` back."""
    if path.exists():
        os.replace(path, aside)
    try:
        os.replace(staging, path)
    except BaseException:
        if aside.exists() and not path.exists():
            os.replace(aside, path)
        raise
    finally:
        sync_folder(path.parent)


def recover_folder(path: str | os.PathLike[str]) -> None:
    """Undo what killed runs of :func:`atomic_folder` into ``path`` left: put a previous folder that
    was moved aside back when ``path`` is missing (killed between the two renames: the swap is
    undone), and delete dead runs' staging and aside folders. Run it before deciding anything
    from whether ``path`` exists. Only that exact target's leftovers of dead processes are touched.

    Args:
        path: The folder that :func:`atomic_folder` replaces.

    Raises:
        OSError: the previous folder cannot be moved back.
    """
    path = Path(path).resolve()  # where atomic_folder stages: beside the real folder
    for leftover in _leftovers(path, "old"):
        if leftover.is_dir() and not path.exists():
            os.replace(leftover, path)  # killed between the two renames: the previous folder comes back
            sync_folder(path.parent)
        else:
            shutil.rmtree(leftover, ignore_errors=True)
    for leftover in _leftovers(path, "staging"):
        shutil.rmtree(leftover, ignore_errors=True)


_recover_folder = recover_folder  # the name the reliability tests use


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON atomically; NaN and infinities become null (JSON has neither, and
    Python's ``NaN``/``Infinity`` literals break other readers)."""
    with atomic_open(path) as handle:
        json.dump(finite_json(obj), handle, ensure_ascii=False, indent=indent, allow_nan=False)
        handle.write("\n")


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (in dicts, lists and tuples) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(value) for value in obj]
    return obj


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; a folder, non-UTF-8 bytes or invalid JSON raise DataError naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a JSON file") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply") from None
    except ValueError as err:  # e.g. an integer with thousands of digits
        raise DataError(f"{path}: cannot read a JSON value ({err})") from None
