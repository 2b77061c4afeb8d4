"""The progress display's arithmetic: the run's real total, remaining time,
the long-run warning, H:MM:SS, and log lines off a terminal."""
import io

import pytest

from bioplaus import progress
from bioplaus.progress import Bar, RunClock, hms


def test_hms():
    assert hms(0) == "0:00:00" and hms(61.4) == "0:01:01" and hms(3600 * 25 + 5) == \
        "1 day 1:00:05"
    assert hms(86400 * 3) == "3 days 0:00:00" and hms(None) == "?" and hms(float("inf")) == "?"


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def fake_time(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(progress.time, "time", c)
    return c


def test_a_long_run_is_announced_in_days(fake_time):
    clock = RunClock(epochs=400, steps_per_epoch=469)
    lines = []
    for _ in range(5):
        fake_time.t += 3.0  # 5 steps within the first 20 s: estimated after the 5th
        clock.stepped()
        lines.append(clock.estimate_line())
    assert lines[:4] == [None] * 4 and clock.estimate_line() is None  # said once
    assert "3.00 s/step, 187,595 steps to go (469 per epoch, 400 epochs" in lines[4]
    assert "NOTE: this run will take about 6.5 days on this machine" in lines[4]
    assert clock.remaining(1) == pytest.approx(187595 * 3.0)
    slow = RunClock(epochs=400, steps_per_epoch=469)
    fake_time.t += 40.0  # a slow first step (start-up) is not the estimate
    slow.stepped()
    assert slow.estimate_line() is None
    fake_time.t += 10.0  # past 20 s: estimated after the second step, from it
    slow.stepped()
    assert slow.estimate_line().startswith("estimate from the first 2 steps: 10.00 s/step")


def test_max_steps_is_the_real_total(fake_time):
    clock = RunClock(epochs=400, steps_per_epoch=469, max_steps=3)
    assert clock.total_steps == 3 and clock.last_epoch == 1 and clock.steps_in_epoch(1) == 3
    clock = RunClock(epochs=3, steps_per_epoch=10, max_steps=25, step=12, wall_before=100.0)
    assert clock.last_epoch == 3 and clock.steps_in_epoch(2) == 10 and clock.steps_in_epoch(3) == 5
    fake_time.t += 2.0
    clock.stepped()
    fake_time.t += 1.0
    clock.stepped()
    clock.evaluated(4.0)
    assert clock.elapsed() == pytest.approx(103.0)
    assert clock.remaining(2) == pytest.approx(11 * 1.0 + 2 * 4.0)  # steps, this and the next eval


def test_off_a_terminal_a_line_at_every_tenth():
    s = io.StringIO()
    bar = Bar(20, "epoch 1/1", unit="step", stream=s)
    for _ in range(20):
        bar.update(1, "loss=1.0000")
    bar.close()
    lines = s.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in s.getvalue()
    assert lines[-1].startswith("epoch 1/1: 100%") and "20/20" in lines[-1]
    assert lines[-1].endswith("loss=1.0000")
