"""Hostile conditions on the output side (issue 15): the one output writer, analyzer/report/output.py.

A full disk (RLIMIT_FSIZE, a /dev/full of our own), a closed or broken pipe, SIGINT and SIGTERM
mid-write, a device, a FIFO, /dev/stdout, planted links: never a cut file, never a rename over
a device, every failure one line on stderr.  The machine's own /dev/null is never touched: the
device tests make their own nodes.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_hostile_output import GOLDEN, REPO, one_line_error, wireprobe

# -- where the bytes go -----------------------------------------------------------------------


def _device(path: Path, minor: int) -> Path:
    """Our own /dev/null (1, 3) or /dev/full (1, 7): the machine's are never at risk."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return path


def test_a_device_is_written_without_force_and_never_renamed_over(tmp_path: Path) -> None:
    null = _device(tmp_path / "null", 3)
    for extra in ((), ("--force",)):
        result = wireprobe("analyze", str(GOLDEN), "-f", "json", "-o", str(null), *extra)
        assert result.returncode == 0, result.stderr
        assert stat.S_ISCHR(os.stat(null).st_mode), "the device was replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]
    gen = wireprobe("generate", "--protocol", "http1", "--messages", "2", "-o", str(null))
    assert gen.returncode == 0, gen.stderr
    assert stat.S_ISCHR(os.stat(null).st_mode)


def test_a_full_device_is_one_line(tmp_path: Path) -> None:
    full = _device(tmp_path / "full", 7)
    one_line_error(wireprobe("analyze", str(GOLDEN), "-f", "json", "-o", str(full)), "space")


def test_a_fifo_is_streamed_to_its_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = wireprobe("analyze", str(GOLDEN), "-f", "json", "-o", str(fifo), "--force")
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(received[0])["schema"] == "wireprobe.analysis/1"


def test_an_existing_file_still_needs_force_and_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("precious")
    out.chmod(0o640)
    one_line_error(wireprobe("analyze", str(GOLDEN), "-o", str(out)), "--force")
    assert out.read_text() == "precious"
    link = tmp_path / "link.json"
    link.symlink_to(out)
    result = wireprobe("analyze", str(GOLDEN), "-f", "json", "-o", str(link), "--force")
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and json.loads(out.read_text())["schema"] == "wireprobe.analysis/1"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # the replaced file's mode kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "out.json"]


def test_paths_that_cannot_work_are_one_line(tmp_path: Path) -> None:
    one_line_error(wireprobe("analyze", str(GOLDEN), "-o", f"{GOLDEN}/x.json"), "not a directory")
    one_line_error(wireprobe("analyze", str(GOLDEN), "-o", str(tmp_path)), "directory")
    one_line_error(wireprobe("analyze", str(GOLDEN), "-o", str(tmp_path / "no" / "x")), "exist")
    planted = tmp_path / "planted.json"
    planted.symlink_to(tmp_path / "elsewhere" / "x")
    for extra in ((), ("--force",)):
        result = wireprobe("analyze", str(GOLDEN), "-o", str(planted), *extra)
        one_line_error(result, "symbolic link to nothing")
    planted.unlink()
    # The temporary file has a name of its own: yesterday's "out.json.partial" directory (or
    # a planted link) is not written through.
    (tmp_path / "out.json.partial").mkdir()
    result = wireprobe("analyze", str(GOLDEN), "-o", str(tmp_path / "out.json"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.json.partial"]


#: A file size limit well below a report's size: the write fails with EFBIG (Python ignores
#: SIGXFSZ), as on a full disk.
SMALL_FSIZE_BYTES = 1500


def _limit_file_size() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL_FSIZE_BYTES, SMALL_FSIZE_BYTES))


def test_a_full_disk_leaves_no_partial_file_and_the_old_one_whole(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("yesterday's report")
    result = wireprobe(
        "analyze", str(GOLDEN), "-f", "json", "-o", str(out), "--force", preexec=_limit_file_size
    )
    one_line_error(result, "too large")
    assert out.read_text() == "yesterday's report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_full_disk_behind_standard_output_is_one_line(tmp_path: Path) -> None:
    # `wireprobe analyze x.pcap > /full/disk/out.txt`: the shell's file, not ours to remove.
    with open(tmp_path / "out.txt", "wb") as out:
        result = subprocess.run(
            [sys.executable, "-m", "analyzer.cli", "analyze", str(GOLDEN)],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            preexec_fn=_limit_file_size,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == ["wireprobe: cannot write standard output: File too large"], lines


def test_dev_stdout_onto_a_file_writes_through_it(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    args = ("analyze", str(GOLDEN), "-f", "json", "-o", "/dev/stdout")
    with open(out, "wb") as shell_redirect:
        result = subprocess.run(
            [sys.executable, "-m", "analyzer.cli", *args],
            stdout=shell_redirect,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
        inode = os.fstat(shell_redirect.fileno()).st_ino
    assert result.returncode == 0, result.stderr
    assert out.stat().st_ino == inode  # the shell's file, written in place, not replaced
    assert json.loads(out.read_text())["schema"] == "wireprobe.analysis/1"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_full_disk_under_the_spool_is_one_line(tmp_path: Path) -> None:
    # The JSON report spools records to an anonymous temporary file while the capture is read;
    # standard output is a pipe, which the file size limit does not touch.
    big = tmp_path / "big.pcap"
    args = ("--protocol", "http1", "--messages", "40", "--per-connection", "1")
    assert wireprobe("generate", *args, "-o", str(big)).returncode == 0
    result = wireprobe("analyze", str(big), "-f", "json", preexec=_limit_file_size)
    one_line_error(result, "temporary spool")
    assert result.stdout == ""


def test_generate_never_leaves_a_cut_pcap(tmp_path: Path) -> None:
    args = ("generate", "--protocol", "http1", "--tls", "1.3", "--messages", "20")
    files = ("-o", str(tmp_path / "g.pcap"), "--keylog", str(tmp_path / "g.keys"))
    result = wireprobe(*args, *files, "--truth", str(tmp_path / "g.json"), preexec=_limit_file_size)
    one_line_error(result, "too large")
    assert list(tmp_path.iterdir()) == []
    whole = wireprobe(*args, *files, "--truth", str(tmp_path / "g.json"))
    assert whole.returncode == 0, whole.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json", "g.keys", "g.pcap"]


def test_generate_writes_all_its_files_or_none(tmp_path: Path) -> None:
    # One message: the pcap fits under the limit, its truth file does not.  Placing the pcap
    # alone would leave a capture whose ground truth is missing.
    args = ("generate", "--protocol", "http1", "--messages", "1", "-o", str(tmp_path / "g.pcap"))
    whole = wireprobe(*args, "--truth", str(tmp_path / "g.json"))
    assert whole.returncode == 0, whole.stderr
    sizes = sorted(p.stat().st_size for p in tmp_path.iterdir())
    assert sizes[0] < SMALL_FSIZE_BYTES < sizes[1], sizes
    for path in list(tmp_path.iterdir()):
        path.unlink()
    cut = wireprobe(*args, "--truth", str(tmp_path / "g.json"), preexec=_limit_file_size)
    one_line_error(cut, "too large")
    assert list(tmp_path.iterdir()) == []
    same = wireprobe(*args, "--truth", str(tmp_path / "g.pcap"))
    one_line_error(same, "same file")
    assert list(tmp_path.iterdir()) == []


def test_a_closed_stdout_is_one_line() -> None:
    result = wireprobe("analyze", str(GOLDEN), preexec=lambda: os.close(1))
    one_line_error(result, "standard output")


def test_a_reader_that_leaves_the_pipe_is_no_error(tmp_path: Path) -> None:
    big = tmp_path / "big.pcap"
    # A report well over a pipe's 64 KiB buffer, so the writer is still writing when head leaves.
    args = ("--protocol", "http1", "--messages", "300", "--per-connection", "1")
    gen = wireprobe("generate", *args, "-o", str(big))
    assert gen.returncode == 0, gen.stderr
    command = (
        f"{sys.executable} -m analyzer.cli analyze {big} -f json | head -c 100 >/dev/null; "
        'echo "status=${PIPESTATUS[0]}"'
    )
    result = subprocess.run(
        command,
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        executable="/bin/bash",
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.stdout.strip() == "status=0"
    assert result.stderr == "", result.stderr  # no "Exception ignored ... BrokenPipeError"


# -- signals ----------------------------------------------------------------------------------

#: Run the CLI with the report's writer stopped by a signal half-way through the file.
_SIGNAL_MID_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from analyzer import cli
    from analyzer.report import render as report

    def render(self, analysis, out):
        out.write("{ half a report")
        out.flush()
        os.kill(os.getpid(), signal.{signame})
        out.write("the rest")

    report.Collector.render = render
    sys.exit(cli.run(sys.argv[1:]))
    """
)


@pytest.mark.parametrize(("signame", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_while_writing_removes_the_partial_file(
    tmp_path: Path, signame: str, status: int
) -> None:
    out = tmp_path / "out.json"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _SIGNAL_MID_WRITE.replace("{signame}", signame),
            *("analyze", str(GOLDEN), "-f", "json", "-o", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


#: How soon after Ctrl-C the run must have ended.
PROMPT_STOP_S = 5.0


def _endless_analyze(preexec: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    """``wireprobe analyze -`` on standard input that never ends (a live tcpdump): the header
    and a packet, then silence; returned once it is blocked on the read."""
    process = subprocess.Popen(
        [sys.executable, "-m", "analyzer.cli", "analyze", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=preexec,
    )
    assert process.stdin is not None
    process.stdin.write(GOLDEN.read_bytes()[:400])
    process.stdin.flush()
    time.sleep(2.0)  # start-up, then blocked on the read
    assert process.poll() is None
    return process


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_an_endless_capture_promptly(signum: int, status: int) -> None:
    process = _endless_analyze()
    process.send_signal(signum)
    started = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=PROMPT_STOP_S * 4)
    finally:
        process.kill()
    assert time.monotonic() - started < PROMPT_STOP_S
    assert process.returncode == status, stderr
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wireprobe: "), stderr


def test_a_hangup_that_nohup_ignores_stays_ignored() -> None:
    process = _endless_analyze(preexec=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    process.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert process.poll() is None, "SIGHUP stopped a run started under nohup"
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=PROMPT_STOP_S * 4)
    finally:
        process.kill()
    assert process.returncode == 130, stderr


# -- the writer, in process -------------------------------------------------------------------


def test_plan_tells_files_devices_and_standard_output_apart(tmp_path: Path) -> None:
    from analyzer.errors import UsageError
    from analyzer.report.output import Kind, plan

    assert plan(None).kind is Kind.STDOUT and plan("-").kind is Kind.STDOUT
    assert plan(tmp_path / "new.json").kind is Kind.ATOMIC
    assert plan(_device(tmp_path / "null", 3)).kind is Kind.STREAM
    disk = tmp_path / "disk"
    os.mknod(disk, stat.S_IFBLK | 0o600, os.makedev(7, 200))  # a loop device node: never opened
    with pytest.raises(UsageError, match="block device"):
        plan(disk)
    assert plan(disk, force=True).kind is Kind.STREAM


def test_an_exception_inside_the_writer_leaves_nothing(tmp_path: Path) -> None:
    from analyzer.report.output import open_target, plan

    target = plan(tmp_path / "out.txt")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), open_target(target, "w") as out:
        out.write("half")
        raise Boom
    assert list(tmp_path.iterdir()) == []
    with open_target(target, "w") as out:
        out.write("whole")
    assert (tmp_path / "out.txt").read_text() == "whole"
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_file_that_appears_while_writing_is_not_overwritten(tmp_path: Path) -> None:
    from analyzer.report.output import OutputError, open_target, plan

    path = tmp_path / "out.txt"
    target = plan(path)  # nothing there yet, no --force
    with pytest.raises(OutputError, match="appeared"), open_target(target, "w") as out:
        out.write("mine")
        path.write_text("someone else's")
    assert path.read_text() == "someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
