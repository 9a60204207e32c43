#!/usr/bin/env python3
"""Decrypt tokens keyctl wrote with Python's `cryptography.fernet`, as the applications that read them do.

Input (a path argument, or stdin when there is none or it is `-`) is JSON:

    {"tokens": [{"name": "...", "key_hex": "<64 hex digits>", "value": "<prefix + token>",
                 "prefix": "", "plaintext": "...", "now": 1767225600, "iv_hex": "<32 hex>"}]}

`prefix`, `now` and `iv_hex` are optional. Each token must decrypt to `plaintext`; when `now` and
`iv_hex` are given, Python must also re-encrypt the plaintext to exactly the same token.
Prints one line per token and exits non-zero on any mismatch.
"""
import base64
import json
import sys

from cryptography.fernet import Fernet, InvalidToken


def check(t: dict) -> str | None:
    key = bytes.fromhex(t["key_hex"])
    f = Fernet(base64.urlsafe_b64encode(key))
    prefix = t.get("prefix", "")
    value = t["value"]
    if not value.startswith(prefix):
        return "does not start with its prefix"
    token = value[len(prefix):]
    try:
        plain = f.decrypt(token).decode("utf-8")
    except InvalidToken:
        return "Python's Fernet rejects the token"
    except UnicodeDecodeError:
        return "the plaintext is not UTF-8"
    if plain != t["plaintext"]:
        return "decrypts to a different plaintext"
    if "now" in t and "iv_hex" in t:
        again = f._encrypt_from_parts(plain.encode("utf-8"), t["now"], bytes.fromhex(t["iv_hex"])).decode()
        if again != token:
            return "Python encrypts the same plaintext, time and IV to a different token"
    return None


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "-"
    doc = json.load(sys.stdin if path == "-" else open(path, encoding="utf-8"))
    tokens = doc["tokens"]
    if not tokens:
        print("no tokens to check", file=sys.stderr)
        return 1
    failures = 0
    for i, t in enumerate(tokens):
        problem = check(t)
        print(f'{t.get("name", i)}: {"ok" if problem is None else "MISMATCH: " + problem}')
        failures += problem is not None
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
