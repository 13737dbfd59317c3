"""ctr.units: the outputs every command printed before the six formatters became these three."""

from __future__ import annotations

import pytest

from ctr.units import binary_size, decimal_size, flag_size


@pytest.mark.parametrize(
    "n,text",
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (10240, "10.2kB"),
        (1_980_000, "1.98MB"),
        (123_456_789, "123MB"),
        (5 * 10**12, "5TB"),
    ],
)
def test_decimal_size_as_docker_images(n, text):
    assert decimal_size(n) == text


@pytest.mark.parametrize("n,text", [(512, "512B"), (1_900_000, "1.9MB"), (2_500_000_000, "2.5GB")])
def test_decimal_size_of_a_pull_progress(n, text):
    assert decimal_size(n, precision=".1f") == text


@pytest.mark.parametrize(
    "n,sep,text",
    [
        (0, "", "0B"),
        (1023, "", "1023B"),
        (4096, "", "4.0KiB"),
        (64 << 20, "", "64.0MiB"),
        (3 << 40, "", "3.0TiB"),
        (0, " ", "0 B"),
        (4096, " ", "4.0 KiB"),
        (1536 << 20, " ", "1.5 GiB"),
    ],
)
def test_binary_size(n, sep, text):
    assert binary_size(n, sep) == text


@pytest.mark.parametrize("n,text", [(64 << 20, "64m"), (1 << 30, "1g"), (1536, "1536b"), (4096, "4k"), (100, "100b")])
def test_flag_size(n, text):
    assert flag_size(n) == text
