"""kis.ws_frames: frames cut from received bytes, whole or not yet, and the frames a client must refuse."""

from __future__ import annotations

import struct

import pytest

from kis.ws_frames import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_CONTINUATION,
    OPCODE_PING,
    OPCODE_TEXT,
    Frame,
    FrameProtocolError,
    cut_frame,
)


def frame_bytes(
    opcode: int, payload: bytes, *, fin: bool = True, first_bits: int = 0, mask: bool = False
) -> bytes:
    """A frame as a server puts it on the wire (RFC 6455 5.2), the length in its shortest form."""
    first = (0x80 if fin else 0) | first_bits | opcode
    size = len(payload)
    masked = 0x80 if mask else 0
    if size < 126:
        head = bytes([first, masked | size])
    elif size < 65_536:
        head = bytes([first, masked | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first, masked | 127]) + struct.pack("!Q", size)
    return head + (b"\0\0\0\0" if mask else b"") + payload


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 200_000])
def test_a_frame_of_each_length_form_is_cut_whole_and_only_once_every_byte_is_there(size: int) -> None:
    payload = bytes(index % 251 for index in range(size))
    wire = b"xx" + frame_bytes(OPCODE_TEXT, payload)  # starts at an offset, as in a read-ahead buffer

    for end in (2, 3, 4, 9, 11, len(wire) - 1):
        if end < len(wire):
            assert cut_frame(wire[:end], 2) is None
    assert cut_frame(wire, 2) == (Frame(OPCODE_TEXT, True, payload), len(wire))


def test_frames_back_to_back_are_cut_one_after_another() -> None:
    wire = (frame_bytes(OPCODE_TEXT, b"first", fin=False) + frame_bytes(OPCODE_CONTINUATION, b"rest")
            + frame_bytes(OPCODE_PING, b"hb") + frame_bytes(OPCODE_BINARY, b"\x00\x01"))
    frames, offset = [], 0
    while (cut := cut_frame(wire, offset)) is not None:
        frame, offset = cut
        frames.append(frame)

    assert frames == [Frame(OPCODE_TEXT, False, b"first"), Frame(OPCODE_CONTINUATION, True, b"rest"),
                      Frame(OPCODE_PING, True, b"hb"), Frame(OPCODE_BINARY, True, b"\x00\x01")]
    assert offset == len(wire)


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (frame_bytes(OPCODE_TEXT, b"x", first_bits=0x40), "reserved bits set"),
        (frame_bytes(OPCODE_TEXT, b"x", mask=True), "masked frame from the server"),
        (frame_bytes(0x3, b"x"), "unknown opcode 0x3"),
        (frame_bytes(OPCODE_PING, b"x", fin=False), "fragmented or over 125 bytes"),
        (frame_bytes(OPCODE_CLOSE, b"x" * 126), "fragmented or over 125 bytes"),
    ],
)
def test_a_frame_a_client_must_not_accept_is_refused_before_its_payload_arrives(
    wire: bytes, message: str
) -> None:
    with pytest.raises(FrameProtocolError, match=message):
        cut_frame(wire[:4], 0)
