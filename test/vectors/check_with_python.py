#!/usr/bin/env python3
"""Check keyctl's AES-256-GCM v1 test vectors with an independent implementation.

Uses the `cryptography` package (AESGCM), as Python applications that write this format do.
Run: python3 test/vectors/check_with_python.py   (exits non-zero on any mismatch)
"""
import base64
import json
import pathlib
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

vectors = json.loads((pathlib.Path(__file__).parent / "aes-gcm-v1.json").read_text())["vectors"]
failures = 0
for v in vectors:
    key = bytes.fromhex(v["key_hex"])
    nonce = bytes.fromhex(v["nonce_hex"])
    sealed = AESGCM(key).encrypt(nonce, v["plaintext"].encode("utf-8"), None)
    got = f'{v["version"]}:{base64.b64encode(nonce).decode()}:{base64.b64encode(sealed).decode()}'
    ok = got == v["expected"]
    back = AESGCM(key).decrypt(nonce, sealed, None).decode("utf-8") == v["plaintext"]
    print(f'{v["name"]}: {"ok" if ok and back else "MISMATCH"}')
    failures += 0 if ok and back else 1
sys.exit(1 if failures else 0)
