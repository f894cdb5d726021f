#!/usr/bin/env python3
"""Checks a cellule's audit export as a third party would: without the service's code.

Usage:
    verify_export.py EXPORT.jsonl CHECKPOINTS.json VERIFY.json

- EXPORT.jsonl: `GET /v1/cellules/{c}/audit/export?format=jsonl`, one entry per line;
- CHECKPOINTS.json: `GET /v1/cellules/{c}/audit/checkpoints` (a JSON array), or the lines of a
  witness file (one checkpoint object per line);
- VERIFY.json: `GET /v1/cellules/{c}/audit/verify`, for its `public_keys` only (the published
  Ed25519 keys; a copy kept apart works as well).

It recomputes every entry's hash from its fields (the canonical encoding of docs/audit.md),
follows the chain from entry to entry, checks each checkpoint's Ed25519 signature with the
`openssl` command line tool, and requires the last exported entry to be covered by a signed
checkpoint, so that nothing in the file can have been added, changed, reordered or removed after
signing. It prints one line and exits 0 when everything holds; otherwise it names the first
broken entry and exits 1. Only Python's standard library and `openssl` (3.0 or later) are used.
"""

import base64
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

DOMAIN = b"cellule-audit-v1"
CHECKPOINT_DOMAIN = b"cellule-audit-checkpoint-v1"
GENESIS = bytes(32)
# DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the raw 32-byte key follows.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def text(value) -> bytes:
    if value is None:
        return b"\x00"
    return b"\x01" + lp(value.encode("utf-8"))


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def at_us(at: str) -> int:
    """UTC microseconds of an RFC 3339 time such as 2026-12-07T08:10:08.123456Z."""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|\+00:00)", at)
    if not m:
        raise ValueError(f"not a UTC time: {at!r}")
    whole = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    fraction = (m.group(2) or "").ljust(9, "0")
    seconds = int((whole - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds())
    return seconds * 1_000_000 + int(fraction[:6])


def canonical(e: dict) -> bytes:
    out = text(e["cellule"])
    out += struct.pack(">q", e["seq"]) + struct.pack(">q", at_us(e["at"]))
    for name in ("actor", "actor_role", "actor_org", "action", "case_id", "case_ref",
                 "target_kind", "target_id", "outcome", "reason", "request_id"):
        out += text(e.get(name))
    cases = e.get("cases")
    detail = e.get("detail")
    cases_text = None
    if cases is not None:
        cases_text = cases if isinstance(cases, str) else compact(cases)
    if detail is None:
        if cases_text is not None:
            out += text(cases_text)
    else:
        out += text(cases_text)
        out += text(detail if isinstance(detail, str) else compact(detail))
    return out


def chain_hash(prev: bytes, e: dict) -> bytes:
    return hashlib.sha256(DOMAIN + prev + canonical(e)).digest()


def checkpoint_message(c: dict) -> bytes:
    return (CHECKPOINT_DOMAIN + lp(c["cellule"].encode()) + struct.pack(">q", c["seq"])
            + bytes.fromhex(c["hash"]) + struct.pack(">q", c["signed_at_us"])
            + lp(c["kind"].encode()))


def ed25519_verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    with tempfile.TemporaryDirectory() as d:
        paths = {name: os.path.join(d, name) for name in ("key.der", "msg", "sig")}
        for name, data in (("key.der", ED25519_SPKI_PREFIX + public_key), ("msg", message),
                           ("sig", signature)):
            with open(paths[name], "wb") as f:
                f.write(data)
        run = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey",
             paths["key.der"], "-rawin", "-in", paths["msg"], "-sigfile", paths["sig"]],
            capture_output=True)
        return run.returncode == 0


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).digest()[:8].hex()


def fail(message: str) -> None:
    print(f"BROKEN: {message}")
    sys.exit(1)


def load_checkpoints(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        data = f.read().strip()
    if not data:
        return []
    if data.startswith("["):
        return json.loads(data)
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def main(argv: list) -> None:
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(2)
    with open(argv[1], encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()]
    checkpoints = load_checkpoints(argv[2])
    with open(argv[3], encoding="utf-8") as f:
        keys = {k["key_id"]: base64.b64decode(k["public_key"]) for k in json.load(f)["public_keys"]}
    if not entries:
        fail("the export holds no entry")
    cellule = entries[0]["cellule"]

    # Checkpoints: each must carry a valid signature by a published key.
    signed = {}
    for c in checkpoints:
        c.setdefault("cellule", cellule)
        if c["cellule"] != cellule:
            continue
        key = keys.get(c["key_id"])
        if key is None or key_id(key) != c["key_id"]:
            fail(f"checkpoint at {c['seq']} names an unpublished key {c['key_id']}")
        if not ed25519_verifies(key, checkpoint_message(c), base64.b64decode(c["signature"])):
            fail(f"checkpoint at {c['seq']} has an invalid signature")
        signed.setdefault(c["seq"], []).append((bytes.fromhex(c["hash"]), c["kind"]))

    # Entries: contiguous, chained, each hash recomputed from its fields.
    first = entries[0]["seq"]
    if first == 1:
        prev = GENESIS
    else:
        anchors = [h for h, kind in signed.get(first - 1, []) if kind == "retention"]
        if not anchors:
            fail(f"entry {first}: the export starts after a purge no signed retention "
                 f"checkpoint anchors")
        prev = anchors[0]
    for expected, e in enumerate(entries, start=first):
        if e["cellule"] != cellule:
            fail(f"entry {e['seq']} belongs to another cellule")
        if e["seq"] != expected:
            fail(f"entry {expected} is missing")
        if bytes.fromhex(e["prev_hash"]) != prev:
            fail(f"entry {e['seq']} does not follow entry {e['seq'] - 1}")
        computed = chain_hash(prev, e)
        if computed != bytes.fromhex(e["hash"]):
            fail(f"entry {e['seq']} was altered: its content does not match its hash")
        for h, kind in signed.get(e["seq"], []):
            if h != computed:
                fail(f"entry {e['seq']} differs from the {kind} checkpoint signed at it")
        prev = computed
    last = entries[-1]["seq"]
    if last not in signed:
        fail(f"entry {last}, the last one exported, is covered by no signed checkpoint")
    print(f"ok: {cellule} entries {first}-{last} chained and signed "
          f"({sum(len(v) for v in signed.values())} checkpoints)")


if __name__ == "__main__":
    main(sys.argv)
