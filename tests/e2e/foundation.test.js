'use strict';
// The foundation seen from outside: the stack starts as `make run` starts
// it and says when it is ready, answers every error the documented way
// (API.md "Conventions"), never answers 500 to bad input, limits requests
// per IP, keeps working without Redis, and stops leaving nothing behind.
// Each describe block runs its own stack from the built binaries.

const { describe, it, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const {
    startStack, stackForSuite, limits, assertError, requestCode, newPhone, waitFor, alive, signUp,
} = require('./lib/stack');

const SERVICES = ['identity', 'org', 'invite', 'chat', 'meet', 'audit'];

describe('the stack as make run starts it', { timeout: 180000 }, () => {
    const suiteStack = stackForSuite();
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('prints PARTA_READY with its URL, and /readyz is 200 with broker, redis and a worker of every service', async () => {
        assert.match(stack.url, /^http:\/\/127\.0\.0\.1:\d+$/);
        assert.ok(stack.pids.length >= 9, `run.pids lists redis, the broker, 6 services and the gateway: ${JSON.stringify(stack.pids)}`);
        for (const name of ['redis', 'broker', ...SERVICES, 'gateway'])
            assert.ok(stack.pids.some((p) => p.name === name && alive(p.pid)), `${name} is running`);
        const res = await stack.get('/readyz');
        assert.equal(res.status, 200, res.text);
        assert.ok(res.json && res.json.checks, res.text);
        assert.equal(res.json.checks.broker, 'ok', res.text);
        assert.equal(res.json.checks.redis, 'ok', res.text);
        for (const s of SERVICES)
            assert.ok(res.json.checks.services[s] >= 1, `at least one ${s} worker: ${res.text}`);
        // CURVE is on: the keys were made at the first start, and the
        // broker admits the client key listed in allowed/.
        const curve = path.join(stack.dataDir, 'curve');
        for (const f of ['broker.cert', 'broker.cert_secret', 'client.cert', 'client.cert_secret', 'allowed/client.cert'])
            assert.ok(fs.existsSync(path.join(curve, f)), `${f} in the keys directory`);
        assert.match(stack.log('broker'), /curve=on/, 'the broker says CURVE is on');
    });

    it('/healthz answers 200', async () => {
        const res = await stack.get('/healthz');
        assert.equal(res.status, 200, res.text);
    });

    it('/metrics is Prometheus text counting the requests just made, by route', async () => {
        // The request counter of a route and status, or 0 when not there yet.
        const counter = (lines, route, code) => {
            const line = lines.find((l) => !l.startsWith('#') && l.includes('_total{') &&
                l.includes(`"${route}"`) && l.includes(`"${code}"`));
            return line ? Number(line.split(' ').pop()) : 0;
        };
        const scrape = async () => {
            const res = await stack.get('/metrics');
            assert.equal(res.status, 200, res.text);
            assert.match(String(res.headers.get('content-type')), /^text\/plain/);
            return { text: res.text, lines: res.text.split('\n').filter(Boolean) };
        };
        const before = await scrape();
        // Requests of a known shape: two health checks and an OTP request
        // refused for its phone.
        assert.equal((await stack.get('/healthz')).status, 200);
        assert.equal((await stack.get('/healthz')).status, 200);
        const bad = await stack.post('/v1/auth/otp', { phone: 'not a phone' });
        assert.equal(bad.status, 400, bad.text);
        const now = await scrape();
        // Every line is a comment or `name{labels} value`.
        for (const line of now.lines)
            assert.match(line, /^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (-?[0-9.eE+-]+|[+-]?Inf|NaN))$/,
                `not Prometheus text: ${line}`);
        assert.ok(now.lines.some((l) => /^# TYPE \S+ counter$/.test(l)), 'declares its counters');
        const healthz = counter(now.lines, 'GET /healthz', 200) - counter(before.lines, 'GET /healthz', 200);
        assert.ok(healthz >= 2, `GET /healthz 200 counted twice more (got ${healthz}):\n${now.text}`);
        const otp = counter(now.lines, 'POST /v1/auth/otp', 400) - counter(before.lines, 'POST /v1/auth/otp', 400);
        assert.equal(otp, 1, `POST /v1/auth/otp 400 counted once more:\n${now.text}`);
        // Latency histograms per route: buckets, the +Inf one counting them all.
        const inf = (lines) => {
            const line = lines.find((l) => l.startsWith('parta_http_requests_duration_seconds_bucket{') &&
                l.includes('"GET /healthz"') && l.includes('le="+Inf"'));
            return line ? Number(line.split(' ').pop()) : 0;
        };
        assert.ok(inf(now.lines) - inf(before.lines) >= 2, `GET /healthz in its latency histogram:\n${now.text}`);
        assert.ok(now.lines.some((l) => /^# TYPE parta_http_requests_duration_seconds histogram$/.test(l)), now.text);
        // The gateway's bus calls, by method and status: the refused OTP
        // request went to identity and came back bad_request (1).
        const call = (lines) => {
            const line = lines.find((l) => l.startsWith('parta_bus_calls_total{') && l.includes('"identity.otp_send"') &&
                l.includes('"1"'));
            return line ? Number(line.split(' ').pop()) : 0;
        };
        assert.equal(call(now.lines) - call(before.lines), 1, `identity.otp_send counted as a bus call:\n${now.text}`);
        // WebSocket connections and rate-limit rejections are there too.
        assert.ok(now.lines.includes('# TYPE parta_ws_connections gauge'), now.text);
        assert.ok(now.lines.includes('# TYPE parta_rate_limited_total counter'), now.text);
    });

    it('an unknown route is 404 not_found', async () => {
        assertError(await stack.get('/v1/no-such-thing'), 404, 'not_found', null);
        assertError(await stack.post('/v1/auth/otp/extra', { phone: newPhone() }), 404, 'not_found', null);
        assertError(await stack.get('/'), 404, 'not_found', null);
    });

    it('a known route with the wrong method is 405 with Allow', async () => {
        const res = await stack.get('/v1/auth/otp');
        assertError(res, 405, undefined, null);
        assert.match(String(res.headers.get('allow')), /\bPOST\b/, 'Allow names POST');
        const del = await stack.del('/v1/auth/login');
        assertError(del, 405, undefined, null);
    });

    it('malformed JSON is 400 bad_request with field ""', async () => {
        for (const body of ['{', '{"phone": }', '{"phone": "+79991234567",}', 'nonsense', '{"a":1}{"b":2}']) {
            const res = await stack.post('/v1/auth/otp', body);
            assertError(res, 400, 'bad_request', '', `body ${body}`);
        }
    });

    it('a JSON value that is not an object is 400 with field ""', async () => {
        for (const body of ['[]', '"text"', '42', 'null', 'true']) {
            const res = await stack.post('/v1/auth/otp', body);
            assertError(res, 400, 'bad_request', '', `body ${body}`);
        }
    });

    it('a body announced over 1 MiB is 413 payload_too_large', async () => {
        // Up to 16 MiB the gateway reads and drops the body before it
        // answers (answering first would make the kernel reset the
        // connection under the client); beyond that it answers the head
        // alone and closes.
        for (const [route, length, bodyBytes] of [['/v1/auth/otp', 1024 * 1024 + 1, 1024 * 1024 + 1],
                                                  ['/v1/auth/register', 5 * 1024 * 1024, 5 * 1024 * 1024],
                                                  ['/v1/auth/login', 64 * 1024 * 1024, 0]]) {
            const res = await stack.rawHead('POST', route, length, { bodyBytes });
            assert.ok(!res.error, `a reply to POST ${route} with Content-Length ${length}: ${res.error}`);
            assert.equal(res.status, 413, res.text);
            const json = JSON.parse(res.text);
            assert.equal(json.error.code, 'payload_too_large', res.text);
            assert.equal(typeof json.error.message, 'string', res.text);
        }
        // Exactly 1 MiB is within the limit: it is judged as JSON (only
        // spaces here, so 400 with field "").
        const limit = await stack.post('/v1/auth/otp', ' '.repeat(1024 * 1024));
        assertError(limit, 400, 'bad_request', '');
    });

    it('a client that sends a body over 1 MiB reads the 413 answer', async () => {
        // What a client (fetch) sees when it sends a 2 MiB JSON body: the
        // documented 413, not a connection reset half-way through. Ten
        // tries, since whether the answer is lost is a race.
        const outcomes = [];
        for (let i = 0; i < 10; i++) {
            const body = JSON.stringify({ phone: newPhone(), pad: 'x'.repeat(2 * 1024 * 1024) });
            outcomes.push(await stack.post('/v1/auth/otp', body).then(
                (res) => `${res.status} ${res.json && res.json.error ? res.json.error.code : res.text}`,
                (err) => `${err.name}: ${err.message}${err.cause ? ` (${err.cause.code || err.cause.message})` : ''}`));
        }
        assert.deepEqual(outcomes, Array(10).fill('413 payload_too_large'));
    });

    // What a client sees of a request that libwebsockets itself refuses
    // before the gateway gets it: the connection is closed (or, should it
    // ever answer, a 4xx with the error body), never a 5xx nor a hang; and
    // the gateway goes on serving.
    const closedOr4xx = (res) => {
        if (res.error) return res.error === 'timed out' ? `no answer and no close (${res.error})` : null;
        if (res.status < 400 || res.status >= 500) return `status ${res.status}: ${res.text}`;
        let code = null;
        try { code = JSON.parse(res.text).error.code; } catch { code = null; }
        return typeof code === 'string' ? null : `${res.status} without an error body: ${res.text}`;
    };

    it('a NUL byte (%00) in the query string: the connection is closed without a 5xx, and the gateway keeps serving', async () => {
        const found = [];
        for (const [method, p] of [['GET', '/healthz?cursor=%00'], ['GET', '/v1/me?limit=%00'], ['POST', '/v1/auth/otp?x=%00']]) {
            const res = await stack.raw(method, p, method === 'POST'
                ? { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ phone: newPhone() }) } : {});
            const problem = closedOr4xx(res);
            if (problem) found.push(`${method} ${p} -> ${problem}`);
            const next = await stack.get('/healthz');
            if (next.status !== 200) found.push(`GET /healthz after ${method} ${p} -> ${next.status} ${next.text}`);
        }
        assert.deepEqual(found, [], `\n${stack.logTails(10, ['gateway'])}`);
        // The same requests with an ordinary value are answered as usual.
        for (const [method, p] of [['GET', '/healthz?cursor=abc'], ['GET', '/v1/me?limit=abc'], ['POST', '/v1/auth/otp?x=abc']]) {
            const res = await stack.raw(method, p, method === 'POST'
                ? { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ phone: newPhone() }) } : {});
            assert.ok(!res.error && res.status < 500, `${method} ${p}: ${res.error || `${res.status} ${res.text}`}`);
        }
    });

    it('a 10 KB Authorization header is answered: 401 with the error body', async () => {
        const res = await stack.get('/v1/me', { headers: { Authorization: `Bearer ${'x'.repeat(10 * 1024)}` } });
        assertError(res, 401, 'unauthorized', null, 'GET /v1/me with a 10 KB bearer token');
        // As raw bytes too (no client-side header handling in between).
        const raw = await stack.raw('GET', '/v1/me', { headers: { Authorization: `Bearer ${'y'.repeat(10 * 1024)}` } });
        assert.ok(!raw.error, `a reply: ${raw.error}`);
        assert.equal(raw.status, 401, raw.text);
        assert.equal(JSON.parse(raw.text).error.code, 'unauthorized', raw.text);
    });

    it('a request head over 16 KiB: the connection is closed without a 5xx, and the gateway keeps serving', async () => {
        const found = [];
        for (const [what, headers] of [
            ['a 17 KiB Authorization header', { Authorization: `Bearer ${'x'.repeat(17 * 1024)}` }],
            ['a 20 KiB header of its own', { 'X-Pad': 'y'.repeat(20 * 1024) }],
            ['forty 1 KiB headers', Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`X-Pad-${i}`, 'z'.repeat(1024)]))],
            ['a 64 KiB header', { 'X-Pad': 'w'.repeat(64 * 1024) }],
        ]) {
            const res = await stack.raw('GET', '/v1/me', { headers });
            const problem = closedOr4xx(res);
            if (problem) found.push(`${what} -> ${problem}`);
            const next = await stack.get('/healthz');
            if (next.status !== 200) found.push(`GET /healthz after ${what} -> ${next.status} ${next.text}`);
        }
        assert.deepEqual(found, [], `\n${stack.logTails(10, ['gateway'])}`);
    });

    it('an unknown JSON field is 400 naming it', async () => {
        const res = await stack.post('/v1/auth/otp', { phone: newPhone(), nickname: 'x' });
        assertError(res, 400, 'bad_request', 'nickname');
        const reg = await stack.post('/v1/auth/register', { phone: newPhone(), code: '123456', full_name: 'A B', admin: true });
        assertError(reg, 400, 'bad_request', 'admin');
    });

    it('a JSON value of the wrong type is 400 naming the field', async () => {
        assertError(await stack.post('/v1/auth/otp', { phone: 79991234567 }), 400, 'bad_request', 'phone');
        assertError(await stack.post('/v1/auth/otp', { phone: ['+79991234567'] }), 400, 'bad_request', 'phone');
        assertError(await stack.post('/v1/auth/otp', { phone: { n: 1 } }), 400, 'bad_request', 'phone');
        assertError(await stack.post('/v1/auth/login', { phone: newPhone(), code: 123456 }), 400, 'bad_request', 'code');
        assertError(await stack.post('/v1/auth/register', { phone: newPhone(), code: '123456', full_name: true }),
            400, 'bad_request', 'full_name');
    });

    it('a body that is not JSON by Content-Type is 415 unsupported_media_type', async () => {
        const body = JSON.stringify({ phone: newPhone() });
        for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml']) {
            const res = await stack.post('/v1/auth/otp', body, { headers: { 'Content-Type': type } });
            assertError(res, 415, 'unsupported_media_type', null, type);
        }
    });

    it('the stack stops leaving no process behind', async () => {
        const pids = stack.readPids();
        assert.ok(pids.length >= 9);
        await stack.stop();   // asserts that every pid of run.pids is gone
        for (const p of pids)
            assert.throws(() => process.kill(p.pid, 0), { code: 'ESRCH' }, `${p.name} (pid ${p.pid}) is gone`);
        // The port is closed too.
        const res = await fetch(`${stack.url}/healthz`, { signal: AbortSignal.timeout(5000) }).then(
            (r) => r.status, (err) => err.name);
        assert.equal(res, 'TypeError', `nothing answers at ${stack.url} any more`);
    });
});

describe('a service that is down', { timeout: 180000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_CALL_TIMEOUT_MS: '1500' } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('answers 503 unavailable for its routes, and bad input still gets its 4xx', async () => {
        const phone = newPhone();
        const pid = stack.kill('identity', 'SIGKILL');
        assert.ok(await waitFor(() => !alive(pid), { timeoutMs: 5000 }), 'identity is gone');
        const res = await stack.post('/v1/auth/otp', { phone });
        assertError(res, 503, 'unavailable', null, `POST /v1/auth/otp with identity down\n${stack.logTails(10, ['gateway', 'broker'])}`);
        assert.equal(stack.readOtp(phone), null, 'no code was sent');
        // Input the gateway refuses itself needs no service.
        assertError(await stack.post('/v1/auth/otp', { phone: 1 }), 400, 'bad_request', 'phone');
        assertError(await stack.post('/v1/auth/otp', '{'), 400, 'bad_request', '');
        // A route of a service that is not down is still served.
        assert.equal((await stack.get('/healthz')).status, 200);
        const ready = await waitFor(async () => {
            const r = await stack.get('/readyz');
            return r.status === 503 ? r : null;
        }, { timeoutMs: 15000, intervalMs: 200 });
        assert.ok(ready, '/readyz turns 503 when identity has no worker');
        assert.equal(ready.json.checks.services.identity, 0, ready.text);
    });

    it('a client that gives up while its request waits for a hung service costs the gateway no CPU', async () => {
        // CPU time of a process so far, in clock ticks (Linux /proc).
        const cpu = (pid) => {
            const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
            return Number(fields[11]) + Number(fields[12]);     // utime + stime
        };
        const gateway = stack.pidOf('gateway');
        const hung = stack.kill('invite', 'SIGSTOP');
        try {
            const token = 'A'.repeat(43);
            const gaveUp = await fetch(`${stack.url}/v1/invitations/${token}`, { signal: AbortSignal.timeout(200) })
                .then(() => 'answered', (e) => e.name);
            assert.equal(gaveUp, 'TimeoutError', 'the request was still waiting when the client left');
            // The call is out for up to PARTA_CALL_TIMEOUT_MS (1.5 s) more:
            // the gateway must wait for it, not poll the closed connection.
            const before = cpu(gateway);
            await new Promise((r) => setTimeout(r, 1000));
            const used = cpu(gateway) - before;
            assert.ok(used < 30, `gateway CPU over 1 s after the client left: ${used} ticks (a busy loop takes ~100)`);
        } finally {
            process.kill(hung, 'SIGCONT');
        }
        assert.equal((await stack.get('/healthz')).status, 200);
    });

    it('never answers a 500 while it is down: random bodies get a 4xx or exactly 503', async () => {
        const rnd = rng(0x5eed);
        const bodies = Array.from({ length: 30 }, () => randomBody(rnd));
        const results = await Promise.all(bodies.map(async (b) => {
            const res = await stack.raw('POST', pick(rnd, PUBLIC_POSTS), { headers: b.headers, body: b.body, timeoutMs: 15000 });
            return { b, res };
        }));
        for (const { b, res } of results) {
            assert.ok(!res.error, `no reply to ${JSON.stringify(b.body.toString('utf8').slice(0, 200))}: ${res.error}`);
            assert.ok(res.status < 500 || res.status === 503,
                `status ${res.status} for ${JSON.stringify(b.body.toString('utf8').slice(0, 200))}: ${res.text}`);
        }
    });
});

// --- a small fuzzer, seeded so that a failure can be replayed ---

const PUBLIC_POSTS = ['/v1/auth/otp', '/v1/auth/register', '/v1/auth/login'];
const FIELDS = ['phone', 'code', 'full_name', 'password', 'comment', 'token', '', 'a'.repeat(300), 'phone\u0000', '__proto__', 'ПОЛЕ'];

function rng(seed) {
    let s = seed >>> 0;
    return () => {
        s = (s + 0x6d2b79f5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}
const pick = (r, list) => list[Math.floor(r() * list.length)];
const int = (r, n) => Math.floor(r() * n);

function randomString(r) {
    const kinds = [
        () => '',
        () => '+7999' + String(1000000 + int(r, 8999999)),      // a valid phone
        () => '8 (999) ' + String(int(r, 1000)).padStart(3, '0') + '-' + String(int(r, 10000)).padStart(4, '0'),
        () => String(int(r, 1000000)).padStart(6, '0'),          // a plausible code
        () => 'x'.repeat(int(r, 20000)),
        () => Array.from({ length: int(r, 50) }, () => String.fromCharCode(int(r, 0x3000))).join(''),
        () => '\u0000\u0001\u001f\u007f',
        () => '\ud83d\ude00'.repeat(int(r, 300)),
        () => '\ud800',                                          // a lone surrogate
        () => "'; DROP TABLE users; --",
        () => '%s%n%x'.repeat(10),
        () => ' '.repeat(int(r, 500)),
        () => 'Иван Петров',
    ];
    return pick(r, kinds)();
}

function randomValue(r, depth = 0) {
    const kinds = [
        () => randomString(r),
        () => randomString(r),
        () => int(r, 2) ? int(r, 1e9) : -int(r, 1e9),
        () => r() * 1e308 * (int(r, 2) ? 1 : -1),
        () => int(r, 2) === 1,
        () => null,
        () => (depth < 3 ? Array.from({ length: int(r, 4) }, () => randomValue(r, depth + 1)) : []),
        () => (depth < 3 ? randomObject(r, depth + 1) : {}),
    ];
    return pick(r, kinds)();
}

function randomObject(r, depth = 0) {
    const o = {};
    const n = int(r, 6);
    for (let i = 0; i < n; i++) o[pick(r, FIELDS)] = randomValue(r, depth);
    return o;
}

// {headers, body: Buffer}
function randomBody(r) {
    const json = { 'Content-Type': 'application/json' };
    const kinds = [
        () => ({ headers: json, body: Buffer.from(JSON.stringify(randomObject(r))) }),
        () => ({ headers: json, body: Buffer.from(JSON.stringify(randomObject(r))) }),
        () => ({ headers: json, body: Buffer.from(JSON.stringify(randomObject(r))) }),
        () => ({ headers: json, body: Buffer.from(JSON.stringify(randomValue(r))) }),
        () => {   // truncated JSON
            const s = JSON.stringify(randomObject(r));
            return { headers: json, body: Buffer.from(s.slice(0, int(r, s.length + 1))) };
        },
        () => ({ headers: json, body: Buffer.from(Array.from({ length: int(r, 2000) }, () => int(r, 256))) }),
        () => ({ headers: json, body: Buffer.from('['.repeat(5000 + int(r, 50000)) + ']'.repeat(int(r, 10))) }),
        () => ({ headers: json, body: Buffer.from('{"phone":"' + '\\u0000'.repeat(int(r, 100)) + '"}') }),
        () => ({ headers: json, body: Buffer.from('{"phone":"\\ud800\\udc00\\ud800"}') }),
        () => ({ headers: json, body: Buffer.from('{"phone":1e999999,"code":-0.0e-999}') }),
        () => ({ headers: { 'Content-Type': pick(r, ['text/plain', 'application/jsonx', 'APPLICATION/JSON', 'application/json; charset=latin1', '', '*/*']) },
            body: Buffer.from(JSON.stringify(randomObject(r))) }),
        () => ({ headers: {}, body: Buffer.from(JSON.stringify(randomObject(r))) }),
    ];
    return pick(r, kinds)();
}

// Every byte of the UTF-8 form (lone surrogates become U+FFFD) as %XX.
function percentEncode(text) {
    return Array.from(Buffer.from(text, 'utf8'), (b) => '%' + b.toString(16).padStart(2, '0')).join('');
}

function randomPath(r) {
    const seg = () => pick(r, [
        'v1', 'auth', 'otp', 'login', 'register', 'me', 'sessions', 'healthz', 'readyz', 'metrics',
        '..', '.', '', '%2e%2e', '%00', '%2F', '%ff%fe', 'a'.repeat(int(r, 3000)), '{id}', '01J0000000000000000000000',
        percentEncode(randomString(r).slice(0, 200)),
    ]);
    let p = '';
    const n = 1 + int(r, 6);
    for (let i = 0; i < n; i++) p += '/' + seg();
    // (No %00 in the query: libwebsockets drops such a request itself; the
    // "NUL byte" test above covers it.)
    if (int(r, 3) === 0) p += '?' + pick(r, ['a=1', 'phone=%2B7999', 'limit=-1', '&&&', '=', 'x'.repeat(2000) + '=1']);
    return p;
}

describe('Idempotency-Key (API.md Conventions): a retried create returns the first result', { timeout: 180000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    const application = (adminPhone) => ({
        org_name: 'Колледж повторных запросов', short_name: 'КПЗ', region: 'Рязанская область',
        admin: { full_name: 'Администратор Повторов', phone: adminPhone, email: 'admin@retry.example' },
        order_number: '3-к', order_date: '2026-08-20',
    });

    it('anonymous (applying) and signed in (making a unit): same key and body, same answer, one thing made; another body, 409', async () => {
        const op = await signUp(stack, { phone: stack.operatorPhone(), fullName: 'Оператор Платформы' });
        const adminPhone = newPhone();
        const key = { 'Idempotency-Key': 'apply-2026-11-28-a' };
        const first = await stack.post('/v1/org-applications', application(adminPhone), { headers: key });
        assert.equal(first.status, 201, first.text);
        const again = await stack.post('/v1/org-applications', application(adminPhone), { headers: key });
        assert.equal(again.status, 201, again.text);
        assert.equal(again.json.id, first.json.id, 'the retry answers the first application');
        const other = await stack.post('/v1/org-applications', application(newPhone()), { headers: key });
        assertError(other, 409, undefined, undefined, 'the key used for another application');
        const listed = await stack.get('/v1/org-applications?status=pending&limit=200', { token: op.token });
        assert.equal(listed.status, 200, listed.text);
        assert.equal(listed.json.items.filter((a) => a.org_name === 'Колледж повторных запросов').length, 1,
            'one application stored');

        const approved = await stack.post(`/v1/org-applications/${first.json.id}/approve`, undefined, { token: op.token });
        assert.equal(approved.status, 200, approved.text);
        const admin = await signUp(stack, { phone: adminPhone, fullName: 'Администратор Повторов' });
        const org = approved.json.org_id;
        const unitKey = { 'Idempotency-Key': 'unit-1' };
        const body = { kind: 'department', name: 'Отделение повторов' };
        const u1 = await stack.post(`/v1/orgs/${org}/units`, body, { token: admin.token, headers: unitKey });
        assert.equal(u1.status, 201, u1.text);
        const u2 = await stack.post(`/v1/orgs/${org}/units`, body, { token: admin.token, headers: unitKey });
        assert.equal(u2.status, 201, u2.text);
        assert.equal(u2.json.id, u1.json.id, 'the retry answers the first unit');
        assertError(await stack.post(`/v1/orgs/${org}/units`, { kind: 'department', name: 'Другое отделение' },
            { token: admin.token, headers: unitKey }), 409, undefined, undefined, 'the key used for another unit');
        const units = await stack.get(`/v1/orgs/${org}/units?limit=200`, { token: admin.token });
        assert.equal(units.json.items.filter((u) => u.kind === 'department').length, 1, 'one department made');
    });

    it('signing in ignores the key: a session token is never stored for a replay, each sign-in is its own session', async () => {
        const u = await signUp(stack, { fullName: 'Повторно Входящий', password: 'correct-horse-1' });
        const key = { 'Idempotency-Key': 'login-1' };
        const body = { phone: u.phone, password: 'correct-horse-1' };
        const first = await stack.post('/v1/auth/login', body, { headers: key });
        const again = await stack.post('/v1/auth/login', body, { headers: key });
        assert.equal(first.status, 200, first.text);
        assert.equal(again.status, 200, again.text);
        assert.notEqual(again.json.token, first.json.token, 'a new session, not the stored answer');
        const sessions = await stack.get('/v1/me/sessions', { token: again.json.token });
        assert.equal(sessions.json.items.length, 3, 'sign-up and two sign-ins');
    });
});

describe('bad input never gets a 500', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('a few hundred random bodies at the public routes: every status is below 500', async () => {
        const seed = Number(process.env.PARTA_FUZZ_SEED || 20261128);
        const r = rng(seed);
        const failures = [];
        for (let i = 0; i < 300; i++) {
            const b = randomBody(r);
            const route = pick(r, PUBLIC_POSTS);
            const res = await stack.raw('POST', route, { headers: b.headers, body: b.body, timeoutMs: 10000 });
            if (res.error || res.status >= 500)
                failures.push(`#${i} POST ${route} ${JSON.stringify(b.headers)} ${JSON.stringify(b.body.toString('utf8').slice(0, 300))} -> ${res.error || res.status + ' ' + res.text}`);
        }
        assert.deepEqual(failures, [], `seed ${seed}:\n${failures.join('\n')}\n${stack.logTails(10, ['gateway', 'identity'])}`);
        assert.equal((await stack.get('/healthz')).status, 200, 'still up');
    });

    it('a few hundred random paths and methods: every status is below 500, each an error body', async () => {
        const seed = Number(process.env.PARTA_FUZZ_SEED || 20261128) + 1;
        const r = rng(seed);
        const failures = [];
        for (let i = 0; i < 300; i++) {
            const method = pick(r, ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
            const p = randomPath(r);
            const opts = { timeoutMs: 10000 };
            if (method !== 'GET' && int(r, 2)) {
                const b = randomBody(r);
                opts.headers = b.headers;
                opts.body = b.body;
            }
            if (int(r, 4) === 0) opts.headers = { ...(opts.headers || {}), Authorization: `Bearer ${randomString(r).replace(/[^\x21-\x7e]/g, 'x').slice(0, 500) || 'x'}` };
            const res = await stack.raw(method, p, opts);
            if (res.error || res.status >= 500) {
                failures.push(`#${i} ${method} ${p.slice(0, 300)} -> ${res.error || res.status + ' ' + res.text}`);
                continue;
            }
            if (res.status >= 400) {
                let ok = false;
                try {
                    const j = JSON.parse(res.text);
                    ok = typeof j.error.code === 'string' && typeof j.error.message === 'string';
                } catch { ok = false; }
                if (!ok) failures.push(`#${i} ${method} ${p.slice(0, 300)} -> ${res.status} without an error body: ${res.text.slice(0, 200)}`);
            }
        }
        assert.deepEqual(failures, [], `seed ${seed}:\n${failures.join('\n')}\n${stack.logTails(10, ['gateway'])}`);
        assert.equal((await stack.get('/healthz')).status, 200, 'still up');
    });
});

describe('the per-IP rate limit', { timeout: 180000 }, () => {
    const suiteStack = stackForSuite({
        env: {
            // ip is small: 40 an hour rather than a minute, so that no
            // request regains budget while the test runs. The sign-in
            // classes keep their defaults.
            PARTA_RATE_LIMITS: limits({
                ip: '40/3600', otp_phone: '1/60,5/3600', otp_ip: '20/3600', login_phone: '10/3600', login_ip: '50/3600',
            }),
        },
    });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('/metrics counts refusals by rate-limit class', async () => {
        const refused = async (cls) => {
            const res = await stack.get('/metrics');
            assert.equal(res.status, 200, res.text);
            const line = res.text.split('\n').find((l) => l.startsWith(`parta_rate_limited_total{class="${cls}"} `));
            return line ? Number(line.split(' ').pop()) : 0;
        };
        const before = await refused('otp_phone');
        const phone = newPhone();
        assert.equal((await stack.post('/v1/auth/otp', { phone })).status, 202);
        assertError(await stack.post('/v1/auth/otp', { phone }), 429, 'rate_limited', null);
        assert.equal(await refused('otp_phone') - before, 1);
    });

    it('answers 429 rate_limited with Retry-After once a client sends too much', async () => {
        let limited = null;
        let sent = 0;
        for (; sent < 200 && !limited; sent++) {
            const res = await stack.get('/healthz');
            if (res.status === 429) limited = res;
            else assert.equal(res.status, 200, res.text);
        }
        assert.ok(limited, `no 429 after ${sent} requests with ip=40/3600`);
        assert.ok(sent > 10, `the first requests pass (429 came at request ${sent})`);
        assert.ok(sent <= 41, `a budget of 40, not more (429 came at request ${sent})`);
        assertError(limited, 429, 'rate_limited', null);
        const retry = limited.headers.get('retry-after');
        assert.match(String(retry), /^[0-9]+$/, `Retry-After is whole seconds: ${retry}`);
        assert.ok(Number(retry) >= 1 && Number(retry) <= 3600, `Retry-After ${retry}`);
        // Every route shares the budget.
        const otp = await stack.post('/v1/auth/otp', { phone: newPhone() });
        assertError(otp, 429, 'rate_limited', null);
    });

    it('a gateway refuses to start when a class a route uses is not configured', async () => {
        let err = null;
        try {
            const s = await startStack({ env: { PARTA_RATE_LIMITS: 'ip=40/60' }, readyTimeoutMs: 40000 });
            await s.stop();
        } catch (e) {
            err = e;
        }
        assert.ok(err, 'the stack became ready with only ip configured');
        assert.match(err.message, /parta-gateway stopped/, err.message);
    });
});

describe('with Redis stopped', { timeout: 180000 }, () => {
    const suiteStack = stackForSuite();
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('/readyz says redis is down while the other routes still answer', async () => {
        assert.equal((await stack.get('/readyz')).status, 200);
        const pid = stack.kill('redis', 'SIGKILL');
        assert.ok(await waitFor(() => !alive(pid), { timeoutMs: 5000 }), 'redis is gone');
        const ready = await waitFor(async () => {
            const r = await stack.get('/readyz');
            return r.status === 503 ? r : null;
        }, { timeoutMs: 15000, intervalMs: 200 });
        assert.ok(ready, `/readyz did not turn 503 within 15 s of Redis stopping\n${stack.logTails(10, ['gateway'])}`);
        assert.ok(ready.json && ready.json.checks, ready.text);
        assert.equal(ready.json.checks.redis, 'down', ready.text);
        assert.equal(ready.json.checks.broker, 'ok', ready.text);
        for (const s of SERVICES)
            assert.ok(ready.json.checks.services[s] >= 1, `workers still reported: ${ready.text}`);
        assert.equal((await stack.get('/healthz')).status, 200, 'healthz');
    });

    it('a code can still be requested; the in-process limiter takes over', async () => {
        const phone = newPhone();
        const code = await requestCode(stack, phone);
        assert.match(code, /^[0-9]{6}$/);
        // The default otp_phone limit (one a minute) still holds.
        const again = await stack.post('/v1/auth/otp', { phone });
        assertError(again, 429, 'rate_limited', null, 'a second code within a minute without Redis');
        assert.match(String(again.headers.get('retry-after')), /^[0-9]+$/);
        // And the code signs up.
        const reg = await stack.post('/v1/auth/register', { phone, code, full_name: 'Without Redis' });
        assert.equal(reg.status, 201, reg.text);
        const me = await stack.get('/v1/me', { token: reg.json.token });
        assert.equal(me.status, 200, me.text);
    });
});

describe('with Redis hung (it accepts, but does not answer)', { timeout: 180000 }, () => {
    const suiteStack = stackForSuite();
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('requests are still answered, the gateway drops the connection, and reconnects when Redis answers again', async () => {
        assert.equal((await stack.get('/readyz')).status, 200);
        const pid = stack.kill('redis', 'SIGSTOP');
        try {
            // Every request asks Redis for the per-IP limit first; a late
            // answer is given up on and the in-process limiter answers.
            const res = await stack.get('/healthz');
            assert.equal(res.status, 200, res.text);
            const ready = await waitFor(async () => {
                const r = await stack.get('/readyz');
                return r.status === 503 ? r : null;
            }, { timeoutMs: 15000, intervalMs: 200 });
            assert.ok(ready, `/readyz did not turn 503 with Redis hung\n${stack.logTails(10, ['gateway'])}`);
            assert.equal(ready.json.checks.redis, 'down', ready.text);
            assert.match(stack.log('gateway'), /redis is not answering, dropping the connection/);
        } finally {
            process.kill(pid, 'SIGCONT');
        }
        const back = await waitFor(async () => {
            const r = await stack.get('/readyz');
            return r.status === 200 ? r : null;
        }, { timeoutMs: 15000, intervalMs: 200 });
        assert.ok(back, `/readyz did not turn 200 again once Redis answered\n${stack.logTails(10, ['gateway'])}`);
        assert.equal(back.json.checks.redis, 'ok', back.text);
    });
});

describe('the trace id', { timeout: 120000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_LOG: 'debug' } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('each HTTP request gets its own, answered in X-Trace-Id, sent with its bus calls and logged by the gateway and the services they reach', async () => {
        const u = await signUp(stack, { fullName: 'Trace Reader' });
        const first = await stack.get('/v1/me', { token: u.token });
        const second = await stack.get('/v1/me', { token: u.token });
        assert.equal(first.status, 200, first.text);
        const trace = first.headers.get('x-trace-id');
        assert.match(String(trace), /^[0-9A-HJKMNP-TV-Z]{26}$/, 'a ULID');
        assert.notEqual(second.headers.get('x-trace-id'), trace, 'one per request');
        // Log lines are "<level> <process> <trace> <message>".
        const lineWith = (name, re) => stack.log(name).split('\n')
            .find((l) => l.split(' ')[2] === trace && re.test(l));
        const seen = await waitFor(() => lineWith('gateway', /GET \/v1\/me/) && lineWith('identity', /method=identity\.me\b/));
        assert.ok(seen, `the trace ${trace} in the gateway's and identity's logs\n${stack.logTails(10, ['gateway', 'identity'])}`);
        // An error answered by a service carries it too.
        const bad = await stack.post('/v1/auth/otp', { phone: 'not a phone' });
        assert.equal(bad.status, 400, bad.text);
        const badTrace = bad.headers.get('x-trace-id');
        assert.match(String(badTrace), /^[0-9A-HJKMNP-TV-Z]{26}$/);
        assert.ok(await waitFor(() => stack.log('identity').split('\n').some((l) => l.split(' ')[2] === badTrace)),
            `identity logged the refused request under ${badTrace}\n${stack.logTails(10, ['identity'])}`);
    });
});
