#!/usr/bin/env python3
"""Make keyctl's row-context test vectors (test/vectors/context.json) with Python's `cryptography`.

Associated data (AAD) binds a value to its row; derived keys give each row its own key,
HKDF-SHA256(version key, salt=None, info). Both start from a template over the row, rendered here
by an implementation independent of keyctl's (docs/format.md, "Associated data and derived keys").
Keys and nonces are fixed, so the output is deterministic: the file is checked in and `--check`
regenerates it in memory and exits non-zero when the checked-in file differs.

    python3 test/vectors/make_context_vectors.py           # (re)write context.json
    python3 test/vectors/make_context_vectors.py --check   # compare with the checked-in file

Row values are typed in the JSON, since JSON has no bigint or bytes:
{"int": 42}, {"bigint": "9223372036854775807"}, {"text": "..."}, {"bytes_hex": "00ff"}, {"null": true},
and, in render_errors only, {"float": 1.5} and {"bool": true}.
check_context_with_python.py imports render, derive_key, decode_row from here.
"""
import base64
import json
import pathlib
import re
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

OUT = pathlib.Path(__file__).parent / "context.json"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class TemplateError(ValueError):
    """A template that does not parse; args[0] is keyctl's issue code."""


class RenderError(ValueError):
    """A row whose context cannot be rendered; args[0] is keyctl's problem code."""


def parse(template: str):
    """The template's parts: ("text", str) and ("name", str). Raises TemplateError(code)."""
    if template == "":
        raise TemplateError("empty-template")
    parts, text, i = [], "", 0
    while i < len(template):
        c = template[i]
        if c == "{":
            if template[i + 1:i + 2] == "{":
                text, i = text + "{", i + 2
                continue
            close, reopen = template.find("}", i + 1), template.find("{", i + 1)
            if close < 0 or 0 <= reopen < close:
                raise TemplateError("unclosed-brace")
            name = template[i + 1:close]
            if name == "":
                raise TemplateError("empty-name")
            if not IDENTIFIER.match(name):
                raise TemplateError("not-an-identifier")
            if text:
                parts.append(("text", text))
            parts.append(("name", name))
            text, i = "", close + 1
        elif c == "}":
            if template[i + 1:i + 2] != "}":
                raise TemplateError("unmatched-brace")
            text, i = text + "}", i + 2
        else:
            text, i = text + c, i + 1
    if text:
        parts.append(("text", text))
    return parts


def render_value(value) -> bytes:
    if value is None:
        raise RenderError("null")
    if isinstance(value, bool):  # before int: bool is an int in Python
        raise RenderError("unsupported")
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise RenderError("unsupported")


def render(template: str, row: dict, table: str, column: str) -> bytes:
    out = b""
    for kind, part in parse(template):
        if kind == "text":
            out += part.encode("utf-8")
        elif part == "table":
            out += table.encode("utf-8")
        elif part == "column":
            out += column.encode("utf-8")
        elif part not in row:
            raise RenderError("missing")
        else:
            out += render_value(row[part])
    if out == b"":
        raise RenderError("empty")
    return out


def derive_key(version_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(version_key)


def decode_value(typed: dict):
    (kind, v), = typed.items()
    return {"int": lambda: v, "bigint": lambda: int(v), "text": lambda: v, "bytes_hex": lambda: bytes.fromhex(v),
            "null": lambda: None, "float": lambda: v, "bool": lambda: v}[kind]()


def decode_row(row: dict) -> dict:
    return {k: decode_value(t) for k, t in row.items()}


def seal(version: str, key: bytes, nonce: bytes, plaintext: str, aad: bytes | None) -> str:
    ct = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), aad)
    return f"{version}:{base64.b64encode(nonce).decode()}:{base64.b64encode(ct).decode()}"


def context(aad_t, derive_t, row, table, column):
    aad = render(aad_t, row, table, column) if aad_t is not None else None
    info = render(derive_t, row, table, column) if derive_t is not None else None
    return aad, info


def opens(value: str, key: bytes, aad_t, derive_t, row, table, column) -> str | None:
    """The plaintext, or None when the value does not authenticate in this context."""
    _, nonce_b64, sealed_b64 = value.split(":")
    aad, info = context(aad_t, derive_t, row, table, column)
    k = derive_key(key, info) if info is not None else key
    try:
        return AESGCM(k).decrypt(base64.b64decode(nonce_b64), base64.b64decode(sealed_b64), aad).decode("utf-8")
    except InvalidTag:
        return None


KEYS = {
    "k1": bytes(range(32)),
    "k2": bytes([0xFF] * 32),
    "k3": bytes.fromhex("473901f0cd6f10ab66c28b851a03461aec670fd717400508019bae0410a7360c"),
}

POSITIVE = [
    # name, note, mode, aad template, derive template, table, column, row, key, version, nonce hex, plaintext
    ("aad-table-column-id", "AAD: table, column and an integer id", "aad", "{table}.{column}:{id}", None,
     "users", "email", {"id": {"int": 42}}, "k1", "v1", "000000000000000000000001", "alice@example.com"),
    ("aad-tenant-bigint", "AAD: tenant and a bigint id above 2^53 (decimal text, never a rounded float)", "aad", "{tenant_id}/{id}", None,
     "orders", "card_last4", {"tenant_id": {"int": 7}, "id": {"bigint": "9007199254740993"}}, "k1", "v2", "000000000000000000000002", "4242"),
    ("aad-unicode", "AAD: a text column with 2-, 3- and 4-byte UTF-8, and non-ASCII plaintext", "aad", "{table}.{column}:{tenant}", None,
     "profiles", "note", {"tenant": {"text": "Zürich-東京-🚀"}}, "k3", "v3", "a1b2c3d4e5f60718293a4b5c", "Zoë Ωmega 日本語 🚀"),
    ("aad-escapes", "AAD: doubled braces are literal braces; negative integer", "aad", "{{{id}}}:{{literal}}", None,
     "users", "email", {"id": {"int": -5}}, "k1", "v1", "0102030405060708090a0b0c", "braces"),
    ("aad-empty-plaintext", "AAD over an empty plaintext: the ciphertext is the tag alone", "aad", "{table}.{column}:{id}", None,
     "users", "email", {"id": {"int": 43}}, "k2", "v1", "ffffffffffffffffffffffff", ""),
    ("aad-bytes", "AAD: a binary column (a 16-byte UUID) renders as its raw bytes", "aad", "{table}:{uuid}", None,
     "devices", "token", {"uuid": {"bytes_hex": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}}, "k3", "v1", "cafebabe0000000000000001", "dev-token-123"),
    ("derive-user-id", "derived key per profile: info is the user id", "derive", None, "{user_id}",
     "profiles", "birthdate", {"user_id": {"int": 1001}}, "k2", "v1", "00112233445566778899aabb", "1985-10-26"),
    ("derive-bigint-max", "derived key: the largest signed 64-bit id", "derive", None, "{table}.{column}:{id}",
     "profiles", "ssn", {"id": {"bigint": "9223372036854775807"}}, "k1", "v4", "0c0b0a090807060504030201", "078-05-1120"),
    ("derive-empty-plaintext", "derived key over an empty plaintext", "derive", None, "profile:{id}",
     "profiles", "ssn", {"id": {"int": 0}}, "k3", "v12", "000000000000000000000000", ""),
    ("both-tenant", "derived key per tenant and AAD per row", "both", "{table}.{column}:{tenant_id}/{id}", "{tenant_id}",
     "accounts", "iban", {"tenant_id": {"text": "acme"}, "id": {"int": 5}}, "k1", "v2", "1a2b3c4d5e6f708192a3b4c5", "DE89 3704 0044 0532 0130 00"),
    ("both-unicode-escapes", "both, with unicode text, escapes and a leading U+FEFF in the plaintext", "both", "{{{tenant}}}:{id}", "{tenant}}}",
     "notes", "body", {"tenant": {"text": "Ωmega"}, "id": {"bigint": "12345678901234567890"}}, "k2", "v1", "5a5a5a5a5a5a5a5a5a5a5a5a", "\ufeffa:b\nline two"),
]


def make_positive():
    out = []
    for name, note, mode, aad_t, derive_t, table, column, typed_row, key_name, version, nonce_hex, plaintext in POSITIVE:
        key = KEYS[key_name]
        row = decode_row(typed_row)
        aad, info = context(aad_t, derive_t, row, table, column)
        data_key = derive_key(key, info) if info is not None else key
        value = seal(version, data_key, bytes.fromhex(nonce_hex), plaintext, aad)
        assert opens(value, key, aad_t, derive_t, row, table, column) == plaintext
        item = {"name": name, "note": note, "mode": mode, "aad": aad_t, "derive": derive_t, "table": table, "column": column,
                "row": typed_row, "key_hex": key.hex(), "version": version, "nonce_hex": nonce_hex, "plaintext": plaintext}
        if aad is not None:
            item["aad_hex"] = aad.hex()
        if info is not None:
            item["info_hex"] = info.hex()
            item["derived_key_hex"] = data_key.hex()
        item["value"] = value
        out.append(item)
    return out


def make_negative(positive):
    by = {p["name"]: p for p in positive}

    def moved(src, note, name, aad=..., derive=..., row=None, column=None, keys=None, value=None, reason="authentication-failed"):
        p = by[src]
        return {"name": name, "note": note, "from": src,
                "aad": p["aad"] if aad is ... else aad, "derive": p["derive"] if derive is ... else derive,
                "table": p["table"], "column": column or p["column"], "row": row or p["row"],
                "keys": keys or {p["version"]: p["key_hex"]}, "value": value or p["value"], "reason": reason}

    plain_v1 = seal("v1", KEYS["k1"], bytes.fromhex("0000000000000000000000ff"), "alice@example.com", None)
    t = by["aad-table-column-id"]
    sealed = bytearray(base64.b64decode(t["value"].split(":")[2]))
    sealed[-1] ^= 0x01
    tampered = ":".join(t["value"].split(":")[:2] + [base64.b64encode(bytes(sealed)).decode()])
    cases = [
        moved("aad-table-column-id", "copied to another row (id 43)", "aad-moved-row", row={"id": {"int": 43}}),
        moved("aad-table-column-id", "copied to another column of the same row", "aad-moved-column", column="phone"),
        moved("aad-tenant-bigint", "copied to another tenant", "aad-moved-tenant",
              row={"tenant_id": {"int": 8}, "id": {"bigint": "9007199254740993"}}),
        moved("aad-tenant-bigint", "the bigint id off by one (what a float would round it to)", "aad-rounded-bigint",
              row={"tenant_id": {"int": 7}, "id": {"bigint": "9007199254740992"}}),
        moved("aad-table-column-id", "read without associated data", "aad-dropped", aad=None),
        moved("aad-table-column-id", "a value written without associated data, read with it", "aad-unexpected", value=plain_v1),
        moved("aad-table-column-id", "the last tag byte flipped", "aad-tampered", value=tampered),
        moved("aad-table-column-id", "the keyring has no key for the version", "aad-unknown-version",
              keys={"v2": KEYS["k1"].hex()}, reason="unknown-version"),
        moved("derive-user-id", "copied to another profile (user 1002)", "derive-moved-row", row={"user_id": {"int": 1002}}),
        moved("derive-user-id", "read with the version key itself, not the derived key", "derive-dropped", derive=None),
        moved("both-tenant", "copied to another row of the same tenant: the key matches, the AAD does not", "both-moved-row",
              row={"tenant_id": {"text": "acme"}, "id": {"int": 6}}),
        moved("both-tenant", "copied to another tenant: neither key nor AAD match", "both-moved-tenant",
              row={"tenant_id": {"text": "acme2"}, "id": {"int": 5}}),
    ]
    for c in cases:
        if c["reason"] == "unknown-version":
            continue
        row = decode_row(c["row"])
        (key_hex,) = c["keys"].values()
        assert opens(c["value"], bytes.fromhex(key_hex), c["aad"], c["derive"], row, c["table"], c["column"]) is None, c["name"]
    return cases


TEMPLATE_ERRORS = [
    ("", "empty-template"),
    ("{table}.{column}:{id", "unclosed-brace"),
    ("{tenant_id/{id}", "unclosed-brace"),
    ("{}", "empty-name"),
    ("{table}.{}:{id}", "empty-name"),
    ("{ id }", "not-an-identifier"),
    ("{1st}", "not-an-identifier"),
    ("{user.id}", "not-an-identifier"),
    ("{id:05d}", "not-an-identifier"),
    ("{id}}", "unmatched-brace"),
    ("id}", "unmatched-brace"),
]

RENDER_ERRORS = [
    # template, row, problem
    ("{tenant_id}/{id}", {"tenant_id": {"null": True}, "id": {"int": 1}}, "null"),
    ("{tenant_id}/{id}", {"id": {"int": 1}}, "missing"),
    ("{flag}", {"flag": {"bool": True}}, "unsupported"),
    ("{price}", {"price": {"float": 1.5}}, "unsupported"),
    ("{a}{b}", {"a": {"text": ""}, "b": {"bytes_hex": ""}}, "empty"),
]


def make_template_errors():
    out = []
    for template, code in TEMPLATE_ERRORS:
        try:
            parse(template)
        except TemplateError as e:
            assert e.args[0] == code, (template, e.args[0])
        else:
            raise AssertionError(f"{template!r} parsed")
        out.append({"template": template, "code": code})
    return out


def make_render_errors():
    out = []
    for template, typed_row, problem in RENDER_ERRORS:
        try:
            render(template, decode_row(typed_row), "t", "c")
        except RenderError as e:
            assert e.args[0] == problem, (template, e.args[0])
        else:
            raise AssertionError(f"{template!r} rendered")
        out.append({"template": template, "row": typed_row, "problem": problem})
    return out


def build() -> str:
    positive = make_positive()
    doc = {
        "format": "aes-256-gcm-v1 with row context (associated data and/or HKDF-SHA256 derived keys)",
        "spec": "docs/format.md#associated-data-and-derived-keys",
        "generatedWith": "Python cryptography (AESGCM, HKDF)",
        "positive": positive,
        "negative": make_negative(positive),
        "template_errors": make_template_errors(),
        "render_errors": make_render_errors(),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    text = build()
    if "--check" in sys.argv[1:]:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("context.json: " + ("ok" if same else "DIFFERS from what Python makes now"))
        sys.exit(0 if same else 1)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
