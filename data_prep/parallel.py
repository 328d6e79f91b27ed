"""Owns running one function over many tasks in worker processes, with a clean stop on failure.

multiprocessing.Pool is not used: on an exception its `with` block calls terminate(), and that
can hang for ever (its task feeder thread waits on a queue lock while the workers it would
need are being killed; the synthetic generator on a full disk hung that way in 2 runs of 30
with 25 workers). Here tasks go in chunks through a ProcessPoolExecutor, a bounded window at a
time, and whatever way the caller stops (an error in a worker, an error while consuming,
Ctrl-C, closing the generator) the chunks not started are cancelled and the running ones
finish: the pool always ends by joining its workers, never by killing them.

Workers are forked, not spawned, so callers need no `if __name__ == "__main__"` guard and
workers start at once; they ignore Ctrl-C, which is the parent's to handle. OpenCV gets one
thread per worker (the processes are the parallelism), set in the parent before forking:
cv2.setNumThreads in a child forked after the parent used OpenCV's thread pool deadlocks.
"""
from collections import deque
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
import os
import signal

import cv2


def available_cores():
    return len(os.sched_getaffinity(0))  # respects taskset and CPU-limited containers


def _start_worker(initializer, initargs):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def _run_chunk(fn, chunk):
    return [fn(task) for task in chunk]


def imap(fn, tasks, workers, chunk=1, window=4, initializer=None, initargs=()):
    """Yield fn(task) for every task, in task order, computed by `workers` forked processes.

    Tasks travel `chunk` at a time (fewer round trips) and at most `window` chunks per worker
    are queued or finished-but-unconsumed, so a slow consumer never lets every result pile up
    in memory. fn, initializer and the tasks must be picklable (module-level functions).
    An exception raised by fn is raised here, after the pool has shut down cleanly."""
    tasks = list(tasks)
    chunks = [tasks[i:i + chunk] for i in range(0, len(tasks), max(1, int(chunk)))]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    pool = ProcessPoolExecutor(max_workers=max(1, int(workers)), mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker, initargs=(initializer, initargs))
    pending = deque()
    try:
        for part in chunks:
            pending.append(pool.submit(_run_chunk, fn, part))
            if len(pending) >= window * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        cv2.setNumThreads(threads)
