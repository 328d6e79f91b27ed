"""data_prep.parallel: results in task order, a worker's error raised in the parent, and the
pool shut down by joining whichever way the caller stops (multiprocessing.Pool's terminate()
hung on a full disk: 2 runs in 30 with 25 workers)."""
import multiprocessing
import os

import pytest

from data_prep import parallel


def _square(x):
    return x * x


def _fail_at_seven(x):
    if x == 7:
        raise OSError(28, "No space left on device")
    return x


def _pid(_):
    return os.getpid()


def test_results_come_in_task_order_from_several_processes():
    tasks = list(range(500))
    assert list(parallel.imap(_square, tasks, workers=3, chunk=7)) == [x * x for x in tasks]
    assert len(set(parallel.imap(_pid, range(200), workers=3, chunk=1))) > 1
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("attempt", range(5))
def test_a_workers_error_reaches_the_parent_and_every_worker_is_joined(attempt):
    with pytest.raises(OSError) as caught:
        list(parallel.imap(_fail_at_seven, range(3000), workers=25, chunk=1))
    assert caught.value.errno == 28
    assert multiprocessing.active_children() == []


def test_a_consumer_that_stops_early_shuts_the_pool_down():
    results = parallel.imap(_square, range(100_000), workers=4, chunk=2)
    assert [next(results) for _ in range(3)] == [0, 1, 4]
    results.close()
    assert multiprocessing.active_children() == []
