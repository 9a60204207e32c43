#!/usr/bin/env python3
"""Encrypt row values with associated data and/or a per-row derived key, as a Python application does.

Input (stdin) is JSON:

    {"key_hex": "<64 hex digits: the version key>", "version": "v1",
     "aad": "<template> or null", "derive": "<template> or null", "table": "users",
     "values": [{"column": "email", "row": {"id": {"int": 1}, "user_id": {"int": 7}}, "plaintext": "..."}]}

Rows are typed as in context.json. Output (stdout) is JSON {"values": ["v1:<nonce>:<ct>", ...]}, one
per input value, each with a fresh random nonce, using the renderer and HKDF of
make_context_vectors.py (Python's cryptography AESGCM and HKDF, salt None). The interop tests store
these, rotate them with keyctl and read the result back with check_context_with_python.py.
"""
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from make_context_vectors import context, decode_row, derive_key, seal  # noqa: E402


def main() -> int:
    doc = json.load(sys.stdin)
    key = bytes.fromhex(doc["key_hex"])
    out = []
    for v in doc["values"]:
        aad, info = context(doc.get("aad"), doc.get("derive"), decode_row(v["row"]), doc["table"], v["column"])
        data_key = derive_key(key, info) if info is not None else key
        out.append(seal(doc["version"], data_key, os.urandom(12), v["plaintext"], aad))
    json.dump({"values": out}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
