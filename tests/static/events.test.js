'use strict';
// docs/events.md against the code: every event type a service writes
// (bus_call_event in a request handler, event_ctx_emit in an event handler,
// directly or through a helper that passes the type on) is documented, every
// documented type is written somewhere, and each entry names the payload
// message the code packs, with a field table that matches the proto file.
// The envelope table matches ev.Event. The catalogue is a public interface:
// this keeps it true as services grow.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const root = process.env.PARTA_ROOT || path.resolve(__dirname, '..', '..');
const read = (name) => fs.readFileSync(path.join(root, name), 'utf8');

const EMITTERS = { bus_call_event: { type: 1, payload: 3 }, event_ctx_emit: { type: 1, payload: 3 } };
const EVENT_TYPE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;

function once(fn) {
    let done = false;
    let value;
    return () => {
        if (!done) {
            value = fn();
            done = true;
        }
        return value;
    };
}

// --- the proto files (messages and their fields) ---

const protoMessages = once(() => {
    const messages = new Map();     // "pkg.Name" -> [{name, type}] with type as written ("repeated string")
    const dir = path.join(root, 'proto');
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.proto'))) {
        const text = fs.readFileSync(path.join(dir, file), 'utf8')
            .replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ');
        const pkg = (text.match(/\bpackage\s+([\w.]+)\s*;/) || [])[1] || '';
        // Top-level messages: the body up to the matching brace.
        const re = /(^|[;}\s])message\s+(\w+)\s*\{/g;
        let m;
        while ((m = re.exec(text))) {
            let depth = 1;
            let i = re.lastIndex;
            while (i < text.length && depth > 0) {
                if (text[i] === '{') depth++;
                else if (text[i] === '}') depth--;
                i++;
            }
            let body = text.slice(re.lastIndex, i - 1);
            re.lastIndex = i;
            // Nested messages and enums are not fields; oneof members are.
            body = body.replace(/\b(message|enum)\s+\w+\s*\{[^{}]*\}/g, ' ')
                .replace(/\boneof\s+\w+\s*\{([^{}]*)\}/g, '$1');
            const fields = [];
            for (const f of body.matchAll(/(?:^|[;{}\s])(repeated\s+|optional\s+)?(map\s*<\s*[\w.]+\s*,\s*[\w.]+\s*>|[\w.]+)\s+(\w+)\s*=\s*\d+/g)) {
                const label = f[1] && f[1].trim() === 'repeated' ? 'repeated ' : '';
                fields.push({ name: f[3], type: label + f[2].replace(/\s+/g, '') });
            }
            messages.set(`${pkg}.${m[2]}`, fields);
        }
    }
    return messages;
});

// protoc-c names message pkg.Name as Pkg__Name: compare without case and "_".
function protoOfCType(ctype) {
    const norm = (s) => s.toLowerCase().replace(/_/g, '');
    for (const name of protoMessages().keys()) {
        const dot = name.lastIndexOf('.');
        const c = `${name.slice(0, dot).replace(/\./g, '__')}__${name.slice(dot + 1)}`;
        if (norm(c) === norm(ctype)) return name;
    }
    return null;
}

// --- the C code ---

function cFiles(dir) {
    const out = [];
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) out.push(...cFiles(p));
        else if (e.name.endsWith('.c')) out.push(p);
    }
    return out.sort();
}

// Comments and preprocessor lines blanked (newlines kept, so offsets give
// line numbers); strings kept.
function stripC(text) {
    let out = '';
    let i = 0;
    let lineStart = true;
    while (i < text.length) {
        const c = text[i];
        if (lineStart && /[ \t]/.test(c)) {
            out += c;
            i++;
            continue;
        }
        if (lineStart && c === '#') {
            while (i < text.length && text[i] !== '\n') {
                if (text[i] === '\\' && text[i + 1] === '\n') {
                    out += ' \n';
                    i += 2;
                    continue;
                }
                out += ' ';
                i++;
            }
            continue;
        }
        lineStart = false;
        if (c === '/' && text[i + 1] === '*') {
            const end = text.indexOf('*/', i + 2);
            const stop = end < 0 ? text.length : end + 2;
            out += text.slice(i, stop).replace(/[^\n]/g, ' ');
            i = stop;
        } else if (c === '/' && text[i + 1] === '/') {
            while (i < text.length && text[i] !== '\n') {
                out += ' ';
                i++;
            }
        } else if (c === '"' || c === '\'') {
            let j = i + 1;
            while (j < text.length && text[j] !== c) j += text[j] === '\\' ? 2 : 1;
            out += text.slice(i, j + 1);
            i = j + 1;
        } else {
            if (c === '\n') lineStart = true;
            out += c;
            i++;
        }
    }
    return out;
}

// Index just past the bracket matching the one at `open`.
function matching(text, open) {
    const pairs = { '(': ')', '{': '}', '[': ']' };
    const stack = [pairs[text[open]]];
    let i = open + 1;
    while (i < text.length && stack.length) {
        const c = text[i];
        if (c === '"' || c === '\'') {
            let j = i + 1;
            while (j < text.length && text[j] !== c) j += text[j] === '\\' ? 2 : 1;
            i = j + 1;
            continue;
        }
        if (pairs[c]) stack.push(pairs[c]);
        else if (c === stack[stack.length - 1]) stack.pop();
        i++;
    }
    return i;
}

// Top-level arguments of a call whose "(" is at `open`.
function callArgs(text, open) {
    const end = matching(text, open);
    const args = [];
    let depth = 0;
    let start = open + 1;
    for (let i = open + 1; i < end - 1; i++) {
        const c = text[i];
        if (c === '"' || c === '\'') {
            let j = i + 1;
            while (j < end && text[j] !== c) j += text[j] === '\\' ? 2 : 1;
            i = j;
        } else if ('({['.includes(c)) depth++;
        else if (')}]'.includes(c)) depth--;
        else if (c === ',' && depth === 0) {
            args.push(text.slice(start, i).trim());
            start = i + 1;
        }
    }
    const last = text.slice(start, end - 1).trim();
    if (last || args.length) args.push(last);
    return args;
}

// Function definitions of a file: name, parameter names, body range.
function functions(text) {
    const out = [];
    let i = 0;
    let headerStart = 0;
    while (i < text.length) {
        const c = text[i];
        if (c === '"' || c === '\'') {
            let j = i + 1;
            while (j < text.length && text[j] !== c) j += text[j] === '\\' ? 2 : 1;
            i = j + 1;
        } else if (c === ';' || c === '}') {
            i++;
            headerStart = i;
        } else if (c === '(') {
            i = matching(text, i);     // parameter lists and initialisers
        } else if (c === '{') {
            const end = matching(text, i);
            const header = text.slice(headerStart, i);
            const m = header.match(/(\w+)\s*\(([\s\S]*)\)\s*$/);
            if (m && !/=/.test(header.slice(0, m.index))) {
                const params = m[2].split(',').map((p) => (p.trim().match(/(\w+)\s*(\[[^\]]*\])?$/) || [])[1] || '');
                out.push({
                    name: m[1], params, start: i, end,
                    isStatic: /\bstatic\b/.test(header),
                });
            }
            i = end;
            headerStart = i;
        } else i++;
    }
    return out;
}

const lineOf = (text, offset) => text.slice(0, offset).split('\n').length;

// Every event the services write: [{type, payload, at}], and problems for
// calls whose type cannot be told from the code.
const written = once(() => {
    const files = cFiles(path.join(root, 'services')).map((file) => {
        const text = stripC(fs.readFileSync(file, 'utf8'));
        return { file: path.relative(root, file), text, fns: functions(text) };
    });
    const events = [];
    const problems = [];
    // Emitters: the two functions, then helpers that pass a parameter on as
    // the type (static ones are looked up in their own file only, and are
    // keyed by file too: two files may each have a static helper of the
    // same name).
    const emitters = new Map(Object.entries(EMITTERS).map(([name, idx]) => [name, { ...idx, name, file: null }]));
    const done = new Set();
    let changed = true;
    while (changed) {
        changed = false;
        for (const [, em] of [...emitters]) {
            const name = em.name;
            for (const f of files) {
                if (em.file && em.file !== f.file) continue;
                const key = `${name}|${f.file}`;
                if (done.has(key)) continue;
                done.add(key);
                const re = new RegExp(`\\b${name}\\s*\\(`, 'g');
                let m;
                while ((m = re.exec(f.text))) {
                    const open = m.index + m[0].length - 1;
                    const fn = f.fns.find((d) => open > d.start && open < d.end);
                    if (!fn) continue;      // the definition itself, or a prototype
                    const args = callArgs(f.text, open);
                    const at = `${f.file}:${lineOf(f.text, m.index)}`;
                    const typeArg = args[em.type] || '';
                    // The payload as the code declares it, for direct calls.
                    let payload = em.payload;
                    let payloadParam = -1;      // a helper passing its parameter on
                    if (typeof payload === 'number') {
                        const expr = (args[payload] || '').replace(/\([^()]*\*\s*\)/g, '').trim();
                        if (/^(NULL|0)$/.test(expr)) payload = 'none';
                        else if (/^\w+$/.test(expr) && fn.params.includes(expr)) {
                            payloadParam = fn.params.indexOf(expr);
                            payload = null;
                        } else {
                            const v = expr.match(/^&?\s*(\w+)\s*(?:\.|->)\s*base$/) || expr.match(/^(\w+)$/);
                            const body = f.text.slice(fn.start, fn.end);
                            const decl = v && body.match(new RegExp(`\\b([A-Z]\\w*__\\w+)\\s*\\*?\\s*\\b${v[1]}\\b\\s*[=;,]`));
                            payload = decl ? protoOfCType(decl[1]) || `?${decl[1]}` : null;
                        }
                    }
                    let literals = [...typeArg.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((s) => s[1]);
                    if (!literals.length && /^\w+$/.test(typeArg) && !fn.params.includes(typeArg)) {
                        // A local variable: the literals of every value it is given.
                        const body = f.text.slice(fn.start, fn.end);
                        const sets = [...body.matchAll(new RegExp(`\\b${typeArg}\\s*=(?!=)([^;]*);`, 'g'))];
                        const values = sets.map((s) => [...s[1].matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]));
                        if (values.length && values.every((v) => v.length)) literals = values.flat();
                    }
                    if (literals.length) {
                        for (const type of literals) events.push({ type, payload, at });
                    } else if (/^\w+$/.test(typeArg) && fn.params.includes(typeArg)) {
                        const helper = fn.name;
                        const key = fn.isStatic ? `${helper}|${f.file}` : helper;
                        if (!emitters.has(key)) {
                            emitters.set(key, {
                                name: helper,
                                type: fn.params.indexOf(typeArg),
                                payload: payloadParam >= 0 ? payloadParam : payload,
                                file: fn.isStatic ? f.file : null,
                            });
                            changed = true;
                        }
                    } else {
                        problems.push(`${at}: cannot tell the event type written by ${name} (${typeArg || 'no argument'}); pass a string literal or a parameter of ${fn.name}`);
                    }
                }
            }
        }
    }
    return { events, problems };
});

// --- the document ---

const doc = once(() => read('docs/events.md'));

// Entries: headings whose whole text is an event type in backquotes.
const entries = once(() => {
    const lines = doc().split('\n');
    const out = [];
    let fence = false;
    const headings = [];
    lines.forEach((line, i) => {
        if (/^```/.test(line)) fence = !fence;
        const m = !fence && line.match(/^(#{1,6})\s+(.*?)\s*$/);
        if (m) headings.push({ level: m[1].length, text: m[2], line: i });
    });
    headings.forEach((h, k) => {
        const m = h.text.match(/^`([^`]+)`$/);
        if (!m || !EVENT_TYPE.test(m[1])) return;
        let end = lines.length;
        for (const later of headings.slice(k + 1)) {
            if (later.level <= h.level) {
                end = later.line;
                break;
            }
        }
        const body = lines.slice(h.line + 1, end);
        const payloadLine = body.find((l) => /^Payload:/.test(l));
        let payload;
        if (!payloadLine) payload = undefined;
        else if (/^Payload:\s*none\b/.test(payloadLine)) payload = 'none';
        else payload = (payloadLine.match(/^Payload:\s*`([\w.]+)`/) || [])[1];
        out.push({ type: m[1], line: h.line + 1, payload, fields: fieldTable(body) });
    });
    return out;
});

// The first "| field | type | meaning |" table of some lines: [{name, type}].
function fieldTable(lines) {
    const start = lines.findIndex((l) => /^\|\s*field\s*\|\s*type\s*\|\s*meaning\s*\|/.test(l));
    if (start < 0) return null;
    const rows = [];
    for (const l of lines.slice(start + 2)) {
        if (!/^\|/.test(l)) break;
        const cells = l.split('|').slice(1, -1).map((c) => c.trim());
        rows.push({
            name: (cells[0].match(/^`([^`]+)`$/) || [])[1] || cells[0],
            type: (cells[1].match(/^`([^`]+)`$/) || [])[1] || cells[1],
        });
    }
    return rows;
}

// The catalogue's summary table "| type | payload | written when |".
function summaryTable() {
    const lines = doc().split('\n');
    const start = lines.findIndex((l) => /^\|\s*type\s*\|\s*payload\s*\|/.test(l));
    if (start < 0) return null;
    const rows = [];
    for (const l of lines.slice(start + 2)) {
        if (!/^\|/.test(l)) break;
        const cells = l.split('|').slice(1, -1).map((c) => c.trim());
        rows.push({
            type: (cells[0].match(/^`([^`]+)`$/) || [])[1] || cells[0],
            payload: (cells[1].match(/^`([^`]+)`$/) || [])[1] || cells[1],
        });
    }
    return rows;
}

// --- the tests ---

test('the event types the services write can be read from the code', () => {
    const { events, problems } = written();
    assert.deepEqual(problems, []);
    assert.ok(events.length > 0, 'no bus_call_event or event_ctx_emit call found in services/');
    for (const e of events) assert.match(e.type, EVENT_TYPE, `${e.at}: event type "${e.type}"`);
});

test('every event type written in services/ is documented in docs/events.md', () => {
    const documented = new Set(entries().map((e) => e.type));
    const missing = [...new Set(written().events.filter((e) => !documented.has(e.type))
        .map((e) => `${e.type} (${e.at})`))];
    assert.deepEqual(missing, [], 'event types without an entry (a heading `type`) in docs/events.md');
});

test('every event type documented in docs/events.md is written by a service', () => {
    const types = new Set(written().events.map((e) => e.type));
    const stale = entries().filter((e) => !types.has(e.type)).map((e) => `${e.type} (docs/events.md:${e.line})`);
    assert.deepEqual(stale, [], 'documented event types no service writes');
    const seen = new Set();
    for (const e of entries()) {
        assert.ok(!seen.has(e.type), `${e.type} is documented twice`);
        seen.add(e.type);
    }
});

test('each entry names the payload the code writes and lists its fields', () => {
    const messages = protoMessages();
    const problems = [];
    for (const e of entries()) {
        const where = `${e.type} (docs/events.md:${e.line})`;
        if (!e.payload) {
            problems.push(`${where}: no "Payload: \`package.Message\`" line`);
            continue;
        }
        for (const w of written().events.filter((x) => x.type === e.type)) {
            if (w.payload && w.payload !== e.payload) {
                problems.push(`${where}: documented payload ${e.payload}, but ${w.at} writes ${w.payload}`);
            }
        }
        if (e.payload === 'none') continue;
        const fields = messages.get(e.payload);
        if (!fields) {
            problems.push(`${where}: no message ${e.payload} in proto/`);
            continue;
        }
        if (!e.fields) {
            problems.push(`${where}: no "| field | type | meaning |" table`);
            continue;
        }
        const want = fields.map((f) => `${f.name}: ${f.type}`);
        const got = e.fields.map((f) => `${f.name}: ${f.type}`);
        if (JSON.stringify(got) !== JSON.stringify(want)) {
            problems.push(`${where}: the field table says [${got.join('; ')}], ${e.payload} has [${want.join('; ')}]`);
        }
    }
    assert.deepEqual(problems, []);
});

test('the catalogue table lists exactly the documented types, with their payloads', () => {
    const rows = summaryTable();
    assert.ok(rows, 'docs/events.md has no "| type | payload | written when |" table');
    const fromTable = rows.map((r) => `${r.type} ${r.payload}`).sort();
    const fromEntries = entries().map((e) => `${e.type} ${e.payload}`).sort();
    assert.deepEqual(fromTable, fromEntries);
});

test('the envelope table matches ev.Event', () => {
    const lines = doc().split('\n');
    const at = lines.findIndex((l) => /^#+\s.*`ev\.Event`/.test(l));
    assert.ok(at >= 0, 'docs/events.md has no section on `ev.Event`');
    const rows = fieldTable(lines.slice(at + 1));
    assert.ok(rows, 'the ev.Event section has no "| field | type | meaning |" table');
    const fields = protoMessages().get('ev.Event');
    assert.ok(fields, 'proto/events.proto has no ev.Event');
    assert.deepEqual(rows.map((r) => `${r.name}: ${r.type}`), fields.map((f) => `${f.name}: ${f.type}`));
});
