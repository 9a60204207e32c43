#!/usr/bin/env python3
"""Make keyctl's binary-value test vectors (test/vectors/binary.json) with Python's `cryptography`.

A binary value is 0xB1 ‖ version (2 bytes, big-endian) ‖ nonce (12) ‖ AES-256-GCM ciphertext ‖
tag (16), no associated data (docs/format.md, "Binary values"). Keys and nonces are fixed, so the
output is deterministic: the file is checked in and `--check` regenerates it in memory and exits
non-zero when the checked-in file differs. `--verify -` checks values keyctl wrote (JSON on stdin:
{"values": [{"name", "key_hex", "plaintext_hex", "value_hex"}]}): each must decrypt to its plaintext.

    python3 test/vectors/make_binary_vectors.py             # (re)write binary.json
    python3 test/vectors/make_binary_vectors.py --check     # compare with the checked-in file
    python3 test/vectors/make_binary_vectors.py --verify -  # check values keyctl wrote
"""
import json
import pathlib
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OUT = pathlib.Path(__file__).parent / "binary.json"
MAGIC = 0xB1


def seal(version: int, key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    return bytes([MAGIC, version >> 8, version & 0xFF]) + nonce + AESGCM(key).encrypt(nonce, plaintext, None)


def opens(value: bytes, key: bytes):
    if len(value) < 31 or value[0] != MAGIC or (value[1] << 8 | value[2]) == 0:
        return None
    try:
        return AESGCM(key).decrypt(value[3:15], value[15:], None)
    except InvalidTag:
        return None


K1 = bytes(range(32))
K2 = bytes(range(32, 64))
N = bytes(range(100, 112))
CASES = [
    ("empty", "empty plaintext: header, nonce and tag only (31 bytes)", 1, K1, N, b""),
    ("ascii", "a short ASCII value", 1, K1, N, b"alice@example.com"),
    ("all-bytes", "every byte value 0x00-0xff, NUL and 0xff included", 2, K2, bytes(range(12)), bytes(range(256))),
    ("utf8-text", "UTF-8 text stored as bytes stays bytes", 3, K1, N, "Zoë 日本語 🚀".encode()),
    ("version-300", "a version above 255 uses both version bytes", 300, K2, N, b"\x00\x01\x02"),
    ("version-max", "the largest version, v65535", 65535, K1, bytes(12), b"max"),
    ("long", "1,000 bytes", 7, K2, N, bytes((i * 37) % 256 for i in range(1000))),
]


def build() -> str:
    positive = []
    for name, note, version, key, nonce, plain in CASES:
        positive.append({
            "name": name, "note": note, "version": f"v{version}", "key_hex": key.hex(), "nonce_hex": nonce.hex(),
            "plaintext_hex": plain.hex(), "value_hex": seal(version, key, nonce, plain).hex(),
        })
    ascii_value = bytes.fromhex(positive[1]["value_hex"])
    tampered = bytearray(ascii_value)
    tampered[-1] ^= 1
    negative = [
        {"name": "bad-magic", "value_hex": (b"\xb0" + ascii_value[1:]).hex(), "key_hex": K1.hex(), "reason": "malformed"},
        {"name": "version-zero", "value_hex": (ascii_value[:1] + b"\x00\x00" + ascii_value[3:]).hex(), "key_hex": K1.hex(), "reason": "malformed"},
        {"name": "truncated", "value_hex": ascii_value[:30].hex(), "key_hex": K1.hex(), "reason": "truncated"},
        {"name": "flipped-tag", "value_hex": bytes(tampered).hex(), "key_hex": K1.hex(), "reason": "authentication-failed"},
        {"name": "wrong-key", "value_hex": ascii_value.hex(), "key_hex": K2.hex(), "reason": "authentication-failed"},
        {"name": "relabelled", "note": "v1's value labelled v2: the v2 key does not open it",
         "value_hex": (ascii_value[:1] + b"\x00\x02" + ascii_value[3:]).hex(), "key_hex": K2.hex(), "reason": "authentication-failed"},
    ]
    for v in negative:
        assert opens(bytes.fromhex(v["value_hex"]), bytes.fromhex(v["key_hex"])) is None, v["name"]
    doc = {
        "format": "binary v1: 0xB1 ‖ version (uint16 BE) ‖ nonce (12) ‖ AES-256-GCM ciphertext ‖ tag (16)",
        "spec": "docs/format.md#binary-values",
        "generatedWith": "Python cryptography (AESGCM)",
        "positive": positive,
        "negative": negative,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def verify(path: str) -> int:
    doc = json.load(sys.stdin if path == "-" else open(path, encoding="utf-8"))
    failures = 0
    for v in doc["values"]:
        got = opens(bytes.fromhex(v["value_hex"]), bytes.fromhex(v["key_hex"]))
        ok = got is not None and got.hex() == v["plaintext_hex"]
        print(f'{v.get("name", "?")}: {"ok" if ok else "MISMATCH"}')
        failures += not ok
    return 1 if failures or not doc["values"] else 0


if __name__ == "__main__":
    if "--verify" in sys.argv[1:]:
        i = sys.argv.index("--verify")
        sys.exit(verify(sys.argv[i + 1] if i + 1 < len(sys.argv) else "-"))
    text = build()
    if "--check" in sys.argv[1:]:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("binary.json: " + ("ok" if same else "DIFFERS from what Python makes now"))
        sys.exit(0 if same else 1)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
