#!/usr/bin/env python3
"""Removes from levee.wasm the exports of proxy-wasm callbacks that levee does not implement.

    python3 tools/unexport.py target/wasm32-wasip1/release/levee.wasm

The Rust proxy-wasm SDK exports every callback of the ABI, and Envoy calls each exported one:
`proxy_on_log` once per request, the trailer callbacks once per request that has trailers.
levee implements none of them, so each such call enters the VM only to run the SDK's default
(do nothing, continue). Envoy skips a callback the module does not export and then does
exactly what that default does (continue), so leaving the export out changes nothing but the
cost: about 2.5 k instructions per request for `proxy_on_log` alone (`make profile`).

Only the wasm export section changes (the functions stay, unreferenced). Running it twice is
harmless. The file is replaced, not written in place, so cargo's own copy of the artifact under
`deps/` keeps every export.
"""

from __future__ import annotations

import os
import sys
import tempfile

# Callbacks levee leaves to the SDK's default, and for which Envoy does the same when the
# export is missing.
UNUSED_CALLBACKS = (
    b"proxy_on_log",
    b"proxy_on_request_trailers",
    b"proxy_on_response_trailers",
)

EXPORT_SECTION = 7
MAGIC = b"\0asm\1\0\0\0"


def read_leb(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def without_exports(module: bytes, names: tuple[bytes, ...]) -> tuple[bytes, list[bytes]]:
    """`module` with the exports called `names` removed, and the names it removed."""
    if module[:8] != MAGIC:
        raise ValueError("not a wasm module (version 1)")
    out, removed, at = bytearray(MAGIC), [], 8
    while at < len(module):
        section_id = module[at]
        size, body_at = read_leb(module, at + 1)
        body = module[body_at : body_at + size]
        at = body_at + size
        if section_id != EXPORT_SECTION:
            out += bytes([section_id]) + leb(size) + body
            continue
        count, i = read_leb(body, 0)
        kept = []
        for _ in range(count):
            start = i
            length, i = read_leb(body, i)
            name = body[i : i + length]
            i += length + 1  # the name, then the kind byte
            _, i = read_leb(body, i)  # the index
            if name in names:
                removed.append(name)
            else:
                kept.append(body[start:i])
        new_body = leb(len(kept)) + b"".join(kept)
        out += bytes([section_id]) + leb(len(new_body)) + new_body
    return bytes(out), removed


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    with open(path, "rb") as f:
        module = f.read()
    stripped, removed = without_exports(module, UNUSED_CALLBACKS)
    if removed:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".wasm")
        with os.fdopen(fd, "wb") as f:
            f.write(stripped)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    print(f"{path}: exports left out: {', '.join(n.decode() for n in removed) or 'none (already)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
