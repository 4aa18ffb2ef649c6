"""The frames a slot's receiving process writes into its pipe, read back by ``FrameReader``: whole
whatever way the bytes arrive, an ``E`` frame as the error it names, the end of the pipe as EOF."""

from __future__ import annotations

import contextlib
import json
import os
import select
import threading
import time
from collections.abc import Iterator

import pytest

from cdc.errors import AuthError, SourceError
from cdc.source import receiver
from cdc.source.receiver import ERROR, HEADER, MESSAGES, ONE, POSITION, FrameReader

IDLE_S = 0.05


class Pipe:
    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.frames = FrameReader(self.read_fd).frames(IDLE_S)

    def write(self, data: bytes) -> None:
        receiver._Out(self.write_fd, lambda: None).write(data)

    def close_writer(self) -> None:
        os.close(self.write_fd)
        self.write_fd = -1

    def complete(self) -> list[tuple[bytes, int, bytes]]:
        """Every frame that is complete in the pipe now (up to the idle position that follows)."""
        out: list[tuple[bytes, int, bytes]] = []
        for frame in self.frames:
            if frame == (POSITION, 0, b""):
                return out
            out.append(frame)
        raise AssertionError("the frames ended")


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.frames.close()
    for fd in (p.read_fd, p.write_fd):
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def frame(kind: bytes, lsn: int, data: bytes) -> bytes:
    return HEADER.pack(kind, len(data), lsn) + data


def error_frame(payload: object) -> bytes:
    return frame(ERROR, 0, json.dumps(payload).encode())


MESSAGE_A = (
    b'{"action":"B","xid":741,"lsn":"0/1A2B3C8","nextlsn":"0/1A2B4F0","timestamp":"2024-05-01 10:00:00+00"}'
)
MESSAGE_B = '{"action":"I","schema":"public","table":"t","lsn":"0/1A2B3D0","columns":[{"name":"v","value":"é \\"q\\""}]}'.encode()
MESSAGE_C = (
    b'{"action":"C","xid":741,"lsn":"0/1A2B3C8","nextlsn":"0/1A2B4F0","timestamp":"2024-05-01 10:00:00+00"}'
)


def test_frames_split_at_awkward_places_come_out_whole_with_their_lsns(pipe: Pipe) -> None:
    first = (MESSAGES, 0x1A2B3D0, MESSAGE_A + b"\n" + MESSAGE_B)
    second = (MESSAGES, 0x1A2B4F0, MESSAGE_C)
    third = (MESSAGES, (7 << 32) | 0x10, b"x" * 300)
    fourth = (POSITION, 0xFFFF_FFFF_FFFF_FFF0, b"")
    stream = b"".join(frame(*f) for f in (first, second, third, fourth))
    h = HEADER.size
    end1 = h + len(first[2])
    end2 = end1 + h + len(second[2])
    # inside the first header, inside the first data, right at the end of the first frame, one
    # byte into the second header, inside the third frame's data, one byte before the end
    cuts = [5, h + 17, end1, end1 + 1, end2 + h + 150, len(stream) - 1, len(stream)]
    got: list[list[tuple[bytes, int, bytes]]] = []
    previous = 0
    for cut in cuts:
        pipe.write(stream[previous:cut])
        previous = cut
        got.append(pipe.complete())
    # a frame comes out once its last byte is in, never before and never twice
    assert got == [[], [], [first], [], [second], [third], [fourth]]


def test_a_large_frame_written_in_odd_pieces_from_another_thread_comes_out_whole(pipe: Pipe) -> None:
    big = bytes(range(256)) * 4000 + b"\n" + b"tail"  # several times what a pipe holds
    frames = [(MESSAGES, 11, b"small"), (MESSAGES, 12, big), (ONE, 13, b"{\n}"), (MESSAGES, 14, b"last")]
    stream = b"".join(frame(*f) for f in frames)

    def write() -> None:
        pos, step = 0, 1
        while pos < len(stream):
            pipe.write(stream[pos : pos + step])
            pos += step
            step = step * 7 % 65_521 + 3  # 1, 10, 73, 514, ...: sizes that straddle every boundary

    writer = threading.Thread(target=write)
    writer.start()
    got: list[tuple[bytes, int, bytes]] = []
    for item in pipe.frames:
        if item != (POSITION, 0, b""):
            got.append(item)
        elif not writer.is_alive():
            break  # everything written has been read
        if len(got) == len(frames):
            break
    writer.join()
    assert got == frames


def test_a_message_with_a_newline_travels_alone_as_one_message(pipe: Pipe) -> None:
    message = b'{"action":"I","schema":"public",\n"table":"t","lsn":"0/10","columns":[]}'
    pipe.write(frame(ONE, 0x10, message) + frame(MESSAGES, 0x20, MESSAGE_A))
    assert pipe.complete() == [(ONE, 0x10, message), (MESSAGES, 0x20, MESSAGE_A)]


def test_nothing_written_for_the_idle_time_gives_a_position_without_lsn(pipe: Pipe) -> None:
    assert next(pipe.frames) == (POSITION, 0, b"")
    assert next(pipe.frames) == (POSITION, 0, b"")
    pipe.write(frame(POSITION, 0x30, b""))
    assert next(pipe.frames) == (POSITION, 0x30, b"")


def test_an_error_frame_raises_the_error_it_names_with_its_message(pipe: Pipe) -> None:
    message = 'PostgreSQL refused the login while opening the replication connection: FATAL:  password authentication failed for user "cdc"'
    pipe.write(frame(MESSAGES, 5, MESSAGE_A) + error_frame({"error": "AuthError", "message": message}))
    assert next(pipe.frames) == (MESSAGES, 5, MESSAGE_A)
    with pytest.raises(AuthError) as caught:
        next(pipe.frames)
    assert type(caught.value) is AuthError
    assert str(caught.value) == message


@pytest.mark.parametrize("name", ["NoSuchError", "annotations", "ValueError", "Exception"])
def test_an_error_frame_naming_no_pipeline_error_raises_source_error(pipe: Pipe, name: str) -> None:
    pipe.write(error_frame({"error": name, "message": 'replication slot "s" does not exist'}))
    with pytest.raises(SourceError) as caught:
        next(pipe.frames)
    assert type(caught.value) is SourceError
    assert str(caught.value) == 'replication slot "s" does not exist'


@pytest.mark.parametrize(
    "data",
    [
        b"not json at all",
        b'{"error": "AuthError"}',
        b'{"message": "no class"}',
        b'["AuthError", "a list"]',
        b'"just text"',
        b"",
    ],
)
def test_an_unreadable_error_frame_raises_source_error_saying_so(pipe: Pipe, data: bytes) -> None:
    pipe.write(frame(ERROR, 0, data))
    with pytest.raises(SourceError) as caught:
        next(pipe.frames)
    assert type(caught.value) is SourceError
    assert str(caught.value) == f"the slot's receiving process sent an unreadable error: {data!r}"


def test_the_pipe_closing_inside_a_frame_raises_eof_error(pipe: Pipe) -> None:
    whole = frame(MESSAGES, 1, MESSAGE_A)
    pipe.write(whole + frame(MESSAGES, 2, MESSAGE_B)[:20])
    assert pipe.complete() == [(MESSAGES, 1, MESSAGE_A)]
    pipe.close_writer()
    with pytest.raises(EOFError, match=r"^the pipe ended inside a frame \(20 bytes\)$"):
        next(pipe.frames)


@pytest.mark.parametrize("written", [1, 3, HEADER.size - 1, HEADER.size])
def test_the_pipe_closing_inside_a_header_raises_eof_error(pipe: Pipe, written: int) -> None:
    pipe.write(frame(MESSAGES, 1, MESSAGE_A)[:written])
    pipe.close_writer()
    with pytest.raises(EOFError, match=rf"^the pipe ended inside a frame \({written} bytes\)$"):
        next(pipe.frames)


def test_the_pipe_closing_between_frames_raises_eof_error_after_the_last_frame(pipe: Pipe) -> None:
    pipe.write(frame(MESSAGES, 1, MESSAGE_A) + frame(POSITION, 9, b""))
    pipe.close_writer()
    assert next(pipe.frames) == (MESSAGES, 1, MESSAGE_A)
    assert next(pipe.frames) == (POSITION, 9, b"")
    with pytest.raises(EOFError, match=r"^the pipe ended$"):
        next(pipe.frames)


def read_exactly(fd: int, n: int, timeout_s: float = 5.0) -> bytes:
    got = bytearray()
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            got += os.read(fd, n - len(got))
    return bytes(got)


def test_a_write_the_reader_is_slow_to_take_keeps_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receiver, "KEEPALIVE_EVERY_S", 0.05)
    read_fd, write_fd = os.pipe()
    waited = threading.Event()
    calls: list[float] = []
    out = receiver._Out(write_fd, lambda: (calls.append(1), waited.set()))
    data = bytes(range(256)) * 4096  # 1 MiB: more than the pipe holds
    writer = threading.Thread(target=out.write, args=(b"head", data, b"", b"tail"))
    writer.start()
    try:
        assert waited.wait(5)  # the pipe is full and nobody reads: the writer waits, asking meanwhile
        got = read_exactly(read_fd, len(data) + 8)
    finally:
        writer.join(5)
        os.close(read_fd)
        os.close(write_fd)
    assert not writer.is_alive() and got == b"head" + data + b"tail" and len(calls) >= 2


def test_every_frame_asks_and_an_error_of_asking_comes_after_the_whole_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(receiver, "KEEPALIVE_EVERY_S", 0.05)
    read_fd, write_fd = os.pipe()
    asked: list[int] = []
    try:
        out = receiver._Out(write_fd, lambda: asked.append(1))
        for _ in range(3):  # data that flows: each frame asks (the asker decides whether it is time)
            out.write(frame(MESSAGES, 5, b"m"))
        assert (
            asked == [1, 1, 1]
            and read_exactly(read_fd, 3 * (HEADER.size + 1)) == frame(MESSAGES, 5, b"m") * 3
        )

        def fail() -> None:
            raise SourceError("the connection broke")

        failing = receiver._Out(write_fd, fail)
        data = b"x" * (1 << 20)
        errors: list[BaseException] = []

        def write() -> None:
            try:
                failing.write(HEADER.pack(MESSAGES, len(data), 7), data)
            except SourceError as exc:
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.3)  # the pipe is full: the asker fails while the frame is half written
        got = read_exactly(read_fd, HEADER.size + len(data))
        writer.join(5)
        assert got == HEADER.pack(MESSAGES, len(data), 7) + data  # whole, then the error
        assert [str(e) for e in errors] == ["the connection broke"]
    finally:
        os.close(read_fd)
        os.close(write_fd)
