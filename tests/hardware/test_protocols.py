"""Servo protocol packets: checksums and CRCs against published examples, stuffing, framing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.buses import dynamixel, feetech
from hardware.buses.base import FrameError, Register


def test_feetech_packets_match_the_documented_bytes() -> None:
    # ping servo 1: checksum ~(1 + 2 + 1) = 0xFB
    assert feetech.FRAMING.encode(1, 0x01, b"") == bytes.fromhex("FF FF 01 02 01 FB")
    # read 2 bytes at 56 (Present_Position) of servo 1
    assert feetech.FRAMING.encode(1, 0x02, bytes([56, 2])) == bytes.fromhex(
        "FF FF 01 04 02 38 02 BE"
    )


def test_dynamixel_crc_matches_the_documented_examples() -> None:
    # the Protocol 2.0 ping of ID 1, CRC 0x4E19 sent low byte first
    assert dynamixel.FRAMING.encode(1, 0x01, b"") == bytes.fromhex("FF FF FD 00 01 03 00 01 19 4E")
    # a write of 4 bytes at address 112 (0x70) of ID 3: CRC 0x21FF
    body = bytes.fromhex("FF FF FD 00 03 09 00 03 70 00 AA 00 00 00")
    assert dynamixel.crc16(body) == 0x21FF
    assert dynamixel.FRAMING.encode(3, 0x03, bytes.fromhex("70 00 AA 00 00 00"))[-2:] == b"\xff\x21"


def test_dynamixel_byte_stuffing() -> None:
    assert dynamixel.stuff(bytes.fromhex("FF FF FF FF FD 01")) == bytes.fromhex(
        "FF FF FF FF FD FD 01"
    )
    assert dynamixel.unstuff(bytes.fromhex("FF FF FD FD FD")) == bytes.fromhex("FF FF FD FD")
    packet = dynamixel.FRAMING.encode(1, 0x03, bytes.fromhex("74 00 FF FF FD 00"))
    assert packet[5:7] == (3 + 7).to_bytes(2, "little")  # the stuffed byte is counted
    assert dynamixel.FRAMING.decode(packet).params == bytes.fromhex("74 00 FF FF FD 00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_stuffing_round_trips_and_hides_the_header(payload: bytes) -> None:
    stuffed = dynamixel.stuff(payload)
    assert dynamixel.unstuff(stuffed) == payload
    assert dynamixel.FRAMING.header not in stuffed


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([feetech.FRAMING, dynamixel.FRAMING]),
    st.integers(0, 252),
    st.integers(0, 255),
    st.binary(max_size=40),
    st.binary(max_size=8),
)
def test_frames_round_trip_through_garbage(framing, servo_id, code, params, garbage) -> None:
    frame = framing.encode(servo_id, code, params)
    packet = framing.decode(frame)
    assert (packet.servo_id, packet.code, packet.params) == (servo_id, code, params)
    buf = bytearray(garbage + frame + frame[:3])
    assert framing.extract(buf) == frame or framing.header in garbage
    corrupt = bytearray(frame)
    corrupt[-1] ^= 0x01
    with pytest.raises(FrameError):
        framing.decode(bytes(corrupt))


def test_registers_encode_little_endian_and_refuse_overflow() -> None:
    position = Register("Present_Position", 132, 4, signed=True)
    assert (
        position.encode(-2) == bytes.fromhex("FE FF FF FF")
        and position.decode(b"\xfe\xff\xff\xff") == -2
    )
    assert feetech.STS3215.goal_position.encode(2048) == bytes.fromhex("00 08")
    with pytest.raises(ValueError, match="does not fit"):
        feetech.STS3215.goal_position.encode(70000)
