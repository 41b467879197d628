"""Device matching and level checks of the PortAudio engine (no audio server needed)."""

from __future__ import annotations

import numpy as np
import pytest

from ampcap.capture.audio import DeviceInfo, check_level, find_device
from ampcap.errors import CaptureError, DeviceError

DEVICES = [
    DeviceInfo(0, "system", "JACK Audio Connection Kit", 2, 2, 48000.0),
    DeviceInfo(1, "ampcap-virtual-amp", "JACK Audio Connection Kit", 2, 2, 48000.0),
    DeviceInfo(2, "ampcap-virtual-amp-2", "JACK Audio Connection Kit", 2, 2, 48000.0),
    DeviceInfo(3, "UltraLite-mk3 Hybrid: USB Audio (hw:1,0)", "ALSA", 10, 14, 44100.0),
    DeviceInfo(4, "UltraLite-mk3 Hybrid", "JACK Audio Connection Kit", 10, 14, 44100.0),
]


def test_substring_is_case_insensitive() -> None:
    assert find_device("usb audio", devices=DEVICES).index == 3


def test_exact_name_wins_over_longer_names_containing_it() -> None:
    assert find_device("ampcap-virtual-amp", devices=DEVICES).index == 1


def test_host_api_substring_disambiguates() -> None:
    assert find_device("UltraLite", host_api="jack", devices=DEVICES).index == 4
    assert find_device("UltraLite", host_api="ALSA", devices=DEVICES).index == 3


def test_ambiguous_match_lists_every_candidate_with_host_api_and_channels() -> None:
    with pytest.raises(DeviceError) as caught:
        find_device("UltraLite", devices=DEVICES)
    message = str(caught.value)
    assert "matches 2 audio devices" in message
    assert "[3] UltraLite-mk3 Hybrid: USB Audio (hw:1,0) (ALSA, 10 in/14 out)" in message
    assert "[4] UltraLite-mk3 Hybrid (JACK Audio Connection Kit, 10 in/14 out)" in message
    assert "[0] system" not in message


def test_missing_device_lists_all_devices() -> None:
    with pytest.raises(DeviceError) as caught:
        find_device("Scarlett", devices=DEVICES)
    message = str(caught.value)
    assert "No audio device matches 'Scarlett'" in message
    for device in DEVICES:
        assert device.describe() in message


def test_missing_device_on_host_api_says_so() -> None:
    with pytest.raises(DeviceError, match="on a host API matching 'ASIO'"):
        find_device("UltraLite", host_api="ASIO", devices=DEVICES)


def test_no_devices_at_all_hints_at_the_server() -> None:
    with pytest.raises(DeviceError, match="PortAudio reports no devices at all"):
        find_device("system", devices=[])


def test_level_at_the_limit_passes_and_returns_the_peak() -> None:
    program = np.zeros(1000, dtype=np.float32)
    program[10] = 10 ** (-6 / 20)
    assert check_level(program, -6.0) == pytest.approx(-6.0, abs=1e-5)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_level_above_the_limit_is_refused_naming_both_levels(sign: float) -> None:
    program = np.zeros(3_000_000, dtype=np.float32)  # more than one chunk of the peak scan
    program[2_500_000] = sign * 10 ** (-3 / 20)
    with pytest.raises(CaptureError) as caught:
        check_level(program, -6.0)
    assert "-3.00 dBFS" in str(caught.value)
    assert "-6 dBFS" in str(caught.value)
    assert "nothing was played" in str(caught.value)
