#!/usr/bin/env python3
"""Decrypt values keyctl wrote with row context, using Python's `cryptography` as an application would.

Input (a path argument, or stdin when there is none or it is `-`) is JSON:

    {"values": [{"name": "...", "key_hex": "<64 hex digits: the version key>", "value": "v<N>:...",
                 "plaintext": "...", "aad": "<template> or null", "derive": "<template> or null",
                 "table": "users", "column": "email", "row": {"id": {"int": 42}},
                 "aad_hex": "...", "info_hex": "...", "other_row": {"id": {"int": 43}}}]}

Rows are typed as in context.json ({"int"}, {"bigint"}, {"text"}, {"bytes_hex"}). `aad_hex`, `info_hex`
and `other_row` are optional. For each value Python renders the templates itself (and, when given,
compares its bytes with keyctl's), derives the key with HKDF-SHA256 (salt None), decrypts with AESGCM
and compares the plaintext, re-encrypts with the value's own nonce and compares the value, and, when
`other_row` is given, checks the value does NOT decrypt in that row's context.
Prints one line per value and exits non-zero on any mismatch.
"""
import base64
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from make_context_vectors import context, decode_row, derive_key, opens, seal  # noqa: E402


def check(v: dict) -> str | None:
    key = bytes.fromhex(v["key_hex"])
    aad_t, derive_t, table, column = v.get("aad"), v.get("derive"), v["table"], v["column"]
    row = decode_row(v["row"])
    aad, info = context(aad_t, derive_t, row, table, column)
    if "aad_hex" in v and (aad is None or aad.hex() != v["aad_hex"]):
        return "Python renders different associated data"
    if "info_hex" in v and (info is None or info.hex() != v["info_hex"]):
        return "Python renders a different HKDF info"
    parts = v["value"].split(":")
    if len(parts) != 3:
        return "not of the form v<N>:<nonce>:<ciphertext>"
    plain = opens(v["value"], key, aad_t, derive_t, row, table, column)
    if plain is None:
        return "Python's AESGCM rejects the value in its row's context"
    if plain != v["plaintext"]:
        return "decrypts to a different plaintext"
    data_key = derive_key(key, info) if info is not None else key
    if seal(parts[0], data_key, base64.b64decode(parts[1]), plain, aad) != v["value"]:
        return "Python encrypts the same plaintext and nonce to a different value"
    if "other_row" in v and opens(v["value"], key, aad_t, derive_t, decode_row(v["other_row"]), table, column) is not None:
        return "the value also decrypts in another row's context"
    return None


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "-"
    doc = json.load(sys.stdin if path == "-" else open(path, encoding="utf-8"))
    values = doc["values"]
    if not values:
        print("no values to check", file=sys.stderr)
        return 1
    failures = 0
    for i, v in enumerate(values):
        problem = check(v)
        print(f'{v.get("name", i)}: {"ok" if problem is None else "MISMATCH: " + problem}')
        failures += problem is not None
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
