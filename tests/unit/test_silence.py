"""``cdc.source.ping.Silence``: when a waiting reader takes its connection for lost."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from cdc.errors import SourceUnavailable
from cdc.source.ping import Silence


class Cursor:
    """A replication cursor's ``io_timestamp``: moved by hand here, by psycopg2 at each message read."""

    def __init__(self) -> None:
        self.io_timestamp = datetime(2026, 1, 1, 12, 0, 0)

    def receive(self) -> None:
        self.io_timestamp = datetime.fromtimestamp(self.io_timestamp.timestamp() + 1)


def test_silence_up_to_the_limit_passes_and_past_it_raises() -> None:
    cursor = Cursor()
    silence = Silence(cursor, 10)
    start = time.monotonic()
    silence.check(start + 9.9)
    with pytest.raises(SourceUnavailable, match=r"sent nothing for 10 s.*read again from the checkpoint"):
        silence.check(start + 10.1)


def test_anything_received_restarts_the_count() -> None:
    cursor = Cursor()
    silence = Silence(cursor, 10)
    start = time.monotonic()
    silence.check(start + 8)
    cursor.receive()
    silence.check(start + 16)  # received at 16, as far as the reader can tell
    silence.check(start + 25)
    with pytest.raises(SourceUnavailable, match="sent nothing for 10 s"):
        silence.check(start + 26.5)


def test_time_spent_on_messages_is_not_silence() -> None:
    cursor = Cursor()
    silence = Silence(cursor, 10)
    time.sleep(0.05)
    silence.heard()  # the reader was busy with messages until now
    now = time.monotonic()
    silence.check(now + 9.9)
    with pytest.raises(SourceUnavailable):
        silence.check(now + 10.1)


def test_a_reader_that_cannot_ask_never_takes_silence_for_a_loss() -> None:
    silence = Silence(Cursor(), 10, able=False)
    silence.check(time.monotonic() + 3600)
