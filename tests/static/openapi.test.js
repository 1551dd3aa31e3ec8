'use strict';
// docs/openapi.yaml against the gateway's route table and the proto files:
// every route the gateway serves is documented and every documented operation
// is served; success statuses, public/bearer security, path parameters and
// rate-limit classes agree; request and reply schemas have exactly the fields
// of the proto messages the route carries, in the JSON form of common/codec.h
// (times as date-time strings, enums as their lowercase names); the document
// is valid enough to use (OpenAPI 3.1, every $ref resolves).
// Runs after `make all` (scripts/test.sh sets PARTA_ROOT and PARTA_BIN).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const yaml = require('js-yaml');

const root = process.env.PARTA_ROOT || path.resolve(__dirname, '..', '..');
const bin = process.env.PARTA_BIN || path.join(root, 'build', 'bin');
const read = (name) => fs.readFileSync(path.join(root, name), 'utf8');

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

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

// --- the gateway's route table ---

const routes = once(() => {
    const exe = path.join(bin, 'parta-gateway');
    const r = spawnSync(exe, ['--list-routes=1', '--log=warn'], { encoding: 'utf8', timeout: 30000 });
    assert.equal(r.error, undefined, `cannot run ${exe}: ${r.error}`);
    assert.equal(r.status, 0, `parta-gateway --list-routes failed: ${r.stderr}`);
    const list = JSON.parse(r.stdout);
    assert.ok(Array.isArray(list) && list.length > 0, 'the route table is empty');
    for (const route of list) {
        assert.match(route.method, /^[A-Z]+$/, JSON.stringify(route));
        assert.match(route.path, /^\//, JSON.stringify(route));
    }
    return list;
});

const routeKey = (method, p) => `${method.toUpperCase()} ${p}`;

// "{a}" names in a path pattern; the gateway and OpenAPI write them alike.
const templateParams = (p) => [...p.matchAll(/\{([^{}/]+)\}/g)].map((m) => m[1]);

// "otp_phone:phone,otp_ip:ip" -> [{class, per}]
function routeLimits(route) {
    if (!route.limits) return [];
    return route.limits.split(',').map((item) => {
        const [cls, per] = item.split(':');
        return { class: cls, per };
    });
}

// GW_RL_DEFAULT_SPEC of gateway/gw_ratelimit.h: class -> "N/P[,N/P]".
const defaultLimits = once(() => {
    const h = read('gateway/gw_ratelimit.h');
    const m = h.match(/#define\s+GW_RL_DEFAULT_SPEC((?:[^\n]*\\\n)*[^\n]*)/);
    assert.ok(m, 'gateway/gw_ratelimit.h has no GW_RL_DEFAULT_SPEC');
    const spec = [...m[1].matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((s) => s[1]).join('');
    const classes = new Map();
    for (const part of spec.split(';').filter(Boolean)) {
        const [name, rules] = part.split('=');
        classes.set(name, rules);
    }
    assert.ok(classes.has('ip'), 'the default rate limits have no ip class');
    return classes;
});

// --- the document ---

const spec = once(() => {
    const doc = yaml.load(read('docs/openapi.yaml'));
    assert.equal(typeof doc, 'object');
    return doc;
});

function pointer(doc, ref) {
    assert.ok(ref.startsWith('#/'), `only local $refs are used: ${ref}`);
    let node = doc;
    for (const raw of ref.slice(2).split('/')) {
        const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
        assert.ok(node !== null && typeof node === 'object' && Object.hasOwn(node, key),
            `$ref ${ref} does not resolve`);
        node = node[key];
    }
    return node;
}

function deref(node) {
    const seen = new Set();
    while (node && typeof node === 'object' && typeof node.$ref === 'string') {
        assert.ok(!seen.has(node.$ref), `$ref loop at ${node.$ref}`);
        seen.add(node.$ref);
        node = pointer(spec(), node.$ref);
    }
    return node;
}

function operations() {
    const ops = [];
    for (const [p, item] of Object.entries(spec().paths || {})) {
        for (const method of METHODS) {
            if (item[method]) ops.push({ path: p, method, item, op: item[method] });
        }
    }
    return ops;
}

const opFor = (route) => {
    const item = spec().paths[route.path];
    return item && item[route.method.toLowerCase()];
};

// --- the proto files ---

// A small parser for the proto3 the project writes: packages, messages
// (fields, oneofs, maps, nested types), enums and services.
const protos = once(() => {
    const messages = new Map();   // "pkg.Name" -> {fields: [{name, type, repeated, map}], pkg}
    const enums = new Map();      // "pkg.Name" -> {short, values: [{name, number}]}
    const rpcs = new Map();       // "pkg.rpc" -> {input, output} (qualified names)
    const dir = path.join(root, 'proto');
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.proto')).sort()) {
        const text = fs.readFileSync(path.join(dir, file), 'utf8')
            .replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ');
        const tokens = text.match(/"(?:[^"\\]|\\.)*"|[A-Za-z_][\w.]*|-?\d+|[{}()<>=;,[\]]/g) || [];
        let i = 0;
        let pkg = '';
        const pending = [];
        const next = () => tokens[i++];
        const expect = (t) => assert.equal(next(), t, `${file}: expected ${t} near token ${i}`);
        const skipStatement = () => {
            let depth = 0;
            while (i < tokens.length) {
                const t = next();
                if (t === '[' || t === '(' || t === '{') depth++;
                else if (t === ']' || t === ')' || t === '}') depth--;
                else if (t === ';' && depth <= 0) return;
            }
        };
        const parseEnum = (qual, short) => {
            const values = [];
            expect('{');
            for (let t = next(); t !== '}'; t = next()) {
                if (t === 'option' || t === 'reserved') {
                    skipStatement();
                    continue;
                }
                expect('=');
                const number = Number(next());
                values.push({ name: t, number });
                skipStatement();
            }
            enums.set(qual, { short, values });
        };
        const parseMessage = (qual) => {
            const msg = { pkg, fields: [], scope: qual };
            messages.set(qual, msg);
            expect('{');
            const field = (t) => {
                let repeated = false;
                if (t === 'repeated' || t === 'optional') {
                    repeated = t === 'repeated';
                    t = next();
                }
                if (t === 'map') {
                    expect('<');
                    const key = next();
                    expect(',');
                    const value = next();
                    expect('>');
                    msg.fields.push({ name: next(), type: value, key, map: true, repeated: false });
                } else {
                    msg.fields.push({ name: next(), type: t, repeated, map: false });
                }
                skipStatement();
            };
            for (let t = next(); t !== '}'; t = next()) {
                if (t === 'message') parseMessage(`${qual}.${next()}`);
                else if (t === 'enum') {
                    const name = next();
                    parseEnum(`${qual}.${name}`, name);
                } else if (t === 'oneof') {
                    next();
                    expect('{');
                    for (let u = next(); u !== '}'; u = next()) {
                        if (u === 'option') skipStatement();
                        else field(u);
                    }
                } else if (t === 'option' || t === 'reserved' || t === 'extensions') skipStatement();
                else field(t);
            }
            pending.push(msg);
        };
        while (i < tokens.length) {
            const t = next();
            if (t === 'package') {
                pkg = next();
                expect(';');
            } else if (t === 'message') parseMessage(`${pkg}.${next()}`);
            else if (t === 'enum') {
                const name = next();
                parseEnum(`${pkg}.${name}`, name);
            } else if (t === 'service') {
                next();
                expect('{');
                for (let u = next(); u !== '}'; u = next()) {
                    if (u !== 'rpc') {
                        skipStatement();
                        continue;
                    }
                    const name = next();
                    expect('(');
                    let input = next();
                    if (input === 'stream') input = next();
                    expect(')');
                    expect('returns');
                    expect('(');
                    let output = next();
                    if (output === 'stream') output = next();
                    expect(')');
                    const end = next();
                    if (end === '{') {
                        while (next() !== '}');
                    }
                    rpcs.set(`${pkg}.${name}`, { input, output, pkg });
                }
            } else if (t !== ';') skipStatement();
        }
        for (const msg of pending) msg.file = file;
    }
    // Resolves a type name as protoc does, from the innermost scope out.
    const resolve = (name, scope) => {
        if (name.startsWith('.')) name = name.slice(1);
        const parts = scope.split('.');
        for (let n = parts.length; n >= 0; n--) {
            const q = [...parts.slice(0, n), name].join('.');
            if (messages.has(q)) return { kind: 'message', name: q };
            if (enums.has(q)) return { kind: 'enum', name: q };
        }
        return null;
    };
    for (const [, r] of rpcs) {
        const input = resolve(r.input, r.pkg);
        const output = resolve(r.output, r.pkg);
        assert.ok(input && output, `rpc types not found: ${r.input} ${r.output}`);
        r.input = input.name;
        r.output = output.name;
    }
    return { messages, enums, rpcs, resolve };
});

const SCALARS = {
    double: 'number', float: 'number',
    int32: 'integer', int64: 'integer', uint32: 'integer', uint64: 'integer',
    sint32: 'integer', sint64: 'integer', fixed32: 'integer', fixed64: 'integer',
    sfixed32: 'integer', sfixed64: 'integer',
    bool: 'boolean', string: 'string', bytes: 'string',
};

// codec.h: an enum value's JSON name is its proto name lowercased, without
// the prefix UPPER_SNAKE(enum's short name) + "_"; value 0 has none.
function upperSnake(name) {
    let out = '';
    for (let i = 0; i < name.length; i++) {
        const c = name[i];
        const prev = name[i - 1] || '';
        const next = name[i + 1] || '';
        if (i > 0 && /[A-Z]/.test(c)
            && (/[a-z0-9]/.test(prev) || (/[A-Z]/.test(prev) && /[a-z]/.test(next)))) out += '_';
        out += c.toUpperCase();
    }
    return out;
}

function enumJsonNames(e) {
    const prefix = `${upperSnake(e.short)}_`;
    return e.values.filter((v) => v.number !== 0).map((v) => {
        const n = v.name.startsWith(prefix) && v.name.length > prefix.length
            ? v.name.slice(prefix.length) : v.name;
        return n.toLowerCase();
    });
}

const types = (schema) => [].concat(schema.type === undefined ? [] : schema.type);

// Checks that `schema` is the JSON form of proto field `f` (declared in
// `scope`). Returns a list of problems.
function compareField(schema, f, scope, at, seen = new Set()) {
    const { enums, resolve } = protos();
    let ps = deref(schema);
    if (!ps || typeof ps !== 'object') return [`${at}: no schema`];
    if (f.repeated || f.map) {
        const container = f.map ? 'object' : 'array';
        if (!types(ps).includes(container)) return [`${at}: a ${f.map ? 'map' : 'repeated field'} should be an ${container}`];
        ps = deref(f.map ? ps.additionalProperties : ps.items);
        if (!ps || typeof ps !== 'object') return [`${at}: no schema for the ${f.map ? 'values' : 'items'}`];
    }
    if (SCALARS[f.type]) {
        const isTime = /^(int64|sint64|sfixed64)$/.test(f.type) && /(_at|_until)$/.test(f.name);
        if (isTime) {
            if (!types(ps).includes('string') || ps.format !== 'date-time') {
                return [`${at}: a time (${f.type} ${f.name}) is an RFC 3339 string: type string, format date-time`];
            }
        } else if (!types(ps).includes(SCALARS[f.type])) {
            return [`${at}: ${f.type} should be ${SCALARS[f.type]}, not ${JSON.stringify(ps.type)}`];
        }
        return [];
    }
    const t = resolve(f.type, scope);
    if (!t) return [`${at}: unknown proto type ${f.type}`];
    if (t.kind === 'enum') {
        const names = enumJsonNames(enums.get(t.name));
        const given = (ps.enum || []).filter((v) => v !== null);
        if (JSON.stringify([...given].sort()) !== JSON.stringify([...names].sort())) {
            return [`${at}: enum ${t.name} has JSON names ${names.join(', ')}; the schema says ${given.join(', ') || 'nothing'}`];
        }
        return [];
    }
    return compareMessage(ps, t.name, at, new Set(), seen);
}

// Checks that `schema` is the JSON form of proto message `qual`, minus the
// top-level fields in `omit`. Returns a list of problems.
function compareMessage(schema, qual, where, omit = new Set(), seen = new Set()) {
    const { messages } = protos();
    const problems = [];
    const key = `${JSON.stringify(schema)}|${qual}`;
    if (seen.has(key)) return problems;
    seen.add(key);
    schema = deref(schema);
    const msg = messages.get(qual);
    if (!msg) return [`${where}: no message ${qual} in proto/`];
    if (!schema || typeof schema !== 'object') return [`${where}: no schema for ${qual}`];
    if (!types(schema).includes('object')) problems.push(`${where}: ${qual} should be an object`);
    if (schema.additionalProperties !== false) {
        problems.push(`${where}: ${qual} should have additionalProperties: false (unknown fields are refused)`);
    }
    const props = schema.properties || {};
    const want = msg.fields.filter((f) => !omit.has(f.name));
    const wantNames = new Set(want.map((f) => f.name));
    for (const f of want) if (!Object.hasOwn(props, f.name)) problems.push(`${where}: missing field ${f.name} of ${qual}`);
    for (const name of Object.keys(props)) {
        if (!wantNames.has(name)) problems.push(`${where}: ${name} is not a field of ${qual}${omit.has(name) ? ' to send in the body (it is a path or query parameter)' : ''}`);
    }
    for (const f of want) {
        if (Object.hasOwn(props, f.name)) {
            problems.push(...compareField(props[f.name], f, msg.scope, `${where}.${f.name}`, seen));
        }
    }
    return problems;
}

// --- the tests ---

test('the document is OpenAPI 3.1 with info and paths', () => {
    const doc = spec();
    assert.match(String(doc.openapi), /^3\.1\.\d+$/, 'openapi: 3.1.x');
    assert.equal(typeof doc.info, 'object', 'info');
    assert.equal(typeof doc.info.title, 'string', 'info.title');
    assert.ok(['string'].includes(typeof doc.info.version), 'info.version is a string');
    assert.equal(typeof doc.paths, 'object', 'paths');
    for (const [p, item] of Object.entries(doc.paths)) {
        assert.match(p, /^\//, `path ${p} starts with /`);
        const ops = METHODS.filter((m) => item[m]);
        assert.ok(ops.length > 0, `${p} has no operation`);
        for (const key of Object.keys(item)) {
            assert.ok(METHODS.includes(key) || ['parameters', 'summary', 'description', 'servers', '$ref'].includes(key)
                || key.startsWith('x-'), `${p}: unexpected key ${key}`);
        }
    }
    const ids = new Set();
    for (const { path: p, method, op } of operations()) {
        assert.equal(typeof op.responses, 'object', `${method} ${p} has responses`);
        assert.ok(Object.keys(op.responses).length > 0, `${method} ${p} has responses`);
        for (const [code, resp] of Object.entries(op.responses)) {
            assert.match(code, /^([1-5]\d\d|[1-5]XX|default)$/, `${method} ${p}: response key ${code}`);
            assert.equal(typeof deref(resp).description, 'string', `${method} ${p} ${code}: description`);
        }
        assert.equal(typeof op.operationId, 'string', `${method} ${p} has an operationId`);
        assert.ok(!ids.has(op.operationId), `operationId ${op.operationId} is unique`);
        ids.add(op.operationId);
    }
});

test('every $ref resolves', () => {
    const doc = spec();
    let count = 0;
    const walk = (node, where) => {
        if (Array.isArray(node)) node.forEach((v, i) => walk(v, `${where}[${i}]`));
        else if (node && typeof node === 'object') {
            if (Object.hasOwn(node, '$ref')) {
                assert.equal(typeof node.$ref, 'string', `${where}.$ref`);
                deref(node);
                count++;
            }
            for (const [k, v] of Object.entries(node)) if (k !== '$ref') walk(v, `${where}.${k}`);
        }
    };
    walk(doc, '#');
    assert.ok(count > 0, 'the document uses components');
});

test('security requirements name declared schemes; bearer is HTTP bearer', () => {
    const doc = spec();
    const schemes = (doc.components && doc.components.securitySchemes) || {};
    const check = (reqs, where) => {
        assert.ok(Array.isArray(reqs), `${where}: security is a list`);
        for (const req of reqs) {
            for (const name of Object.keys(req)) {
                assert.ok(Object.hasOwn(schemes, name), `${where}: security scheme ${name} is declared`);
            }
        }
    };
    if (doc.security) check(doc.security, 'top level');
    for (const { path: p, method, op } of operations()) if (op.security) check(op.security, `${method} ${p}`);
    const bearer = Object.values(schemes).map(deref).filter((s) => s.type === 'http' && /^bearer$/i.test(s.scheme));
    assert.ok(bearer.length > 0, 'an HTTP bearer scheme is declared');
});

test('every route of the gateway is in the document', () => {
    const missing = routes().filter((r) => !opFor(r)).map((r) => routeKey(r.method, r.path));
    assert.deepEqual(missing, [], 'routes missing from docs/openapi.yaml');
});

test('every operation of the document is a route of the gateway', () => {
    const served = new Set(routes().map((r) => routeKey(r.method, r.path)));
    const extra = operations().map((o) => routeKey(o.method, o.path)).filter((k) => !served.has(k));
    assert.deepEqual(extra, [], 'operations in docs/openapi.yaml that the gateway does not serve');
});

// The success statuses a route may answer: its own, and for a 200 route of
// a bus method also 201, which the gateway sends when the service says it
// created what it returns (a get-or-create endpoint, gateway/gw_http.c). A
// WebSocket endpoint succeeds with 101. 101 and 204 carry no body.
test('each operation documents the route\'s success status, and only that one', () => {
    for (const route of routes()) {
        const op = opFor(route);
        if (!op) continue;
        const where = routeKey(route.method, route.path);
        const success = Object.keys(op.responses).filter((c) => /^[12]/.test(c));
        const allowed = [String(route.success)];
        if (route.success === 200 && route.bus_method && success.includes('201')) allowed.push('201');
        assert.deepEqual([...success].sort(), [...allowed].sort(), `${where}: success status`);
        for (const code of allowed) {
            const resp = deref(op.responses[code]);
            if (code === '204' || code === '101') {
                assert.equal(resp.content, undefined, `${where}: ${code} has no body`);
            } else {
                assert.ok(resp.content && Object.keys(resp.content).length > 0, `${where}: the ${code} reply has a body`);
                if (route.bus_method) {
                    assert.ok(resp.content['application/json'], `${where}: the reply is application/json`);
                }
            }
        }
    }
});

test('public routes have security: [] and the others require the bearer token', () => {
    const doc = spec();
    const schemes = (doc.components && doc.components.securitySchemes) || {};
    const isBearer = (name) => {
        const s = deref(schemes[name]);
        return s && s.type === 'http' && /^bearer$/i.test(s.scheme);
    };
    for (const route of routes()) {
        const op = opFor(route);
        if (!op) continue;
        const where = routeKey(route.method, route.path);
        if (route.public) {
            assert.deepEqual(op.security, [], `${where} is public: security: []`);
        } else {
            const effective = op.security !== undefined ? op.security : doc.security;
            assert.ok(Array.isArray(effective) && effective.length > 0, `${where} requires a token`);
            for (const req of effective) {
                const names = Object.keys(req);
                assert.ok(names.length > 0, `${where}: an empty requirement would make the token optional`);
                assert.ok(names.every(isBearer), `${where}: requires the bearer token`);
            }
        }
    }
});

test('every path parameter is declared, required and in the path', () => {
    for (const { path: p, method, item, op } of operations()) {
        const where = `${method.toUpperCase()} ${p}`;
        const declared = new Map();
        for (const param of [...(item.parameters || []), ...(op.parameters || [])].map(deref)) {
            assert.equal(typeof param.name, 'string', `${where}: a parameter has a name`);
            assert.ok(['path', 'query', 'header', 'cookie'].includes(param.in), `${where}: parameter ${param.name} has a valid in`);
            if (param.in !== 'path') continue;
            declared.set(param.name, param);
        }
        const names = templateParams(p);
        assert.deepEqual([...declared.keys()].sort(), [...names].sort(), `${where}: path parameters`);
        for (const name of names) {
            assert.equal(declared.get(name).required, true, `${where}: path parameter ${name} is required`);
            assert.ok(declared.get(name).schema, `${where}: path parameter ${name} has a schema`);
        }
    }
});

test('each operation lists the route\'s rate-limit classes with the default figures', () => {
    const defaults = defaultLimits();
    for (const route of routes()) {
        const op = opFor(route);
        if (!op) continue;
        const where = routeKey(route.method, route.path);
        const want = [{ class: 'ip', per: 'ip' }, ...routeLimits(route)]
            .map((l) => ({ ...l, default: defaults.get(l.class) }));
        for (const l of want) assert.ok(l.default, `${where}: class ${l.class} has no default in GW_RL_DEFAULT_SPEC`);
        const given = (op['x-rate-limits'] || []).map((l) => ({ class: l.class, per: l.per, default: String(l.default) }));
        const sort = (list) => [...list].sort((a, b) => a.class.localeCompare(b.class));
        assert.deepEqual(sort(given), sort(want), `${where}: x-rate-limits`);
        for (const l of routeLimits(route)) {
            assert.ok((op.description || '').includes(l.class), `${where}: the description explains the ${l.class} limit`);
        }
    }
});

test('request bodies and replies have the fields of the route\'s proto messages', () => {
    const { rpcs } = protos();
    const problems = [];
    for (const route of routes()) {
        if (!route.bus_method) continue;
        const op = opFor(route);
        if (!op) continue;
        const where = routeKey(route.method, route.path);
        const rpc = rpcs.get(route.bus_method);
        if (!rpc) {
            problems.push(`${where}: no rpc ${route.bus_method} in proto/`);
            continue;
        }
        const pathParams = new Set(templateParams(route.path));
        const input = protos().messages.get(rpc.input);
        const inputField = new Map(input.fields.map((f) => [f.name, f]));
        // Query parameters fill top-level fields of the request by name.
        const item = spec().paths[route.path];
        const query = new Map();
        for (const param of [...(item.parameters || []), ...(op.parameters || [])].map(deref)) {
            if (param.in === 'query') query.set(param.name, param);
        }
        for (const [name, param] of query) {
            const f = inputField.get(name);
            if (!f) problems.push(`${where}: query parameter ${name} is not a field of ${rpc.input}`);
            else problems.push(...compareField(param.schema, f, input.scope, `${where} ?${name}`));
        }
        const rest = input.fields.filter((f) => !pathParams.has(f.name) && !query.has(f.name));
        const body = op.requestBody && deref(op.requestBody);
        if (route.method === 'GET') {
            // The gateway reads no body on GET: every field is a query parameter.
            if (body) problems.push(`${where}: a GET has no body`);
            for (const f of rest) problems.push(`${where}: field ${f.name} of ${rpc.input} is not documented as a query parameter`);
        } else if (rest.length === 0) {
            if (body) problems.push(`${where}: ${rpc.input} has no field left for a body, but a requestBody is documented`);
        } else if (!body || !body.content || !body.content['application/json']) {
            problems.push(`${where}: the body (${rpc.input}: ${rest.map((f) => f.name).join(', ')}) is not documented`);
        } else {
            problems.push(...compareMessage(body.content['application/json'].schema, rpc.input,
                `${where} body`, new Set([...pathParams, ...query.keys()])));
        }
        if (route.success !== 204) {
            const codes = [String(route.success)];
            if (route.success === 200 && op.responses['201']) codes.push('201');
            for (const code of codes) {
                const resp = op.responses[code] && deref(op.responses[code]);
                const media = resp && resp.content && resp.content['application/json'];
                if (!media) problems.push(`${where}: no application/json ${code} reply`);
                else problems.push(...compareMessage(media.schema, rpc.output, `${where} ${code} reply`));
            }
        }
    }
    assert.deepEqual(problems, []);
});

test('errors use the Error schema, and 429 comes with Retry-After', () => {
    const doc = spec();
    const error = doc.components && doc.components.schemas && doc.components.schemas.Error;
    assert.ok(error, 'components.schemas.Error');
    const inner = deref(error).properties.error;
    assert.deepEqual([...deref(inner).required].sort(), ['code', 'message']);
    for (const name of ['code', 'message', 'field', 'reason']) {
        assert.ok(deref(inner).properties[name], `Error.error.${name}`);
    }
    const isError = (schema) => {
        schema = schema && deref(schema);
        if (!schema) return false;
        if (schema === deref(error)) return true;
        return (schema.oneOf || schema.anyOf || []).some(isError);
    };
    for (const { path: p, method, op } of operations()) {
        const where = `${method.toUpperCase()} ${p}`;
        assert.ok(op.responses['429'], `${where}: every request may be rate limited (429)`);
        for (const [code, raw] of Object.entries(op.responses)) {
            if (!/^[45]/.test(code)) continue;
            const resp = deref(raw);
            const media = resp.content && resp.content['application/json'];
            assert.ok(media && isError(media.schema), `${where} ${code}: the body is an Error`);
            if (code === '429') {
                assert.ok(resp.headers && resp.headers['Retry-After'], `${where} 429: Retry-After`);
            }
        }
    }
});
