#!/usr/bin/env python3
"""Make keyctl's Fernet test vectors (test/vectors/fernet.json) with Python's `cryptography.fernet`.

Keys, times and IVs are fixed, so the output is deterministic: the file is checked in and
`--check` regenerates it in memory and exits non-zero when the checked-in file differs.

    python3 test/vectors/make_fernet_vectors.py           # (re)write fernet.json
    python3 test/vectors/make_fernet_vectors.py --check   # compare with the checked-in file

Positive vectors are tokens `Fernet._encrypt_from_parts` produces (the code path behind
`Fernet.encrypt`, with the time and IV fixed). Negative vectors are tokens that must not decrypt;
for each one the script records whether Python's Fernet rejects it too (`python_rejects`) and
asserts that it does, except where keyctl is deliberately stricter (a prefix is missing) or
reports what Python returns as bytes (plaintext that is not UTF-8).
"""
import base64
import datetime
import hashlib
import hmac
import json
import pathlib
import sys

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

OUT = pathlib.Path(__file__).parent / "fernet.json"

KEYS = {
    "k1": bytes(range(32)),
    "k2": bytes([0xFF] * 32),
    "k3": bytes.fromhex("473901f0cd6f10ab66c28b851a03461aec670fd717400508019bae0410a7360c"),
}
NOW = 1767225600  # 2026-01-01T00:00:00Z
PREFIX = "FERNET_V1:"

# The acceptance vector of the Fernet spec (github.com/fernet/spec, generate.json).
SPEC_SECRET = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
SPEC_TOKEN = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA=="
SPEC_NOW = 499162800  # 1985-10-26T01:20:00-07:00


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def iso(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fernet(key: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(key))


def sign(key: bytes, body: bytes) -> bytes:
    """A token with a valid HMAC over arbitrary body bytes (for malformed-but-signed vectors)."""
    return body + hmac.new(key[:16], body, hashlib.sha256).digest()


def cbc_raw(key: bytes, iv: bytes, blocks: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key[16:]), modes.CBC(iv)).encryptor()
    return enc.update(blocks) + enc.finalize()


def token_parts(token: str) -> bytes:
    return base64.urlsafe_b64decode(token)


POSITIVE = [
    # name, note, key, now, iv hex, plaintext, prefix
    ("spec-hello", "the acceptance vector of the Fernet spec", "spec", SPEC_NOW, "000102030405060708090a0b0c0d0e0f", "hello", ""),
    ("empty", "empty plaintext: one block of PKCS7 padding", "k1", NOW, "00000000000000000000000000000000", "", ""),
    ("ascii-email", "a typical short field", "k1", NOW, "0102030405060708090a0b0c0d0e0f10", "alice@example.com", ""),
    ("block-exact", "16 bytes of plaintext: a whole extra block of padding", "k2", NOW, "ffffffffffffffffffffffffffffffff", "0123456789abcdef", ""),
    ("multibyte-utf8", "2-, 3- and 4-byte UTF-8 sequences", "k2", NOW + 1, "a1b2c3d4e5f60718293a4b5c6d7e8f90", "Zoë Ωmega 日本語 🚀", ""),
    ("leading-bom", "a leading U+FEFF is part of the plaintext and must survive", "k3", NOW, "cafebabe000000000000000000000001", "\ufeffbom first", ""),
    ("colons-newlines", "the prefix separator and control characters inside the plaintext", "k3", NOW + 3600, "000102030405060708090a0b0c0d0e0f", "a:b:c\nline two\ttab", ""),
    ("prefixed", f"stored with the `{PREFIX}` prefix an application adds in front of the token", "k1", NOW, "0f0e0d0c0b0a09080706050403020100", "+1-555-0100", PREFIX),
    ("prefixed-long", "a ~150-character note with the prefix", "k3", NOW, "cafebabe000000000000000000000002",
     "Prefers contact by email after 6pm. Disputed invoice #4821; resolved with a partial refund. VIP since 2019; route escalations to the account team.", PREFIX),
]


def key_of(name: str) -> bytes:
    return base64.urlsafe_b64decode(SPEC_SECRET) if name == "spec" else KEYS[name]


def make_positive():
    out = []
    for name, note, key_name, now, iv_hex, plaintext, prefix in POSITIVE:
        key = key_of(key_name)
        token = fernet(key)._encrypt_from_parts(plaintext.encode("utf-8"), now, bytes.fromhex(iv_hex)).decode()
        if name == "spec-hello":
            assert token == SPEC_TOKEN, "Python's Fernet no longer reproduces the spec's acceptance vector"
        assert fernet(key).decrypt(token).decode("utf-8") == plaintext
        out.append({
            "name": name,
            "note": note,
            "key_hex": key.hex(),
            "key_b64url": b64url(key),
            "now": now,
            "now_iso": iso(now),
            "iv_hex": iv_hex,
            "plaintext": plaintext,
            "prefix": prefix,
            "value": prefix + token,
        })
    return out


def python_rejects(token: str, key: bytes, ttl=None, now=None) -> bool:
    try:
        out = fernet(key).decrypt_at_time(token, ttl, now) if ttl is not None else fernet(key).decrypt(token)
    except InvalidToken:
        return True
    try:
        out.decode("utf-8")
    except UnicodeDecodeError:
        return False  # Python returns bytes; keyctl needs text
    return False


def make_negative():
    k1, k2 = KEYS["k1"], KEYS["k2"]
    iv = bytes.fromhex("00112233445566778899aabbccddeeff")
    good = fernet(k1)._encrypt_from_parts("alice@example.com".encode(), NOW, iv).decode()
    two_blocks = fernet(k1)._encrypt_from_parts(b"two blocks of plaintext here!!!!!", NOW, iv).decode()
    raw = token_parts(good)
    header = b"\x80" + NOW.to_bytes(8, "big") + iv

    bad_hmac = bytearray(raw)
    bad_hmac[-1] ^= 0x01
    flipped_ct = bytearray(raw)
    flipped_ct[25] ^= 0x80
    v81 = sign(k1, b"\x81" + raw[1:-32])
    bad_padding = sign(k1, header + cbc_raw(k1, iv, b"sixteen bytes!!\x00"))
    no_block = sign(k1, header)
    not_utf8 = fernet(k1)._encrypt_from_parts(b"\xff\xfe not text", NOW, iv).decode()

    cases = [
        # name, note, value, key, expected reason, prefix, ttl, now
        ("bad-hmac", "the last HMAC byte flipped", b64url(bytes(bad_hmac)), k1, "authentication-failed", "", None, None),
        ("flipped-ciphertext", "one ciphertext bit flipped: the HMAC no longer matches", b64url(bytes(flipped_ct)), k1, "authentication-failed", "", None, None),
        ("wrong-key", "a valid token, decrypted with another key", good, k2, "authentication-failed", "", None, None),
        ("bad-version-byte", "version byte 0x81 (HMAC recomputed, so only the version is wrong)", b64url(v81), k1, "malformed", "", None, None),
        ("truncated-byte", "the last byte removed: not 57 + 16·n bytes", b64url(raw[:-1]), k1, "malformed", "", None, None),
        ("truncated-header", "only 40 bytes: shorter than version, timestamp, IV and HMAC", b64url(raw[:40]), k1, "malformed", "", None, None),
        ("truncated-block", "the last 16 bytes removed: a plausible length, but the HMAC does not match", b64url(token_parts(two_blocks)[:-16]), k1, "authentication-failed", "", None, None),
        ("no-ciphertext-block", "a signed token without a ciphertext block", b64url(no_block), k1, "malformed", "", None, None),
        ("bad-pkcs7", "signed, but the decrypted block does not end in PKCS7 padding", b64url(bad_padding), k1, "malformed", "", None, None),
        ("bad-base64-padding", "the '=' padding removed", good.rstrip("="), k1, "malformed", "", None, None),
        ("bad-base64-chars", "not base64url at all", "gAAAAA%%%%not-a-token%%%%", k1, "malformed", "", None, None),
        ("empty-value", "the empty string", "", k1, "malformed", "", None, None),
        ("not-utf8", "authentic, but the plaintext bytes are not UTF-8", not_utf8, k1, "invalid-utf8", "", None, None),
        ("missing-prefix", f"the codec expects `{PREFIX}` and the value has none", good, k1, "malformed", PREFIX, None, None),
        ("wrong-prefix", "another prefix in front of a valid token", "FERNET_V2:" + good, k1, "malformed", PREFIX, None, None),
        ("expired", "ttl 60 s, checked 61 s after the token's time", good, k1, "authentication-failed", "", 60, NOW + 61),
        ("from-the-future", "ttl 60 s, the token's time 61 s ahead of the clock (more than the 60 s skew)", good, k1, "authentication-failed", "", 60, NOW - 61),
    ]
    out = []
    for name, note, value, key, reason, prefix, ttl, now in cases:
        token = value[len(prefix):] if prefix and value.startswith(prefix) else value
        rejects = python_rejects(token, key, ttl, now)
        keyctl_only = name in ("not-utf8", "missing-prefix")
        assert rejects != keyctl_only, f"{name}: Python {'rejects' if rejects else 'accepts'} it"
        item = {"name": name, "note": note, "key_hex": key.hex(), "prefix": prefix, "value": value,
                "reason": reason, "python_rejects": rejects}
        if ttl is not None:
            item["ttl_seconds"] = ttl
            item["now"] = now
        out.append(item)
    # Within the TTL the same token decrypts (the boundary is inclusive, as in Python).
    assert fernet(k1).decrypt_at_time(good, 60, NOW + 60) == b"alice@example.com"
    assert fernet(k1).decrypt_at_time(good, 60, NOW - 60) == b"alice@example.com"
    return out


def make_multi():
    """A token written with the third key of a keyring: MultiFernet finds it on the third try."""
    order = ["k1", "k2", "k3"]
    token = fernet(KEYS["k3"])._encrypt_from_parts(b"rotated", NOW, bytes.fromhex("101112131415161718191a1b1c1d1e1f")).decode()
    mf = MultiFernet([fernet(KEYS[k]) for k in order])
    assert mf.decrypt(token) == b"rotated"
    return {
        "note": "keys in MultiFernet order (newest first); the token was written with the third",
        "keys": [{"version": f"v{3 - i}", "key_hex": KEYS[k].hex()} for i, k in enumerate(order)],
        "value": token,
        "plaintext": "rotated",
        "version": "v1",
        "tried": 3,
    }


def build() -> str:
    doc = {
        "format": "fernet",
        "spec": "https://github.com/fernet/spec/blob/master/Spec.md",
        "generatedWith": "Python cryptography.fernet",
        "positive": make_positive(),
        "negative": make_negative(),
        "multi": make_multi(),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    text = build()
    if "--check" in sys.argv[1:]:
        same = OUT.read_text(encoding="utf-8") == text
        print("fernet.json: " + ("ok" if same else "DIFFERS from what Python's Fernet makes now"))
        sys.exit(0 if same else 1)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
