"""KeyLog: NSS SSLKEYLOGFILE text in, secrets by (label, client random) out, nothing leaked."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.errors import UsageError
from analyzer.tls.keylog import LABELS, KeyLog

WIRESHARK = Path(__file__).resolve().parents[1] / "captures" / "public" / "wireshark"
SCAPY = Path(__file__).resolve().parents[1] / "captures" / "public" / "scapy"

RANDOM_A = bytes(range(32))
RANDOM_B = bytes(range(32, 64))
MASTER = bytes(range(100, 148))  # 48 bytes
SECRET_32 = bytes(range(200, 232))
SECRET_48 = bytes(range(150, 198))


def line(label: str, random: bytes, secret: bytes) -> str:
    return f"{label} {random.hex()} {secret.hex()}"


def test_a_client_random_line_gives_the_master_secret() -> None:
    keys = KeyLog()
    assert keys.add_text(line("CLIENT_RANDOM", RANDOM_A, MASTER) + "\n") == 1
    assert keys.secret("CLIENT_RANDOM", RANDOM_A) == MASTER
    assert keys.secret("CLIENT_RANDOM", RANDOM_B) is None
    assert keys.secret("CLIENT_TRAFFIC_SECRET_0", RANDOM_A) is None
    assert len(keys) == 1


def test_every_tls13_label_is_kept_with_sha256_or_sha384_lengths() -> None:
    keys = KeyLog()
    tls13 = [label for label in LABELS if label != "CLIENT_RANDOM"]
    text = "\n".join(line(label, RANDOM_A, SECRET_32) for label in tls13)
    text += "\n" + line("SERVER_TRAFFIC_SECRET_0", RANDOM_B, SECRET_48)
    assert keys.add_text(text) == len(tls13) + 1
    assert all(keys.secret(label, RANDOM_A) == SECRET_32 for label in tls13)
    assert keys.secret("SERVER_TRAFFIC_SECRET_0", RANDOM_B) == SECRET_48
    assert len(tls13) == 7


def test_comments_blank_lines_crlf_upper_case_and_no_final_newline_are_tolerated() -> None:
    keys = KeyLog()
    text = (
        "# written by a browser\r\n"
        "\r\n"
        f"   {line('CLIENT_RANDOM', RANDOM_A, MASTER).upper()}  \r\n"
        "\t\r\n"
        f"CLIENT_RANDOM {RANDOM_B.hex().upper()} {MASTER.hex()}"
    )
    assert keys.add_text(text) == 2
    assert keys.secret("CLIENT_RANDOM", RANDOM_A) == MASTER
    assert keys.secret("CLIENT_RANDOM", RANDOM_B) == MASTER
    assert (keys.skipped, keys.ignored) == (0, 0)


def test_unknown_labels_and_legacy_rsa_lines_are_ignored_not_counted_as_malformed() -> None:
    keys = KeyLog()
    text = "\n".join(
        [
            "RSA 0123456789abcdef 0303" + "ab" * 46,
            "RSA Session-ID:" + "ab" * 32 + " Master-Key:" + "cd" * 48,
            line("SOME_FUTURE_SECRET", RANDOM_A, SECRET_32),
            line("CLIENT_RANDOM", RANDOM_A, MASTER),
        ]
    )
    assert keys.add_text(text) == 1
    assert (len(keys), keys.ignored, keys.skipped) == (1, 3, 0)


@pytest.mark.parametrize(
    "bad",
    [
        "CLIENT_RANDOM " + "ab" * 32,  # no secret
        line("CLIENT_RANDOM", RANDOM_A, MASTER) + " extra",  # a fourth field
        line("CLIENT_RANDOM", RANDOM_A[:31], MASTER),  # client random of 31 bytes
        line("CLIENT_RANDOM", RANDOM_A, MASTER[:47]),  # master secret of 47 bytes
        line("CLIENT_TRAFFIC_SECRET_0", RANDOM_A, SECRET_32[:20]),  # not a hash length
        "CLIENT_RANDOM " + "ab" * 32 + " " + "zz" * 48,  # not hex
        "CLIENT_RANDOM " + "ab" * 32 + " " + "a" * 95,  # odd number of digits
        "CLIENT_RANDOM " + "ab" * 32 + " " + "é" * 96,  # not ASCII
    ],
)
def test_a_malformed_line_is_skipped_and_counted(bad: str) -> None:
    keys = KeyLog()
    assert keys.add_text(bad + "\n" + line("CLIENT_RANDOM", RANDOM_B, MASTER)) == 1
    assert keys.skipped == 1
    assert keys.secret("CLIENT_RANDOM", RANDOM_A) is None
    assert keys.secret("CLIENT_RANDOM", RANDOM_B) == MASTER


def test_bytes_input_as_from_a_pcapng_decryption_secrets_block_with_padding() -> None:
    keys = KeyLog()
    payload = (line("CLIENT_RANDOM", RANDOM_A, MASTER) + "\n").encode() + b"\x00\x00\x00"
    assert keys.add_text(payload) == 1
    assert keys.secret("CLIENT_RANDOM", RANDOM_A) == MASTER
    assert keys.add_text(b"CLIENT_RANDOM \xff\xfe " + b"00" * 48) == 0
    assert keys.skipped == 1


def test_several_files_accumulate_and_a_repeated_entry_is_replaced(tmp_path: Path) -> None:
    first, second = tmp_path / "a.keys", tmp_path / "b.keys"
    first.write_text(line("CLIENT_RANDOM", RANDOM_A, MASTER) + "\n")
    second.write_text(
        line("CLIENT_RANDOM", RANDOM_B, MASTER)
        + "\n"
        + line("CLIENT_RANDOM", RANDOM_A, MASTER[::-1])
    )
    keys = KeyLog()
    assert keys.load(str(first)) == 1
    assert keys.load(str(second)) == 2
    assert len(keys) == 2
    assert keys.secret("CLIENT_RANDOM", RANDOM_A) == MASTER[::-1]


def test_an_unreadable_file_is_a_usage_error_naming_only_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.keys"
    with pytest.raises(UsageError) as caught:
        KeyLog().load(str(missing))
    assert str(caught.value) == f"{missing}: cannot read key log"
    with pytest.raises(UsageError):
        KeyLog().load(str(tmp_path))  # a directory


@pytest.mark.parametrize(
    ("path", "entries", "ignored", "skipped"),
    [
        (WIRESHARK / "tls13-rfc8446.keys", 9, 0, 0),  # 2 conns x 4 + 1 early
        (WIRESHARK / "tls13-rfc8446-noearly.keys", 8, 0, 0),
        (WIRESHARK / "http2-data-reassembly.keys", 1, 0, 0),  # no final newline
        (WIRESHARK / "dhe1_keylog.dat", 1, 0, 0),  # comment and UPPER-case hex
        (WIRESHARK / "tls12-chacha20poly1305.keys", 7, 1, 0),  # one RSA pre-master line
        (WIRESHARK / "tls-renegotiation.derived-by-tshark.keys", 5, 1, 0),  # RSA Session-ID
        (WIRESHARK / "http2_follow_multistream.dsb-extracted.keys", 49, 0, 0),
        (WIRESHARK / "challenge01_ooo_stream.dsb-extracted.keys", 4, 0, 0),
        (SCAPY / "tls_tcp_frag_withnss.keys", 1, 0, 0),
    ],
)
def test_the_public_key_logs_load_with_the_counts_of_their_lines(
    path: Path, entries: int, ignored: int, skipped: int
) -> None:
    keys = KeyLog()
    assert keys.load(str(path)) == entries
    assert (len(keys), keys.ignored, keys.skipped) == (entries, ignored, skipped)


def test_the_dsb_copy_equals_the_two_upstream_files_together() -> None:
    split, together = KeyLog(), KeyLog()
    split.load(str(WIRESHARK / "tls12-dsb-1.keys"))
    split.load(str(WIRESHARK / "tls12-dsb-2.keys"))
    blob = (WIRESHARK / "tls12-dsb-1.keys").read_bytes() + (
        WIRESHARK / "tls12-dsb-2.keys"
    ).read_bytes()
    together.add_text(blob)
    assert len(split) == len(together) == 2


def test_repr_and_errors_show_counts_never_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = KeyLog()
    keys.add_text(line("CLIENT_RANDOM", RANDOM_A, MASTER))
    keys.add_text(line("CLIENT_RANDOM", RANDOM_A, MASTER[:47]))  # malformed: must not echo
    assert repr(keys) == "<KeyLog 1 entries>"
    assert str(keys) == repr(keys)
    secret_path = tmp_path / MASTER.hex()[:16]
    with pytest.raises(UsageError) as caught:
        keys.load(str(secret_path / "x"))
    out = capsys.readouterr()
    shown = repr(keys) + str(caught.value).replace(str(secret_path), "") + out.out + out.err
    assert MASTER.hex() not in shown.lower()
    assert MASTER.hex()[:16] not in shown.lower()
