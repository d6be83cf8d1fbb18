"""Long steps report their progress: a log line with the rate where there is no terminal (a CI log, nohup)."""

import logging

from pneumolens.progress import progress


def test_without_a_terminal_progress_is_logged_with_its_rate(caplog):
    logger = logging.getLogger("pneumolens.test")
    with caplog.at_level(logging.INFO, logger="pneumolens.test"):
        batches = list(progress(range(0, 100, 32), 100, "Film features", per_item=32, logger=logger, every_s=0))
    assert batches == [0, 32, 64, 96]
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split(":")[1].split(" (")[0].strip() for line in lines] == \
        ["32 of 100 films", "64 of 100 films", "96 of 100 films", "100 of 100 films"]
    assert all("films/s" in line and "s left" in line for line in lines)


def test_lines_come_at_most_every_few_seconds_and_always_at_the_end(caplog):
    logger = logging.getLogger("pneumolens.test")
    with caplog.at_level(logging.INFO, logger="pneumolens.test"):
        list(progress(range(50), 50, "Stressed copies", unit="images", logger=logger, every_s=3600))
    assert [record.getMessage().split(" (")[0] for record in caplog.records] == ["Stressed copies: 50 of 50 images"]
