#!/usr/bin/env python3
"""check-spec.py - keep the numbers of docs/protocol.rst true.

    python3 tests/spec/check-spec.py [SPEC.rst]

Reads the public headers (include/vmsig/*.h), the kind table of lib/event.c
(kind_rows) and the spec (docs/protocol.rst, or SPEC.rst), and checks:

  * every protocol constant of the headers (VMSIG_MSG_/EV_/CMD_/CAP_/SRC_/
    CLASS_/ARB_/VM_/LC_/PWR_/INPUT_/BTN_/AXIS_/RS_/SC_/FEAT_/F_, versions,
    limits) is in a constant table of the spec with the same number, and
    every VMSIG_ name in those tables is a header constant with that number;
  * every key of vmsig_keys.h (X(name, code) /* KEY_* */) is in the spec's
    key table with its code and Linux name, and nothing else is;
  * every wire struct's field table (offset, size, type, field) matches the
    C struct: offsets follow one another from 0, the last ends at the size
    the _Static_assert pins, names, sizes and types as declared;
  * the spec's frame-kind table says what lib/event.c's kind_rows say, and
    its run-state, cause and class labels are lib/event.c's names;
  * the errno numbers of the errno tables are Linux's;
  * the example frames (hex) have the size, kind and length they claim;
  * every simple table is well formed (no cell text across a column gap),
    so the document renders.

Spec conventions it relies on (docs/protocol.rst keeps them):
  constant table:  a simple table with columns "Name" and "Value"; a row
                   counts when its Name cell is exactly ``VMSIG_X``
                   (or ``-EXXX`` for errno values);
  key table:       columns "Key", "Code", "Linux name";
  struct table:    columns "Offset", "Size", "Type", "Field", "Meaning",
                   right after a paragraph naming ``vmsig_wire_x`` (N bytes);
  kind table:      columns "Name", "Value", "Label", "Dir", "Fixed", "Tail",
                   "fds", "Source", "Cap", "Class", "Feature";
  example frame:   a line ``VMSIG_X`` frame, N bytes (hex)::  then hex
                   lines of up to 16 bytes each (anything after is comment).

Output is TAP; the exit status is 1 if any test failed. Python 3 stdlib only.
"""
import ast
import errno
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
HEADERS = ['vmsig_wire.h', 'vmsig_event.h', 'vmsig_keys.h', 'vmsig_core.h', 'vmsig_client.h']
KINDS_C = os.path.join('lib', 'event.c')

# Constants the spec must carry: the protocol's prefixes, plus these.
REQUIRED_RE = re.compile(
    r'^VMSIG_(MSG|EV|CMD|CAP|SRC|CLASS|ARB|VM|LC|PWR|INPUT|BTN|AXIS|RS|SC|FEAT|F)_[A-Z0-9_]+$')
REQUIRED_EXTRA = [
    'VMSIG_WIRE_MAJOR', 'VMSIG_WIRE_MINOR', 'VMSIG_FEATURES_KNOWN',
    'VMSIG_WIRE_MAX_PAYLOAD', 'VMSIG_WIRE_MAX_FDS', 'VMSIG_MEMWRITE_MAX', 'VMSIG_TEXT_MAX',
    'VMSIG_MEMCTX_MAX_SEGS', 'VMSIG_TOKEN_MAX', 'VMSIG_ENDPOINT_MAX', 'VMSIG_REPLY_BODY_MAX',
    'VMSIG_ABS_MAX', 'VMSIG_CLIENT_QUEUE_MAX', 'VMSIG_CLIENT_QUEUE_FDS',
]

C_TYPES = {  # C type -> (spec spelling, size)
    'uint8_t': ('u8', 1), 'int8_t': ('i8', 1), 'uint16_t': ('u16', 2), 'int16_t': ('i16', 2),
    'uint32_t': ('u32', 4), 'int32_t': ('i32', 4), 'uint64_t': ('u64', 8), 'int64_t': ('i64', 8),
    'char': ('char', 1),
}


class Tap:
    def __init__(self):
        self.results = []

    def check(self, desc, problems):
        self.results.append((desc, list(problems)))

    def finish(self):
        print('1..%d' % len(self.results))
        failed = 0
        for n, (desc, problems) in enumerate(self.results, 1):
            if problems:
                failed += 1
                shown = problems[:12]
                more = '' if len(problems) <= 12 else '; ... %d more' % (len(problems) - 12)
                print('not ok %d - %s (%s%s)' % (n, desc, '; '.join(shown), more))
            else:
                print('ok %d - %s' % (n, desc))
        return 1 if failed else 0


def read(rel):
    with open(os.path.join(ROOT, rel), encoding='utf-8') as f:
        return f.read()


def strip_comments(text):
    text = re.sub(r'/\*.*?\*/', lambda m: '\n' * m.group(0).count('\n'), text, flags=re.S)
    return re.sub(r'//[^\n]*', '', text)


# ---- C expressions ----

class EvalError(Exception):
    pass


_ALLOWED_BIN = {ast.BitOr: lambda a, b: a | b, ast.BitAnd: lambda a, b: a & b,
                ast.BitXor: lambda a, b: a ^ b, ast.LShift: lambda a, b: a << b,
                ast.RShift: lambda a, b: a >> b, ast.Add: lambda a, b: a + b,
                ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}


def _ev(node):
    if isinstance(node, ast.Expression):
        return _ev(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _ALLOWED_BIN:
        return _ALLOWED_BIN[type(node.op)](_ev(node.left), _ev(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_ev(node.operand)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _ev(node.operand)
    raise EvalError('unsupported expression')


class Defines:
    """Object-like #defines of the headers, evaluated on demand."""

    def __init__(self):
        self.raw = {}      # name -> expression text
        self.where = {}    # name -> header
        self.func = {}     # function-like macro name -> body text
        self.sizes = {}    # struct name -> size from _Static_assert
        self.values = {}
        self.errors = {}

    def add_header(self, name, text):
        joined = re.sub(r'\\\n', ' ', text)
        for line in strip_comments(joined).split('\n'):
            m = re.match(r'^\s*#\s*define\s+(VMSIG_\w+)(\()?(.*)$', line)
            if not m:
                continue
            if m.group(2):
                self.func[m.group(1)] = m.group(3)
                continue
            expr = m.group(3).strip()
            if expr:
                self.raw[m.group(1)] = expr
                self.where[m.group(1)] = name
        for m in re.finditer(r'_Static_assert\s*\(\s*sizeof\s*\(\s*(\w+)\s*\)\s*==\s*(\d+)', text):
            self.sizes[m.group(1)] = int(m.group(2))

    def caps_rows(self):
        body = self.func.get('VMSIG_CAPS', '')
        return re.findall(r'X\(\s*(\w+)\s*,\s*(\w+)\s*\)', body)

    def expand(self, expr, extra=None, depth=0):
        if depth > 20:
            raise EvalError('nested too deep')
        # VMSIG_CAPS(VMSIG__CAP_OR): "| (bit)" once per capability row
        expr = re.sub(r'VMSIG_CAPS\s*\(\s*VMSIG__CAP_OR\s*\)',
                      lambda m: ''.join(' | (%s)' % bit for _, bit in self.caps_rows()), expr)
        if extra:
            expr = extra(expr)
        expr = re.sub(r'\b(0[xX][0-9a-fA-F]+|\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU])\b', r'\1', expr)

        def name(m):
            n = m.group(0)
            return '(%d)' % self.value(n, depth + 1)
        expr = re.sub(r'\b[A-Za-z_]\w*\b', name, expr)
        return expr

    def value(self, name, depth=0):
        if name in self.values:
            return self.values[name]
        if name not in self.raw:
            raise EvalError('%s is not an object-like #define' % name)
        expr = self.expand(self.raw[name], depth=depth)
        try:
            v = _ev(ast.parse(expr, mode='eval'))
        except (SyntaxError, EvalError) as e:
            raise EvalError('cannot evaluate %s = %s (%s)' % (name, self.raw[name], e))
        self.values[name] = v
        return v

    def eval_expr(self, expr, sizes):
        def sz(text):
            def one(m):
                t = m.group(1)
                if t not in sizes:
                    raise EvalError('no _Static_assert size for %s' % t)
                return '(%d)' % sizes[t]
            text = re.sub(r'\bSZ\s*\(\s*(\w+)\s*\)', one, text)
            return re.sub(r'\bsizeof\s*\(\s*(\w+)\s*\)', one, text)
        return _ev(ast.parse(self.expand(expr, extra=sz), mode='eval'))


# ---- C structs ----

def parse_structs(text, defs):
    """typedef struct X {...} X; -> {X: [(ctype, name, count or None)]}"""
    out = {}
    for m in re.finditer(r'typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;', strip_comments(text), re.S):
        fields = []
        for decl in m.group(2).split(';'):
            decl = ' '.join(decl.split())
            if not decl:
                continue
            fm = re.match(r'^(\w+)\s+(\w+)\s*(?:\[\s*([^\]]+)\s*\])?$', decl)
            if not fm:
                fields.append(('?', decl, None))
                continue
            count = None
            if fm.group(3):
                count = defs.eval_expr(fm.group(3), {})
            fields.append((fm.group(1), fm.group(2), count))
        out[m.group(3)] = fields
    return out


def layout(structs, name, prefix=''):
    """Flattened fields [(offset, size, spec type, name)], size, alignment."""
    rows, off, align = [], 0, 1
    for ctype, fname, count in structs[name]:
        if ctype in C_TYPES:
            spell, esize = C_TYPES[ctype]
            ealign = esize
            sub = None
        elif ctype in structs:
            sub, esize, ealign = layout(structs, ctype, prefix + fname + '.')
        else:
            raise EvalError('%s.%s: unknown type %s' % (name, fname, ctype))
        off = (off + ealign - 1) // ealign * ealign
        n = count if count is not None else 1
        if sub is not None:
            if count is not None:
                raise EvalError('%s.%s: arrays of structs are not supported' % (name, fname))
            rows.extend((off + o, s, t, f) for o, s, t, f in sub)
        else:
            tname = spell if count is None else '%s[%d]' % (spell, count)
            rows.append((off, esize * n, tname, prefix + fname))
        off += esize * n
        align = max(align, ealign)
    size = (off + align - 1) // align * align
    return rows, size, align


# ---- the spec's simple tables ----

BORDER_RE = re.compile(r'^(\s*)=+( +=+)+\s*$')


def col_spans(border):
    return [(m.start(), m.end()) for m in re.finditer(r'=+', border)]


class Table:
    def __init__(self, line, spans, header, rows, intro, problems):
        self.line = line          # 1-based line of the top border
        self.spans = spans
        self.header = header
        self.rows = rows          # [(line, [cells])], continuations folded in
        self.intro = intro        # the paragraph right before it
        self.problems = problems  # layout problems (text across a column gap)

    def col(self, title):
        return self.header.index(title) if title in self.header else -1


def split_cells(line, spans):
    cells = []
    for k, (s, _) in enumerate(spans):
        end = spans[k + 1][0] if k + 1 < len(spans) else len(line)
        cells.append(line[s:end].strip())
    return cells


def gap_problems(line, spans, lineno):
    probs = []
    if line[:spans[0][0]].strip():
        probs.append('line %d: text left of the first column' % lineno)
    for k in range(len(spans) - 1):
        gap = line[spans[k][1]:spans[k + 1][0]]
        if gap.strip():
            probs.append('line %d: text across the gap after column %d' % (lineno, k + 1))
    return probs


def parse_tables(lines):
    tables = []
    i = 0
    while i < len(lines):
        if not (BORDER_RE.match(lines[i]) and i + 2 < len(lines) and BORDER_RE.match(lines[i + 2])):
            i += 1
            continue
        spans = col_spans(lines[i])
        problems = []
        if col_spans(lines[i + 2]) != spans:
            problems.append('line %d: header border differs from the top border' % (i + 3))
        problems += gap_problems(lines[i + 1], spans, i + 2)
        header = split_cells(lines[i + 1], spans)
        rows = []
        j = i + 3
        while j < len(lines) and not BORDER_RE.match(lines[j]):
            line = lines[j]
            if line.strip():
                problems += gap_problems(line, spans, j + 1)
                cells = split_cells(line, spans)
                if cells[0] == '' and rows:
                    prev = rows[-1][1]
                    for k, c in enumerate(cells):
                        if c:
                            prev[k] = (prev[k] + ' ' + c).strip()
                else:
                    rows.append((j + 1, cells))
            j += 1
        if j == len(lines):
            problems.append('line %d: table has no bottom border' % (i + 1))
        elif col_spans(lines[j]) != spans:
            problems.append('line %d: bottom border differs from the top border' % (j + 1))
        # the paragraph before it
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        para = []
        while k >= 0 and lines[k].strip():
            para.insert(0, lines[k].strip())
            k -= 1
        tables.append(Table(i + 1, spans, header, rows, ' '.join(para), problems))
        i = j + 1
    return tables


def literal_name(cell, pattern):
    m = re.fullmatch(r'``(%s)``' % pattern, cell)
    return m.group(1) if m else None


def parse_int(text):
    try:
        return int(text, 0)
    except ValueError:
        return None


# ---- checks ----

def main():
    tap = Tap()
    spec_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'docs', 'protocol.rst')

    defs = Defines()
    texts = {}
    for h in HEADERS:
        texts[h] = read(os.path.join('include', 'vmsig', h))
        defs.add_header(h, texts[h])
    parse_errors = []
    for name in sorted(defs.raw):
        try:
            defs.value(name)
        except EvalError as e:
            defs.errors[name] = str(e)
            if REQUIRED_RE.match(name) or name in REQUIRED_EXTRA:
                parse_errors.append(str(e))
    structs = parse_structs(texts['vmsig_wire.h'], defs)
    wire_structs = [s for s in defs.sizes if s.startswith('vmsig_wire_')]
    layouts = {}
    for s in wire_structs:
        if s not in structs:
            parse_errors.append('no typedef struct for %s' % s)
            continue
        try:
            rows, size, _ = layout(structs, s)
        except EvalError as e:
            parse_errors.append(str(e))
            continue
        if size != defs.sizes[s]:
            parse_errors.append('%s: laid out as %d bytes, _Static_assert says %d' % (s, size, defs.sizes[s]))
        layouts[s] = rows
    ktext = texts['vmsig_keys.h']
    kstart = ktext.find('#define VMSIG_KEYS(')
    kend = ktext.find('\n\n', kstart)
    keys = re.findall(r'X\(\s*(\w+)\s*,\s*(\d+)\s*\)\s*(?:/\*\s*(\w+)\s*\*/)?',
                      ktext[kstart:kend] if kstart >= 0 else '')
    if not keys:
        parse_errors.append('no X(name, code) rows in vmsig_keys.h')
    required = sorted(n for n in defs.raw if (REQUIRED_RE.match(n) and '__' not in n)
                      or n in REQUIRED_EXTRA)
    missing_extra = [n for n in REQUIRED_EXTRA if n not in defs.raw]
    parse_errors += ['%s is not defined in the headers' % n for n in missing_extra]
    tap.check('headers parsed: %d constants required in the spec, %d wire structs, %d keys'
              % (len(required), len(layouts), len(keys)), parse_errors)

    try:
        with open(spec_path, encoding='utf-8') as f:
            spec_lines = f.read().split('\n')
    except OSError as e:
        tap.check('spec %s readable' % spec_path, [str(e)])
        return tap.finish()
    tables = parse_tables(spec_lines)

    # -- constant tables --
    spec_consts = {}   # name -> [(value, line)]
    const_problems = []
    errno_problems = []
    n_const_tables = 0
    for t in tables:
        ni, vi = t.col('Name'), t.col('Value')
        if ni < 0 or vi < 0:
            ni, vi = t.col('errno'), t.col('Value')
            if ni < 0 or vi < 0:
                continue
        n_const_tables += 1
        bi = t.col('Bit')
        for line, cells in t.rows:
            name = literal_name(cells[ni], r'VMSIG_\w+')
            ename = literal_name(cells[ni], r'-E[A-Z0-9]+')
            value = parse_int(cells[vi])
            if ename:
                known = getattr(errno, ename[1:], None)
                if known is None:
                    errno_problems.append('line %d: %s is not an errno name' % (line, ename))
                elif value != -known:
                    errno_problems.append('line %d: %s is %s in the spec, -%d on Linux'
                                          % (line, ename, cells[vi], known))
                continue
            if not name:
                continue
            if value is None:
                const_problems.append('line %d: %s: value %r is not a number' % (line, name, cells[vi]))
                continue
            spec_consts.setdefault(name, []).append((value, line))
            if bi >= 0 and parse_int(cells[bi]) is not None and value != 1 << parse_int(cells[bi]):
                const_problems.append('line %d: %s = %#x is not bit %s' % (line, name, value, cells[bi]))
    for name, seen in sorted(spec_consts.items()):
        if name not in defs.raw:
            const_problems.append('line %d: %s is not a constant of the headers' % (seen[0][1], name))
            continue
        if name in defs.errors:
            const_problems.append('%s: %s' % (name, defs.errors[name]))
            continue
        for value, line in seen:
            if value != defs.values[name]:
                const_problems.append('line %d: %s is %d (%#x) in the spec, %d (%#x) in %s'
                                      % (line, name, value, value, defs.values[name],
                                         defs.values[name], defs.where[name]))

    groups = {}
    for name in required:
        m = REQUIRED_RE.match(name)
        groups.setdefault('VMSIG_%s_*' % m.group(1) if m and name not in REQUIRED_EXTRA
                          else 'versions and limits', []).append(name)
    for group in sorted(groups):
        probs = []
        for name in groups[group]:
            if name in defs.errors:
                probs.append(defs.errors[name])
            elif name not in spec_consts:
                probs.append('%s (%d) is in no constant table of the spec' % (name, defs.values[name]))
            elif all(v != defs.values[name] for v, _ in spec_consts[name]):
                probs.append('%s is %s in the spec, %d in %s' % (
                    name, '/'.join(str(v) for v, _ in spec_consts[name]), defs.values[name],
                    defs.where[name]))
        tap.check('%s: %d constants in the spec with the headers\' numbers' % (group, len(groups[group])),
                  probs)
    tap.check('every VMSIG_ name in the spec\'s %d constant tables is a header constant with that number'
              % n_const_tables, const_problems)
    tap.check('errno values in the spec are Linux\'s', errno_problems)

    # -- derived numbers --
    derived = []
    if 'vmsig_wire_input' in defs.sizes and 'VMSIG_TEXT_MAX' in defs.values:
        want = defs.sizes['vmsig_wire_input'] + defs.values['VMSIG_TEXT_MAX']
        found = False
        for t in tables:
            ni, vi = t.col('Name'), t.col('Value')
            for line, cells in t.rows if ni >= 0 and vi >= 0 else []:
                if cells[ni].startswith('``max_payload``'):
                    found = True
                    if parse_int(cells[vi]) != want:
                        derived.append('line %d: max_payload without CAP_MEMWRITE is %s, '
                                       'sizeof(vmsig_wire_input) + VMSIG_TEXT_MAX = %d'
                                       % (line, cells[vi], want))
        if not found:
            derived.append('no ``max_payload`` row in a Name/Value table')
    tap.check('max_payload without CAP_MEMWRITE = sizeof(vmsig_wire_input) + VMSIG_TEXT_MAX', derived)

    # -- key codes --
    key_problems = []
    key_tables = [t for t in tables if t.col('Key') >= 0 and t.col('Code') >= 0]
    spec_keys = {}
    for t in key_tables:
        ki, ci, li = t.col('Key'), t.col('Code'), t.col('Linux name')
        for line, cells in t.rows:
            k = literal_name(cells[ki], r'\w+')
            if not k:
                key_problems.append('line %d: key cell %r is not ``name``' % (line, cells[ki]))
                continue
            if k in spec_keys:
                key_problems.append('line %d: key %s listed twice' % (line, k))
            spec_keys[k] = (parse_int(cells[ci]), literal_name(cells[li], r'\w+') if li >= 0 else None,
                            line)
    if not key_tables:
        key_problems.append('no key table (columns Key, Code, Linux name) in the spec')
    header_keys = {}
    for name, code, linux in keys:
        header_keys[name] = (int(code), linux or None)
        if name not in spec_keys:
            key_problems.append('key %s (%s) is not in the spec' % (name, code))
            continue
        scode, slinux, line = spec_keys[name]
        if scode != int(code):
            key_problems.append('line %d: key %s is %s in the spec, %s in vmsig_keys.h'
                                % (line, name, scode, code))
        if linux and slinux != linux:
            key_problems.append('line %d: key %s is %s in the spec, %s in vmsig_keys.h'
                                % (line, name, slinux, linux))
    for name, (_, _, line) in sorted(spec_keys.items()):
        if name not in header_keys:
            key_problems.append('line %d: key %s is not in vmsig_keys.h' % (line, name))
    tap.check('key codes: the %d keys of vmsig_keys.h, and only they, in the spec with code and '
              'Linux name' % len(keys), key_problems)

    # -- struct field tables --
    struct_tables = {}
    orphan = []
    for t in tables:
        if t.header[:5] != ['Offset', 'Size', 'Type', 'Field', 'Meaning']:
            continue
        named = re.findall(r'``(vmsig_wire_\w+)``\s*\((\d+) bytes\)', t.intro)
        if not named:
            orphan.append('line %d: field table after no "``vmsig_wire_x`` (N bytes)"' % t.line)
            continue
        struct_tables.setdefault(named[-1][0], []).append((t, int(named[-1][1])))
    for s in sorted(set(wire_structs) | set(struct_tables)):
        probs = []
        if s not in struct_tables:
            tap.check('%s: has a field table in the spec' % s, ['no field table names %s' % s])
            continue
        for t, said in struct_tables[s]:
            if s not in defs.sizes:
                probs.append('line %d: %s has no _Static_assert size in vmsig_wire.h' % (t.line, s))
                continue
            size = defs.sizes[s]
            if said != size:
                probs.append('line %d: the text says %d bytes, _Static_assert says %d'
                             % (t.line, said, size))
            rows = []
            for line, cells in t.rows:
                off, sz = parse_int(cells[0]), parse_int(cells[1])
                field = literal_name(cells[3], r'[\w.]+')
                if off is None or sz is None or not field:
                    probs.append('line %d: row %r is not offset, size, type, ``field``'
                                 % (line, cells[:4]))
                    continue
                rows.append((off, sz, cells[2], field, line))
            expect = 0
            for off, sz, _, field, line in rows:
                if off != expect:
                    probs.append('line %d: %s at offset %d, the previous field ends at %d'
                                 % (line, field, off, expect))
                expect = off + sz
            if rows and expect != size:
                probs.append('the fields end at %d, the struct is %d bytes' % (expect, size))
            cl = layouts.get(s)
            if cl is not None:
                for k in range(max(len(cl), len(rows))):
                    c = cl[k] if k < len(cl) else None
                    r = rows[k] if k < len(rows) else None
                    if c is None:
                        probs.append('line %d: %s is not a field of %s' % (r[4], r[3], s))
                    elif r is None:
                        probs.append('field %s (offset %d) is missing' % (c[3], c[0]))
                    elif (r[0], r[1], r[2], r[3]) != c:
                        probs.append('line %d: spec says %d %d %s %s, the header %d %d %s %s'
                                     % ((r[4],) + r[:4] + c))
        tap.check('%s: field table matches the C struct (%d bytes)' % (s, defs.sizes.get(s, -1)), probs)
    tap.check('every field table names its struct', orphan)

    # -- kind table vs lib/event.c --
    kind_problems = []
    kt = [t for t in tables if all(t.col(c) >= 0 for c in
                                   ('Name', 'Value', 'Label', 'Dir', 'Fixed', 'Tail', 'fds',
                                    'Source', 'Cap', 'Class', 'Feature'))]
    c_rows = []
    try:
        ctext = strip_comments(read(KINDS_C))
        m = re.search(r'\w*kind_rows\s*\[[^\]]*\]\s*=\s*\{(.*?)\n\};', ctext, re.S)
        if not m:
            raise EvalError('no kind_rows[] table in %s' % KINDS_C)
        for body in re.findall(r'\{([^{}]*)\}', m.group(1)):
            parts, depth, cur = [], 0, ''
            for ch in body:
                if ch == ',' and depth == 0:
                    parts.append(cur.strip())
                    cur = ''
                    continue
                depth += ch == '('
                depth -= ch == ')'
                cur += ch
            if cur.strip():
                parts.append(cur.strip())
            if len(parts) != 10:
                raise EvalError('kind_rows row with %d fields: %s' % (len(parts), ' '.join(body.split())))
            c_rows.append(parts)
    except (OSError, EvalError) as e:
        kind_problems.append(str(e))
    if len(kt) != 1:
        kind_problems.append('%d frame-kind tables in the spec, want 1' % len(kt))
    else:
        t = kt[0]
        spec_rows = {}
        for line, cells in t.rows:
            name = literal_name(cells[t.col('Name')], r'VMSIG_\w+')
            if name:
                spec_rows[name] = (cells, line)
            else:
                kind_problems.append('line %d: %r is not ``VMSIG_X``' % (line, cells[0]))

        def short(expr, prefix, none=('none',)):
            expr = expr.strip()
            if expr in ('0', 'NOSRC', 'VMSIG_SRC_NONE'):
                return none
            return (expr[len(prefix):] if expr.startswith(prefix) else expr,)

        seen = set()
        for parts in c_rows:
            kname, cdir, cfds, cfixed, ctail, csrc, ccap, ccls, cfeat, clabel = parts
            seen.add(kname)
            if kname not in spec_rows:
                kind_problems.append('kind %s of kind_rows is not in the spec\'s table' % kname)
                continue
            cells, line = spec_rows[kname]
            get = lambda col: cells[t.col(col)]
            try:
                want = {
                    'Dir': ({'VMSIG_WIRE_C2S': 'C->S', 'VMSIG_WIRE_S2C': 'S->C'}.get(cdir, cdir),),
                    'fds': ({'VMSIG_WIRE_FDS_NONE': '0',
                             'VMSIG_WIRE_FDS_MEMCTX': '0..%d' % defs.values['VMSIG_WIRE_MAX_FDS']}
                            .get(cfds, cfds),),
                    'Fixed': (str(defs.eval_expr(cfixed, defs.sizes)),),
                    'Tail': (str(defs.eval_expr(ctail, defs.sizes)),),
                    'Source': short(csrc, 'VMSIG_SRC_'),
                    'Cap': short(ccap, 'VMSIG_CAP_', ('none', 'by class')),
                    'Class': short(ccls, 'VMSIG_CLASS_'),
                    'Feature': short(cfeat, 'VMSIG_FEAT_') + (('``%s``' % cfeat.strip(),)
                                                             if cfeat.strip() != '0' else ()),
                    'Label': (clabel.strip().strip('"'),),
                }
            except (EvalError, SyntaxError, KeyError) as e:
                kind_problems.append('%s: %s' % (kname, e))
                continue
            for col, ok in want.items():
                if get(col) not in ok:
                    kind_problems.append('line %d: %s %s is %r in the spec, %r in kind_rows'
                                         % (line, kname, col, get(col), ok[0]))
        for name, (_, line) in sorted(spec_rows.items()):
            if c_rows and name not in seen:
                kind_problems.append('line %d: %s is not a row of kind_rows' % (line, name))
    tap.check('frame-kind table matches lib/event.c kind_rows (%d kinds)' % len(c_rows), kind_problems)

    # -- labels (vmsig_runstate_name, vmsig_cause_name, vmsig_class_name) --
    label_problems = []
    arrays = {}
    try:
        ctext = strip_comments(read(KINDS_C))
        for arr, prefix in (('runstate_names', 'VMSIG_RS_'), ('cause_names', 'VMSIG_SC_'),
                            ('class_names', 'VMSIG_CLASS_')):
            m = re.search(r'\b%s\s*\[[^\]]*\]\s*=\s*\{(.*?)\};' % arr, ctext, re.S)
            if not m:
                label_problems.append('no %s[] in %s' % (arr, KINDS_C))
                continue
            items = [x.strip() for x in m.group(1).split(',') if x.strip()]
            arrays[prefix] = [x.strip('"') if x != 'NULL' else None for x in items]
    except OSError as e:
        label_problems.append(str(e))
    n_labels = 0
    for t in tables:
        ni, vi, li = t.col('Name'), t.col('Value'), t.col('Label')
        if ni < 0 or vi < 0 or li < 0:
            continue
        for line, cells in t.rows:
            name = literal_name(cells[ni], r'VMSIG_\w+')
            prefix = next((p for p in arrays if name and name.startswith(p)), None)
            if not prefix or name not in defs.values:
                continue
            names = arrays[prefix]
            v = defs.values[name]
            want = names[v] if 0 <= v < len(names) else None
            n_labels += 1
            if want != cells[li]:
                label_problems.append('line %d: %s is labelled %r in the spec, %r in %s'
                                      % (line, name, cells[li], want, KINDS_C))
    tap.check('%d run-state, cause and class labels match lib/event.c' % n_labels, label_problems)

    # -- example frames --
    ex_problems = []
    n_ex = 0
    fixed_of = {}
    for parts in c_rows:
        try:
            fixed_of[parts[0]] = (defs.eval_expr(parts[3], defs.sizes), defs.eval_expr(parts[4], defs.sizes))
        except (EvalError, SyntaxError):
            pass
    for i, line in enumerate(spec_lines):
        m = re.match(r'^``(VMSIG_\w+)`` frame, (\d+) bytes \(hex\)::\s*$', line)
        if not m:
            continue
        n_ex += 1
        name, size = m.group(1), int(m.group(2))
        data = []
        j = i + 1
        while j < len(spec_lines) and not spec_lines[j].strip():
            j += 1
        while j < len(spec_lines) and (spec_lines[j].startswith(' ') or not spec_lines[j].strip()):
            for tok in spec_lines[j].split()[:16]:
                if not re.fullmatch(r'[0-9a-f]{2}', tok):
                    break
                data.append(int(tok, 16))
            j += 1
        where = 'line %d: %s example' % (i + 1, name)
        if len(data) != size:
            ex_problems.append('%s has %d bytes, the text says %d' % (where, len(data), size))
            continue
        if size < 32:
            ex_problems.append('%s is shorter than a header' % where)
            continue
        kind = data[0] | data[1] << 8
        plen = int.from_bytes(bytes(data[4:8]), 'little')
        if name not in defs.values or kind != defs.values[name]:
            ex_problems.append('%s: kind 0x%04x is not %s' % (where, kind, name))
        if plen != size - 32:
            ex_problems.append('%s: len %d, but %d payload bytes follow' % (where, plen, size - 32))
        if name in fixed_of:
            fixed, tail = fixed_of[name]
            if not fixed <= plen <= fixed + tail:
                ex_problems.append('%s: len %d, the kind takes %d..%d' % (where, plen, fixed, fixed + tail))
        if name in ('VMSIG_MSG_HELLO', 'VMSIG_MSG_WELCOME') and size >= 36:
            major = data[32] | data[33] << 8
            if major != defs.values.get('VMSIG_WIRE_MAJOR'):
                ex_problems.append('%s: major %d' % (where, major))
    if not n_ex:
        ex_problems.append('no example frames (``VMSIG_X`` frame, N bytes (hex)::)')
    tap.check('%d example frames have the size, kind and length they claim' % n_ex, ex_problems)

    # -- layout --
    lay = []
    for t in tables:
        lay += t.problems
    tap.check('%d simple tables are well formed' % len(tables), lay)

    return tap.finish()


if __name__ == '__main__':
    sys.exit(main())
