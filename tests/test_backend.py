import os

import numpy as np
import pytest

from bioplaus import backend
from bioplaus.fast import threads


def test_stream_is_keyed_and_reproducible():
    a = backend.stream(1, "fa.B", 0).standard_normal(5)
    b = backend.stream(1, "fa.B", 0).standard_normal(5)
    c = backend.stream(1, "fa.B", 1).standard_normal(5)
    d = backend.stream(1, "label.P", 0).standard_normal(5)
    e = backend.stream(2, "fa.B", 0).standard_normal(5)
    np.testing.assert_array_equal(a, b)
    for other in (c, d, e):
        assert not np.allclose(a, other)


def test_uniform_bound_dtype_and_parity(xp):
    u = backend.uniform(xp, 3, "P", 2, (64, 10), 0.25, dtype=np.float64)
    assert u.dtype == np.float64 and u.shape == (64, 10)
    host = backend.to_numpy(u)
    assert np.abs(host).max() <= 0.25
    np.testing.assert_array_equal(host, backend.to_numpy(backend.uniform(np, 3, "P", 2, (64, 10), 0.25, np.float64)))
    assert backend.array_module(u) is xp


def test_unknown_device_and_negative_seed_are_refused():
    with pytest.raises(backend.BackendError, match="unknown device 'tpu'"):
        backend.get_xp("tpu")
    with pytest.raises(ValueError, match="non-negative"):
        backend.stream(-1, "x")


def test_gpu_request_without_gpu_is_an_error_not_a_fallback():
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(backend.BackendError, match="--device"):
        backend.get_xp("gpu")


def test_generator_state_roundtrip():
    g = backend.stream(0, "data.shuffle")
    g.random(3)
    st = backend.generator_state(g)
    x = g.random(4)
    backend.set_generator_state(g, st)
    np.testing.assert_array_equal(g.random(4), x)


def test_host_threads_follow_the_environment(monkeypatch):
    for var in threads.THREAD_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert threads.host_threads() == 1
    monkeypatch.setenv("BIOPLAUS_NUM_THREADS", "3")  # bioplaus's own variable comes first
    assert threads.host_threads() == 3
    with threads.one_host_thread():
        assert threads.host_threads() == 1
    assert threads.host_threads() == 3
    monkeypatch.setenv("BIOPLAUS_NUM_THREADS", "two")
    with pytest.raises(backend.BackendError, match="BIOPLAUS_NUM_THREADS='two'"):
        threads.host_threads()
    monkeypatch.setenv("BIOPLAUS_NUM_THREADS", "0")
    with pytest.raises(backend.BackendError, match="at least 1"):
        threads.host_threads()


@pytest.mark.parametrize("n_threads", ["1", "2", "4"])
def test_run_shared_runs_every_job_once_and_raises_what_a_job_raised(monkeypatch, n_threads):
    import threading

    monkeypatch.setenv("BIOPLAUS_NUM_THREADS", n_threads)
    done, names, lock = [], set(), threading.Lock()

    def job(k):
        with lock:
            done.append(k)
            names.add(threading.current_thread().name)

    threads.run_shared([lambda k=k: job(k) for k in range(200)])
    assert sorted(done) == list(range(200))
    if n_threads == "1":
        assert names == {threading.current_thread().name}  # all on the calling thread, in order
        assert done == list(range(200))

    def bad():
        raise ZeroDivisionError("job 7")

    done.clear()
    jobs = [lambda k=k: job(k) for k in range(20)]
    jobs[7] = bad
    with pytest.raises(ZeroDivisionError, match="job 7"):
        threads.run_shared(jobs)
    assert 7 not in done and len(set(done)) == len(done)  # jobs after it may be left undone


@pytest.mark.parametrize("n_threads", ["1", "3"])
def test_channel_groups_cover_every_channel_once_in_groups_set_by_the_shape(monkeypatch,
                                                                          n_threads):
    import threading

    monkeypatch.setenv("BIOPLAUS_NUM_THREADS", n_threads)
    seen, lock = [], threading.Lock()

    def fn(s):
        with lock:
            seen.append((s.start, s.stop))

    threads.channel_groups(fn, 10, per_channel=100, group_values=350)  # 3 channels a group
    assert sorted(seen) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    seen.clear()
    threads.channel_groups(fn, 4, per_channel=1000, group_values=10)  # at least one channel
    assert sorted(seen) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    seen.clear()
    threads.channel_groups(fn, 10, per_channel=1, group_values=1, on_host=False)  # CuPy: one call
    assert seen == [(0, 10)]


def test_run_shared_inside_a_job_does_not_wait_for_a_busy_thread(monkeypatch):
    monkeypatch.setenv("BIOPLAUS_NUM_THREADS", "2")  # one helper: nested calls find it busy
    out = []
    threads.run_shared([lambda i=i: threads.run_shared([lambda i=i, j=j: out.append((i, j))
                                                         for j in range(5)])
                        for i in range(6)])
    assert sorted(out) == [(i, j) for i in range(6) for j in range(5)]


def test_the_command_line_sets_the_blas_thread_timeout_before_numpy_loads():
    import subprocess
    import sys

    # record the variable at the moment numpy is first imported
    probe = (
        "import os, sys\n"
        "seen = []\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numpy' and not seen:\n"
        "            seen.append(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))\n"
        "sys.meta_path.insert(0, Hook())\n"
        "import bioplaus.cli\n"
        "print(seen[0])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["22"]
    out = subprocess.run([sys.executable, "-c", probe], env={**env, "OPENBLAS_THREAD_TIMEOUT": "9"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["9"]  # a value the user chose is kept
