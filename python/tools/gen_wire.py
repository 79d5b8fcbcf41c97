#!/usr/bin/env python3
"""Generate python/vmsig/_wire.py from the C headers, the one wire definition.

    python3 python/tools/gen_wire.py            # rewrite python/vmsig/_wire.py
    python3 python/tools/gen_wire.py --check    # exit 1 if it is out of date

Reads include/vmsig/vmsig_wire.h (every struct and constant),
include/vmsig/vmsig_event.h (capabilities, sources, REPLY body limit) and
include/vmsig/vmsig_keys.h (key codes). Struct layouts are computed with the
C rules the header promises (natural alignment, no padding: every struct's
size is pinned by a _Static_assert, which this script checks too);
tests/python/test_layout.py compiles a C program with offsetof() for every
field and compares it with what this script produced.
"""
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
INC = os.path.join(ROOT, "include", "vmsig")
OUT = os.path.join(ROOT, "python", "vmsig", "_wire.py")

# C type -> (struct format char, size)
CTYPES = {
    "uint8_t": ("B", 1), "int8_t": ("b", 1), "char": ("s", 1),
    "uint16_t": ("H", 2), "int16_t": ("h", 2),
    "uint32_t": ("I", 4), "int32_t": ("i", 4),
    "uint64_t": ("Q", 8), "int64_t": ("q", 8),
}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def c_int_expr(expr, env):
    """Evaluate a C integer constant expression of the headers' kind."""
    e = expr.strip()
    e = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU]?)\b", r"\1", e)
    names = set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", e))
    for n in names:
        if n not in env:
            raise KeyError(n)
    if not re.fullmatch(r"[\sA-Za-z0-9_()+\-*<>|&~x]*", e):
        raise ValueError(expr)
    return int(eval(e, {"__builtins__": {}}, dict(env)))  # noqa: S307 (header text only)


def parse_defines(text, env, order):
    # join continued lines
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        m = re.match(r"\s*#define\s+(VMSIG_[A-Z0-9_]+)\s+(.+?)\s*$", line)
        if not m:
            continue
        name, val = m.group(1), m.group(2)
        if "(" in name:
            continue
        try:
            env[name] = c_int_expr(val, env)
            order.append(name)
        except (KeyError, ValueError, SyntaxError):
            pass  # a macro that is not an integer constant (VMSIG_CAPS etc.)


def parse_structs(text, env):
    structs = {}
    order = []
    for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", text, re.S):
        name, body = m.group(3), m.group(2)
        fields = []
        for decl in body.split(";"):
            decl = decl.strip()
            if not decl:
                continue
            dm = re.fullmatch(r"(\w+)\s+(\w+)(?:\s*\[\s*([^\]]+)\s*\])?", decl)
            if not dm:
                raise SystemExit("gen_wire: cannot parse field %r of %s" % (decl, name))
            ctype, fname, count = dm.group(1), dm.group(2), dm.group(3)
            n = c_int_expr(count, env) if count else None
            fields.append((ctype, fname, n))
        structs[name] = fields
        order.append(name)
    return structs, order


def layout(name, structs, cache):
    """[(dotted field, ctype, count or None, offset, size)], size, align."""
    if name in cache:
        return cache[name]
    off, align, out = 0, 1, []
    for ctype, fname, n in structs[name]:
        if ctype in CTYPES:
            fsize, falign, sub = CTYPES[ctype][1], CTYPES[ctype][1], None
        elif ctype in structs:
            sub, fsize, falign = layout(ctype, structs, cache)
        else:
            raise SystemExit("gen_wire: unknown type %s in %s" % (ctype, name))
        if off % falign:
            raise SystemExit("gen_wire: %s.%s would need padding (the header promises none)"
                             % (name, fname))
        total = fsize * (n or 1)
        if sub is not None:
            if n:
                raise SystemExit("gen_wire: arrays of structs are not supported")
            for sf, sct, sn, so, ss in sub:
                out.append((fname + "." + sf, sct, sn, off + so, ss))
        else:
            out.append((fname, ctype, n, off, total))
        off += total
        align = max(align, falign)
    if off % align:
        raise SystemExit("gen_wire: %s has tail padding" % name)
    cache[name] = (out, off, align)
    return cache[name]


def fmt_of(fields):
    f = "<"
    for _, ctype, n, _, _ in fields:
        ch = CTYPES[ctype][0]
        if ctype == "char":
            f += "%ds" % n
        elif ctype == "uint8_t" and n:
            f += "%ds" % n  # byte arrays (uuid) come out as bytes
        else:
            f += ("%d" % n if n else "") + ch
    return f


def generate():
    env, dorder = {}, []
    texts = {}
    for h in ("vmsig_wire.h", "vmsig_event.h", "vmsig_keys.h"):
        with open(os.path.join(INC, h)) as f:
            texts[h] = f.read()
        parse_defines(strip_comments(texts[h]), env, dorder)
    wire = strip_comments(texts["vmsig_wire.h"])
    structs, sorder = parse_structs(wire, env)
    asserts = dict((n, int(s)) for n, s in
                   re.findall(r"_Static_assert\(sizeof\((\w+)\)\s*==\s*(\d+)", wire))
    cache = {}
    lines = [
        '"""The vmsig wire protocol, generated from include/vmsig/ by python/tools/gen_wire.py.',
        "",
        "Do not edit: run `python3 python/tools/gen_wire.py` after changing the headers.",
        "tests/python/test_layout.py checks this file against the headers (regenerating it)",
        "and every offset against a C compiler's offsetof().",
        '"""',
        "# flake8: noqa",
        "",
        "# Every integer #define VMSIG_* of vmsig_wire.h, vmsig_event.h, vmsig_keys.h.",
    ]
    seen = set()
    for n in dorder:
        if n in seen:
            continue
        seen.add(n)
        v = env[n]
        lines.append("%s = %s" % (n, hex(v) if v > 9 else str(v)))
    lines += ["", "# Struct layouts: name -> (struct format, size, [(field, offset, size)]).",
              "# Nested structs are flattened with dotted names (sub.source_mask).",
              "STRUCTS = {"]
    for s in sorder:
        fields, size, _ = layout(s, structs, cache)
        if s in asserts and asserts[s] != size:
            raise SystemExit("gen_wire: %s is %d bytes, the header asserts %d" % (s, size, asserts[s]))
        if s not in asserts:
            raise SystemExit("gen_wire: %s has no _Static_assert on its size" % s)
        lines.append("    %r: (%r, %d, [" % (s, fmt_of(fields), size))
        for fname, _, _, off, fsize in fields:
            lines.append("        (%r, %d, %d)," % (fname, off, fsize))
        lines.append("    ]),")
    lines.append("}")
    keys = re.findall(r"X\(\s*(\w+)\s*,\s*(\d+)\s*\)", texts["vmsig_keys.h"].replace("\\\n", "\n"))
    lines += ["", "# Key codes (VMSIG_KEYS of vmsig_keys.h): QEMU qcode name -> Linux KEY_* code.",
              "KEYS = {"]
    for k, c in keys:
        lines.append("    %r: %s," % (k, c))
    lines.append("}")
    caps = re.findall(r"X\((\w+),\s*(VMSIG_CAP_\w+)\)", texts["vmsig_event.h"].replace("\\\n", "\n"))
    lines += ["", "# Capability names (VMSIG_CAPS of vmsig_event.h).", "CAP_NAMES = {"]
    for nm, c in caps:
        lines.append("    %r: %s," % (nm, c))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    text = generate()
    if "--check" in sys.argv[1:]:
        try:
            with open(OUT) as f:
                old = f.read()
        except OSError:
            old = ""
        if old != text:
            print("gen_wire: %s is out of date; run python3 python/tools/gen_wire.py" % OUT)
            return 1
        return 0
    with open(OUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
