"""The throughput section's arithmetic: apps measured as several servers."""

import pytest

from bench.run import Measured, _halves, _throughput


def turn(bare: tuple[float, float], app: tuple[float, float]) -> list[Measured]:
    # Two servers of each app; pids stand for the servers.
    return [
        Measured("bare", 0, 1, bare[0], 1 / bare[0]),
        Measured("bare", 1, 2, bare[1], 1 / bare[1]),
        Measured("protected", 0, 3, app[0], 1 / app[0]),
        Measured("protected", 1, 4, app[1], 1 / app[1]),
    ]


def test_an_app_is_the_mean_of_its_servers_turn_by_turn() -> None:
    turns = [
        turn((100, 100), (80, 100)),  # 90 ÷ 100
        turn((200, 200), (200, 180)),  # 190 ÷ 200
        turn((100, 300), (150, 170)),  # 160 ÷ 200
    ]

    figures = _throughput(turns, "protected")

    assert figures.ratio == pytest.approx(0.9)
    assert (figures.low, figures.high) == pytest.approx((0.8, 0.95))
    assert figures.rate == 160
    # Each server against the mean of the bare servers, median over turns:
    # the first 0.8, 1.0, 0.75; the second 1.0, 0.9, 0.85.
    assert (figures.own_low, figures.own_high) == pytest.approx((0.8, 0.9))


def test_a_bare_server_is_compared_with_the_other_bare_servers() -> None:
    turns = [turn((100, 80), (1, 1)), turn((100, 80), (1, 1))]

    figures = _throughput(turns, "bare")

    assert figures.ratio == 1
    assert (figures.own_low, figures.own_high) == pytest.approx((0.8, 1.25))
    assert [_halves(measured) for measured in turns] == [1.25, 1.25]
    # The order a turn ran its servers in does not change which is first.
    assert _halves(turns[0][::-1]) == 1.25
