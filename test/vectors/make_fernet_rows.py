#!/usr/bin/env python3
"""Write Fernet tokens with Python's `cryptography.fernet`, as a Django application stores them.

Input (stdin) is JSON: {"key_hex": "<64 hex digits>", "prefix": "FERNET_V1:", "plaintexts": ["...", ...]}
Output (stdout) is JSON: {"values": ["<prefix + token>", ...]}, one per plaintext, in order, each
with a fresh IV and the current time, as Fernet.encrypt makes them. The interop tests store these
in a table, rotate them with keyctl and read them back with check_fernet_with_python.py.
"""
import base64
import json
import sys

from cryptography.fernet import Fernet


def main() -> int:
    doc = json.load(sys.stdin)
    f = Fernet(base64.urlsafe_b64encode(bytes.fromhex(doc["key_hex"])))
    prefix = doc.get("prefix", "")
    values = [prefix + f.encrypt(p.encode("utf-8")).decode("ascii") for p in doc["plaintexts"]]
    json.dump({"values": values}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
