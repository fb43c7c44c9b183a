"""The same capture given twice: found before reading, so it is read once.

Analysed as one capture, a file given twice would be one set of flows whose every packet appears
twice, and every copy would count as a retransmission (a third of the bytes and more, all
invented).  ``distinct`` keeps the first of each: the same path, the same file under another name
(a link: same device and inode) or the same content (same size and SHA-256).  Captures of the
same traffic from two points (both ends of a link) differ in bytes and are not caught here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from analyzer.capture.reader import STDIN_PATH

#: Bytes hashed per read when comparing contents: large enough that a 1 GiB file takes
#: about a thousand reads, small enough to keep memory flat.
HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate:
    """An input dropped because an earlier one is the same capture."""

    #: the path as given, dropped
    path: str
    #: the earlier path it repeats, kept
    same_as: str
    #: "the same file" or "the same content"
    how: str


def distinct(paths: Sequence[str]) -> tuple[list[str], list[Duplicate]]:
    """The paths to read (first of each capture, order kept) and the ones dropped."""
    kept: list[str] = []
    dropped: list[Duplicate] = []
    identities: dict[tuple[int, int], str] = {}
    by_size: dict[int, list[str]] = {}
    digests: dict[str, str] = {}
    for path in paths:
        stat = _stat(path)
        if path == STDIN_PATH or stat is None:
            # stdin once is all there is; an unreadable path fails later with its own message.
            if path == STDIN_PATH and STDIN_PATH in kept:
                dropped.append(Duplicate(path=path, same_as=path, how="the same file"))
                continue
            kept.append(path)
            continue
        identity = (stat.st_dev, stat.st_ino)
        if identity in identities:
            dropped.append(Duplicate(path=path, same_as=identities[identity], how="the same file"))
            continue
        twin = _same_content(path, by_size.get(stat.st_size, []), digests)
        if twin is not None:
            dropped.append(Duplicate(path=path, same_as=twin, how="the same content"))
            continue
        identities[identity] = path
        by_size.setdefault(stat.st_size, []).append(path)
        kept.append(path)
    return kept, dropped


def _stat(path: str) -> os.stat_result | None:
    """The stat of a regular file; None for stdin, devices, pipes and what cannot be read."""
    if path == STDIN_PATH:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat if os.path.isfile(path) else None


def _same_content(path: str, candidates: list[str], digests: dict[str, str]) -> str | None:
    """The first of ``candidates`` (files of the same size) with the same bytes as ``path``."""
    if not candidates:
        return None
    mine = _digest(path, digests)
    for other in candidates:
        if mine is not None and _digest(other, digests) == mine:
            return other
    return None


def _digest(path: str, digests: dict[str, str]) -> str | None:
    if path not in digests:
        sha = hashlib.sha256()
        try:
            with open(path, "rb") as stream:
                while chunk := stream.read(HASH_CHUNK_BYTES):
                    sha.update(chunk)
        except OSError:
            return None
        digests[path] = sha.hexdigest()
    return digests[path]
