"""``--jobs N`` and ``--cluster``: one analysis cut into shards, run in parallel, merged exactly.

A shard (DESIGN.md section 7) is (an input group, a bucket of the flow hash): its worker reads
every file of the group and keeps the frames of its bucket (analyzer/tcp/flowhash.py) before the
flow table, so each connection is analysed whole by one worker and no packet moves between
processes.  The parent merges what the shards wrote:

- capture-level figures (each file's packets, wire bytes, link types, times, anomalies) come
  from bucket 0 of each group: every shard reads the whole group, so any one of them has them,
  and taking one counts them once;
- ``packets``, ``tcp_packets`` and ``skipped_packets`` add: the buckets partition the frames;
- connection and message records stream out of the shards' spools in the canonical order
  (analyzer/spool.py) to ``on_record``, and the per-protocol summary is folded from them in that
  order, so every figure, float sums included, is the same for every N and on a cluster.  Any
  mergeable figure a later change adds to the summary stays exact the same way: it is rebuilt
  from the merged records, never added up from per-shard summaries.

One code path for every executor: ``--jobs 1`` runs the one shard in this process, ``--jobs N``
a ``ProcessPoolExecutor``, ``--cluster`` the executor of a Dask ``distributed.Client``; all are
``concurrent.futures`` executors.  A shard that fails stops the run: the others are cancelled and
one ``ShardError`` names the shard and the cause; no partial result is ever rendered.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import resource
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, ParamSpec, TypeVar

from analyzer.accounting.records import Record, Summary
from analyzer.capture.inputs import (
    SEPARATE_CAPTURE,
    FileSurvey,
    InputGroup,
    expand,
    group,
    single,
    survey,
)
from analyzer.capture.reader import STDIN_PATH, CaptureSet, RawPacket
from analyzer.errors import UsageError, WireprobeError
from analyzer.filters import Dropped
from analyzer.options import AnalyzeOptions
from analyzer.pipeline import Analysis, OnRecord, analyze
from analyzer.spool import PackedSpool, RecordSpool, SpoolFiles, merge, pack, unpack
from analyzer.tcp.flowhash import keep_bucket

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ShardError(WireprobeError):
    """A shard could not finish; the message says which and why (one line)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardSpec:
    """One unit of work: what a worker needs, all of it picklable."""

    group: int  # index of the input group
    paths: tuple[str, ...]  # the group's files, in time order
    bucket: int  # the flow-hash bucket this shard keeps
    buckets: int  # buckets per group
    options: AnalyzeOptions
    #: directory the parent reads too (local workers); None: send the spool back as bytes
    spool_dir: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardResult:
    """What one shard sends back: counts, and where its records are."""

    group: int
    bucket: int
    packets: int  # frames of this bucket (non-TCP frames count in bucket 0)
    tcp_packets: int
    skipped: dict[str, int]
    connections: int
    #: what the shard's connection-table budget did (``Analysis.connection_table``), or None
    connection_table: dict[str, int] | None
    #: the group's capture records (bucket 0 only; the other buckets read the same files)
    captures: list[Record]
    #: where its records are: files on a shared disk, or their bytes from a remote worker
    spool: SpoolFiles | PackedSpool
    #: CPU seconds the shard took (its thread's, so a Dask worker's other threads do not count)
    cpu_s: float
    #: peak resident memory of the worker process so far, in KiB (``getrusage`` ru_maxrss)
    peak_rss_kib: int
    #: what ``--filter`` dropped in this shard (None: no filter)
    dropped: Dropped | None = None


def _describe(spec: ShardSpec) -> str:
    return f"shard {spec.bucket + 1}/{spec.buckets} of input group {spec.group + 1}"


def run_shard(spec: ShardSpec, report: Reporter | None = None) -> ShardResult:
    """Analyse one shard (in a worker process, or in this one for ``--jobs 1``); reading
    progress goes to ``report``, else to the queue a pool worker was started with."""
    started = time.thread_time()
    report = report or _worker_reporter
    own_dir = spec.spool_dir is None
    directory = tempfile.mkdtemp(prefix="wireprobe-shard-") if own_dir else spec.spool_dir
    assert directory is not None
    spool = RecordSpool(directory, f"g{spec.group}b{spec.bucket}", spec.group)

    def only_bucket(packets: Iterable[RawPacket]) -> Iterable[RawPacket]:
        if report is not None:
            packets = _reading(packets, spec, report)
        return keep_bucket(packets, spec.bucket, spec.buckets)

    try:
        try:
            analysis = analyze(
                spec.paths, spec.options, on_record=spool.add, packet_filter=only_bucket
            )
            files = spool.close()
        except BaseException as err:
            spool.discard()
            if isinstance(err, WireprobeError):
                # Re-raised as the one-argument ShardError: exceptions cross processes by
                # pickling, and CaptureError's two-argument constructor would not survive it.
                raise ShardError(f"{_describe(spec)}: {err}") from None
            raise
        return ShardResult(
            group=spec.group,
            bucket=spec.bucket,
            packets=analysis.packets,
            tcp_packets=analysis.tcp_packets,
            skipped=analysis.skipped,
            connections=analysis.connections,
            connection_table=analysis.connection_table,
            captures=analysis.captures if spec.bucket == 0 else [],
            spool=pack(files) if own_dir else files,
            cpu_s=time.thread_time() - started,
            peak_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            dropped=analysis.dropped,
        )
    finally:
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)


#: Frames a shard reads between two progress reports (a report is one small queue message).
PROGRESS_EVERY_FRAMES = 50_000
#: Bytes a capture file spends on a packet beyond its captured bytes: pcap's record header.
#: pcapng spends 32 and padding, gzip less than the frames: "bytes read" is an estimate there.
RECORD_OVERHEAD_BYTES = 16

#: ``report((group, bucket, input bytes read so far))``
Reporter = Callable[[tuple[int, int, int]], None]
#: Where a pool worker's shards report their reading: set once per worker process by the pool's
#: initializer (``_report_to``), the one queue that process was started with.
_worker_reporter: Reporter | None = None


def _report_to(queue: Any) -> None:
    global _worker_reporter
    _worker_reporter = queue.put if queue is not None else None


def _reading(
    packets: Iterable[RawPacket], spec: ShardSpec, report: Reporter
) -> Iterator[RawPacket]:
    """The frames unchanged, counting the input bytes they took."""
    read = frames = 0
    every = PROGRESS_EVERY_FRAMES
    overhead = RECORD_OVERHEAD_BYTES
    for packet in packets:
        read += len(packet[3]) + overhead
        frames += 1
        if frames == every:
            report((spec.group, spec.bucket, read))
            frames = 0
        yield packet
    report((spec.group, spec.bucket, read))


def plan(
    groups: Sequence[InputGroup], buckets: int, options: AnalyzeOptions, spool_dir: str | None
) -> list[ShardSpec]:
    """Every (group, bucket) shard of a run."""

    def where(paths: tuple[str, ...]) -> tuple[str, ...]:
        # A remote worker runs in a directory of its own: give it paths that do not depend on
        # ours (the records still name the paths as given, see _captures).
        return paths if spool_dir is not None else tuple(os.path.abspath(p) for p in paths)

    return [
        ShardSpec(
            group=g,
            paths=where(group.paths),
            bucket=b,
            buckets=buckets,
            options=options,
            spool_dir=spool_dir,
        )
        for g, group in enumerate(groups)
        for b in range(buckets)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardProgress:
    """How far a sharded run is (for the CLI's progress line): sent as shards read (local
    workers report every ``PROGRESS_EVERY_FRAMES`` frames) and as each finishes."""

    shards_done: int
    shards: int
    #: input bytes the shards have read so far (an estimate for pcapng and gzip: see
    #: ``RECORD_OVERHEAD_BYTES``), against the bytes of the files all shards together read
    bytes_read: int
    input_bytes: int
    packets_done: int  # frames analysed by the finished shards
    #: the shard that just finished, on a finishing report; None on a reading report
    finished: ShardResult | None = None

    @property
    def fraction(self) -> float:
        """Share of the work done, 0 to 1 (1 only when every shard has finished)."""
        if self.shards_done == self.shards:
            return 1.0
        read = self.bytes_read / self.input_bytes if self.input_bytes else 0.0
        return min(read, 0.99)


OnProgress = Callable[[ShardProgress], None]


def _file_bytes(paths: Iterable[str]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):  # the shard that reads it will say what is wrong
            total += os.path.getsize(path)
    return total


class _Tally:
    """The parent's view of every shard's reading, fed by reports from any thread."""

    def __init__(self, specs: Sequence[ShardSpec], on_progress: OnProgress | None) -> None:
        self._on_progress = on_progress
        self._shards = len(specs)
        self._input_bytes = sum(_file_bytes(s.paths) for s in specs)
        self._sizes = {(s.group, s.bucket): _file_bytes(s.paths) for s in specs}
        self._read: dict[tuple[int, int], int] = {}
        self._results: list[ShardResult] = []
        self._done: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    @property
    def wanted(self) -> bool:
        return self._on_progress is not None

    def reading(self, report: tuple[int, int, int]) -> None:
        group, bucket, read = report
        with self._lock:
            if (group, bucket) in self._done:
                return  # a worker's last report, overtaken by its result: nothing new
            self._read[group, bucket] = read
            self._tell(None)

    def finished(self, result: ShardResult) -> None:
        with self._lock:
            self._results.append(result)
            self._done.add((result.group, result.bucket))
            self._read[result.group, result.bucket] = self._sizes[result.group, result.bucket]
            self._tell(result)

    def _tell(self, result: ShardResult | None) -> None:
        if self._on_progress is None:
            return
        self._on_progress(
            ShardProgress(
                shards_done=len(self._results),
                shards=self._shards,
                bytes_read=sum(self._read.values()),
                input_bytes=self._input_bytes,
                packets_done=sum(r.packets for r in self._results),
                finished=result,
            )
        )

    def results(self) -> list[ShardResult]:
        return sorted(self._results, key=lambda r: (r.group, r.bucket))


def _collect(
    executor: Executor, specs: Sequence[ShardSpec], tally: _Tally, inline: bool, directory: str
) -> list[ShardResult]:
    """Run every shard; the first failure cancels the rest and raises ``ShardError``.  A remote
    shard's spool goes to ``directory`` as soon as it arrives, so the parent holds at most one
    shard's records in memory, however many shards the cluster ran."""
    report = tally.reading if inline and tally.wanted else None
    futures: dict[Future[ShardResult], int] = {
        executor.submit(run_shard, spec, report): i for i, spec in enumerate(specs)
    }
    try:
        for future in as_completed(futures):
            tally.finished(_on_disk(_result(future, specs[futures[future]]), directory))
    except BaseException:
        for pending in futures:
            pending.cancel()
        raise
    return tally.results()


def _result(future: Future[ShardResult], spec: ShardSpec) -> ShardResult:
    try:
        return future.result()
    except WireprobeError:
        raise
    except BrokenProcessPool:
        raise ShardError(
            f"{_describe(spec)}: its worker process died (out of memory, or killed)"
        ) from None
    except Exception as err:  # a bug, or a cluster worker lost: say which shard, in one line
        raise ShardError(f"{_describe(spec)} failed: {type(err).__name__}: {err}") from None


class _InlineExecutor(Executor):
    """Runs each shard in this process when submitted: ``--jobs 1``, and tests that check
    the sharded path without paying for processes."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        future: Future[_T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # delivered through the future, as a pool would
            future.set_exception(err)
        return future


def inline_executor() -> Executor:
    """An executor that runs every shard in this process, one after the other."""
    return _InlineExecutor()


def _captures(results: Sequence[ShardResult], groups: Sequence[InputGroup]) -> list[Record]:
    out: list[Record] = []
    for result in results:
        if result.bucket != 0:
            continue
        given = groups[result.group].paths
        records = [{**r, "path": path} for r, path in zip(result.captures, given, strict=True)]
        apart = groups[result.group].apart
        if apart is not None and records:
            first = records[0]
            anomalies = [*first["anomalies"], {"name": SEPARATE_CAPTURE, "count": 1}]
            first["anomalies"] = sorted(anomalies, key=lambda a: a["name"])
        out += records
    return out


def _on_disk(result: ShardResult, directory: str) -> ShardResult:
    if not isinstance(result.spool, PackedSpool):
        return result
    files = unpack(result.spool, directory, f"g{result.group}b{result.bucket}")
    return replace(result, spool=files)


#: Budget figures that add across shards (each connection lives in exactly one shard); the
#: others (the bound, the peak of open connections, the capture clock's jumps, which every shard
#: whose packets straddle a jump sees) take the largest shard's value.
_ADDITIVE_BUDGET = frozenset({"evicted_connections", "half_open_timeouts"})


def _merge_budgets(tables: Sequence[dict[str, int] | None]) -> dict[str, int] | None:
    present = [t for t in tables if t]
    if not present:
        return None
    merged: dict[str, int] = {}
    for table in present:
        for name, value in table.items():
            if name in _ADDITIVE_BUDGET:
                merged[name] = merged.get(name, 0) + value
            else:
                merged[name] = max(merged.get(name, value), value)
    return merged


def merge_results(
    results: Sequence[ShardResult],
    groups: Sequence[InputGroup],
    on_record: OnRecord | None,
) -> Analysis:
    """One ``Analysis`` from every shard's: totals add, records stream in canonical order."""
    result = Analysis()
    skipped: Counter[str] = Counter()
    for r in results:
        result.packets += r.packets
        result.tcp_packets += r.tcp_packets
        skipped.update(r.skipped)
        if r.dropped is not None:
            result.dropped = result.dropped or Dropped(r.dropped.expression)
            result.dropped.merge(r.dropped)
    result.skipped = dict(sorted(skipped.items()))
    result.connection_table = _merge_budgets([r.connection_table for r in results])
    result.captures = _captures(results, groups)
    summary = Summary()
    spools = [r.spool for r in results if isinstance(r.spool, SpoolFiles)]
    for record, messages in merge(spools):
        summary.add(record)
        result.connections += 1
        result.messages += record["messages"] or 0
        watched = summary.watch(record, messages)
        if on_record is not None:
            on_record(record, watched)
        if watched is not messages:  # the summary pairs these across connections: read them all
            for _ in watched:
                pass
        # Other messages left unread cost nothing: they are read from the spool only when asked.
    result.summary = summary.as_dict()
    return result


def analyze_sharded(
    groups: Sequence[InputGroup],
    options: AnalyzeOptions | None = None,
    *,
    buckets: int,
    executor: Executor | None = None,
    remote: bool = False,
    on_record: OnRecord | None = None,
    on_progress: OnProgress | None = None,
    reports: Any = None,
) -> Analysis:
    """Analyse ``groups`` as ``buckets`` shards each on ``executor`` (None: in this process).

    ``remote``: the workers may not share this machine's disk, so spools come back as bytes.
    ``reports``: the queue a local pool's workers report their reading to (``local_executor``).
    """
    options = options or AnalyzeOptions()
    executor = executor or inline_executor()
    with tempfile.TemporaryDirectory(prefix="wireprobe-spool-") as directory:
        specs = plan(groups, max(1, buckets), options, None if remote else directory)
        tally = _Tally(specs, on_progress)
        listener = _listen(reports, tally) if reports is not None and on_progress else None
        try:
            inline = isinstance(executor, _InlineExecutor)
            results = _collect(executor, specs, tally, inline, directory)
        finally:
            if listener is not None:
                reports.put(None)
                listener.join()
        return merge_results(results, groups, on_record)


def _listen(reports: Any, tally: _Tally) -> threading.Thread:
    """A thread that hands the workers' reading reports to ``tally`` until a None arrives."""

    def run() -> None:
        while (report := reports.get()) is not None:
            tally.reading(report)

    thread = threading.Thread(target=run, name="wireprobe-progress", daemon=True)
    thread.start()
    return thread


def local_executor(jobs: int, reports: bool = False) -> tuple[Executor, Any]:
    """A pool of ``jobs`` worker processes (``0``: one per core this process may use), and the
    queue its workers report their reading to (``reports``; else None)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Forked workers start with analyzer already imported (0.2 s each otherwise, measured with
    # python -X importtime); where fork does not exist, the platform's default.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    queue = context.Queue() if reports else None
    pool = ProcessPoolExecutor(
        max_workers=jobs or cpu_count(),
        mp_context=context,
        initializer=_report_to,
        initargs=(queue,),
    )
    return pool, queue


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


__all__ = [
    "ShardError",
    "ShardProgress",
    "ShardResult",
    "ShardSpec",
    "analyze_inputs",
    "analyze_sharded",
    "cpu_count",
    "inline_executor",
    "local_executor",
    "merge_results",
    "plan",
    "run_shard",
]


# -- the run as the CLI asks for it -----------------------------------------------------------

#: Seconds to wait for a Dask scheduler to answer before saying it cannot be reached.
CLUSTER_CONNECT_TIMEOUT_S = 10.0

OnWarning = Callable[[str], None]


def _survey(path: str) -> FileSurvey:
    """``inputs.survey`` with its error made to survive the trip back from a worker."""
    try:
        return survey(path)
    except WireprobeError as err:
        raise ShardError(str(err)) from None


def _groups(
    paths: Sequence[str], executor: Executor, on_warning: OnWarning | None
) -> list[InputGroup]:
    if len(paths) == 1 or STDIN_PATH in paths:
        return single(paths)
    # Absolute paths for a worker in another directory; the surveys keep the paths as given.
    futures = [executor.submit(_survey, os.path.abspath(p)) for p in paths]
    groups = group([replace(f.result(), path=p) for f, p in zip(futures, paths, strict=True)])
    if on_warning is not None:
        for g in groups:
            if g.apart is not None:
                on_warning(f"{g.apart}: analysed as a separate capture")
    return groups


def _cluster(address: str) -> tuple[Executor, int, Callable[[bool], None]]:
    """The executor of a Dask cluster, its worker threads, and how to let both go."""
    try:
        # Imported by name: the optional extra wireprobe[cluster], and an untyped library.
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise UsageError(
            "--cluster needs Dask's distributed package: pip install 'wireprobe[cluster]'"
        ) from None
    try:
        client = distributed.Client(address, timeout=CLUSTER_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as err:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    threads = sum(client.nthreads().values())
    executor: Executor = client.get_executor()

    def release(finished: bool) -> None:
        executor.shutdown(wait=False)  # on a failure its futures were cancelled already
        client.close()

    return executor, max(1, threads), release


def _pool(executor: Executor) -> Callable[[bool], None]:
    def release(finished: bool) -> None:
        if not finished:
            # A shard failed (or Ctrl-C): the others' results would be thrown away, so stop
            # their workers now rather than wait for them to read the rest of the input.
            processes: dict[int, Any] = getattr(executor, "_processes", None) or {}
            for process in list(processes.values()):
                process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)

    return release


def analyze_inputs(
    args: Sequence[str],
    options: AnalyzeOptions,
    *,
    jobs: int | None = None,
    cluster: str | None = None,
    on_record: OnRecord | None = None,
    on_progress: OnProgress | None = None,
    on_warning: OnWarning | None = None,
) -> Analysis:
    """``wireprobe analyze ARGS``: files, directories and globs, in one process (``jobs`` None:
    today's path, records in the order connections finish) or sharded (``--jobs N``,
    ``--cluster``: records in the canonical order, the same for every N)."""
    paths = expand(args)
    if jobs is None and cluster is None:
        groups = _groups(paths, inline_executor(), on_warning)
        if len(groups) == 1:
            return analyze(groups[0].paths, options, on_record=on_record)
        return analyze_sharded(groups, options, buckets=1, on_record=on_record)
    if jobs is not None and jobs < 0:
        raise UsageError(f"--jobs wants 0 (every core) or more, not {jobs}")
    if STDIN_PATH in paths:
        raise UsageError("--jobs and --cluster read the input once per shard: name files, not '-'")
    # Headers checked here first, so that a bad path is said plainly, before any worker starts.
    CaptureSet(paths).close()
    reports: Any = None  # only a local pool's workers report while they read
    if cluster is not None:
        executor, threads, release = _cluster(cluster)
        buckets, remote = jobs or threads, True
    else:
        buckets, remote = jobs or cpu_count(), False
        if buckets == 1:
            executor = inline_executor()
        else:
            executor, reports = local_executor(buckets, reports=on_progress is not None)
        release = _pool(executor)
    finished = False
    try:
        groups = _groups(paths, executor, on_warning)
        result = analyze_sharded(
            groups,
            options,
            buckets=buckets,
            executor=executor,
            remote=remote,
            on_record=on_record,
            on_progress=on_progress,
            reports=reports,
        )
        finished = True
        return result
    finally:
        release(finished)
