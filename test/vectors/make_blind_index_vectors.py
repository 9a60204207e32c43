#!/usr/bin/env python3
"""Make keyctl's blind-index test vectors (test/vectors/blind-index.json) with Python.

A blind index value is `v<N>:` + base64(HMAC-SHA256(index key, UTF-8 of the normalised plaintext)),
the index key being HKDF-SHA256(ikm = version key, salt = b"keyctl blind index v1",
info = "<table>.<source>", length 32) (docs/format.md, "Blind indexes"). Normalisation steps, in
the order listed: trim (ASCII whitespace at both ends), lowercase (str.lower), nfc.
Keys are fixed, so the output is deterministic: the file is checked in and `--check` regenerates
it in memory and exits non-zero when the checked-in file differs.

    python3 test/vectors/make_blind_index_vectors.py            # (re)write blind-index.json
    python3 test/vectors/make_blind_index_vectors.py --check    # compare with the checked-in file
    python3 test/vectors/make_blind_index_vectors.py --verify - # check values keyctl computed (JSON on stdin:
        {"values": [{"name", "key_hex", "version", "table", "source", "normalize", "plaintext", "value"}]})
"""
import base64
import hashlib
import hmac
import json
import pathlib
import sys
import unicodedata

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

OUT = pathlib.Path(__file__).parent / "blind-index.json"
SALT = b"keyctl blind index v1"
ASCII_WS = " \t\n\v\f\r"


def index_key(version_key: bytes, table: str, source: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=f"{table}.{source}".encode("utf-8")).derive(version_key)


def normalize(text: str, steps: list) -> str:
    for step in steps:
        if step == "trim":
            text = text.strip(ASCII_WS)
        elif step == "lowercase":
            text = text.lower()
        elif step == "nfc":
            text = unicodedata.normalize("NFC", text)
        else:
            raise ValueError(step)
    return text


def value(version: str, version_key: bytes, table: str, source: str, steps: list, plaintext: str) -> str:
    mac = hmac.new(index_key(version_key, table, source), normalize(plaintext, steps).encode("utf-8"), hashlib.sha256).digest()
    return f"{version}:{base64.b64encode(mac).decode()}"


K1 = bytes(range(32))
K2 = bytes(range(32, 64))
CASES = [
    ("exact-email", "the plaintext as it is", K1, "v1", "users", "email", [], "alice@example.com"),
    ("empty", "an empty plaintext still has an index", K1, "v1", "users", "email", [], ""),
    ("trim-lowercase", "ASCII whitespace trimmed, then lowercased: the same index as exact-email", K1, "v1", "users", "email", ["trim", "lowercase"], " \tAlice@Example.COM\r\n"),
    ("other-version", "the same plaintext under v2: another key, another value", K2, "v2", "users", "email", [], "alice@example.com"),
    ("other-column", "the same plaintext and key in another column: another value", K1, "v1", "users", "backup_email", [], "alice@example.com"),
    ("bom-not-trimmed", "U+FEFF and U+00A0 are not ASCII whitespace: trim keeps them", K1, "v1", "users", "email", ["trim"], "\ufeff\u00a0alice@example.com "),
    ("lowercase-unicode", "Unicode lowercase: final sigma, dotted capital I, sharp s unchanged", K1, "v1", "people", "surname", ["lowercase"], "ΟΔΟΣ İSTANBUL Straße"),
    ("nfc", "a decomposed é (e + U+0301) composed by nfc", K1, "v1", "people", "surname", ["nfc"], "Rene\u0301e"),
    ("nfc-precomposed", "the precomposed é: the same index as nfc", K1, "v1", "people", "surname", ["nfc"], "Ren\u00e9e"),
    ("multibyte", "2-, 3- and 4-byte UTF-8, no normalisation", K2, "v12", "notes", "title", [], "Zoë Ωmega 日本語 🚀"),
]


def build() -> str:
    positive = []
    for name, note, key, version, table, source, steps, plaintext in CASES:
        positive.append({
            "name": name, "note": note, "key_hex": key.hex(), "version": version, "table": table, "source": source,
            "normalize": steps, "plaintext": plaintext, "normalized": normalize(plaintext, steps),
            "index_key_hex": index_key(key, table, source).hex(),
            "value": value(version, key, table, source, steps, plaintext),
        })
    doc = {
        "format": "blind index v1: v<N>:base64(HMAC-SHA256(HKDF-SHA256(version key, salt, table.source), normalised plaintext))",
        "spec": "docs/format.md#blind-indexes",
        "generatedWith": "Python hmac, hashlib, unicodedata and cryptography (HKDF)",
        "salt": SALT.decode(),
        "positive": positive,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def verify(path: str) -> int:
    doc = json.load(sys.stdin if path == "-" else open(path, encoding="utf-8"))
    failures = 0
    for v in doc["values"]:
        want = value(v["version"], bytes.fromhex(v["key_hex"]), v["table"], v["source"], v.get("normalize", []), v["plaintext"])
        ok = want == v["value"]
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
        print("blind-index.json: " + ("ok" if same else "DIFFERS from what Python makes now"))
        sys.exit(0 if same else 1)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
