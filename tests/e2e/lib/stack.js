'use strict';
// The end-to-end harness: starts the whole stack the way `make run` does
// (scripts/run.sh with the binaries under test, a fresh data directory, a
// free HTTP port on 127.0.0.1 and the bus on unix sockets), waits for its
// PARTA_READY line, and talks HTTP to the gateway as a client would.
// stop() ends the stack with SIGTERM and checks that no process it started
// is left. Every wait is bounded.

const { spawn, spawnSync } = require('node:child_process');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = process.env.PARTA_ROOT || path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.PARTA_BIN || path.join(ROOT, 'build', 'bin');

const READY_TIMEOUT_MS = 60000;
const STOP_TIMEOUT_MS = 20000;
const REQUEST_TIMEOUT_MS = 15000;
const DEFAULT_OPERATOR = '+79990000000';   // scripts/run.sh's PARTA_OPERATORS

// Budgets far above what a test sends, for stacks whose tests are not about
// rate limits. The gateway refuses to start unless every class its routes
// use is configured, so the classes come from its own route table
// (--list-routes), with these as a floor.
const KNOWN_CLASSES = ['ip', 'otp_phone', 'otp_ip', 'login_phone', 'login_ip', 'app_ip', 'invite_ip',
    'invite_user', 'post_user'];
const GENEROUS_BUDGET = '100000/60';

function routeLimitClasses() {
    const env = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PARTA_')) env[k] = v;
    const out = spawnSync(path.join(BIN, 'parta-gateway'), ['--list-routes', '1'],
        { env, encoding: 'utf8', timeout: 10000 });
    const classes = new Set(KNOWN_CLASSES);
    try {
        for (const route of JSON.parse(out.stdout))
            for (const item of String(route.limits || '').split(',').filter(Boolean))
                classes.add(item.split(':')[0]);
    } catch {
        // No route table (the binary is being rebuilt?): the floor only.
    }
    return [...classes];
}

// A PARTA_RATE_LIMITS value: every class generous, except `overrides`
// ({class: 'N/P[,N/P]'}).
function limits(overrides = {}) {
    const all = {};
    for (const cls of routeLimitClasses()) all[cls] = GENEROUS_BUDGET;
    Object.assign(all, overrides);
    return Object.entries(all).map(([k, v]) => `${k}=${v}`).join(';');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls `fn` until it returns a truthy value or `timeoutMs` passes; returns
// the last value (falsy on timeout).
async function waitFor(fn, { timeoutMs = 10000, intervalMs = 100 } = {}) {
    const deadline = Date.now() + timeoutMs;
    let value;
    for (;;) {
        value = await fn();
        if (value || Date.now() >= deadline) return value;
        await sleep(intervalMs);
    }
}

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

function alive(pid) {
    try {
        process.kill(pid, 0);
        return true;
    } catch (err) {
        if (err.code === 'ESRCH') return false;
        return true; // EPERM: it exists
    }
}

// Alive and not a zombie (a child that ended but was not reaped yet).
function stillRunning(pid) {
    if (!alive(pid)) return false;
    try {
        const m = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').match(/^\d+ \(.*\) (\S)/);
        return !(m && (m[1] === 'Z' || m[1] === 'X'));
    } catch {
        return true;
    }
}

function procState(pid) {
    try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        const m = stat.match(/^\d+ \((.*)\) (\S)/);
        return m ? `${m[1]} state ${m[2]}` : 'unknown';
    } catch {
        return 'gone';
    }
}

// A unique mobile phone per call: +7 999 and seven digits, never the
// operator's +79990000000.
let phoneSeq = 0;
const phoneBase = 1000000 + ((process.pid * 7919 + Date.now()) % 8000000);
function newPhone() {
    phoneSeq += 1;
    const n = ((phoneBase + phoneSeq * 104729) % 8999999) + 1000000;
    return `+7999${n}`;
}

// Stacks still running when the test process exits (a crash, a timeout)
// are killed outright so that nothing outlives the tests.
const running = new Set();
process.on('exit', () => {
    for (const stack of running) stack.killAll();
});

class Stack {
    constructor(opts) {
        this.opts = opts;
        this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parta-e2e-'));
        this.clockFile = path.join(this.dataDir, 'clock');
        this.output = '';
        this.stopped = false;
        this.tokens = new Set();   // every token this stack handed out (for the log check)
        this.stoppedServices = new Map();   // name -> {argv, env}: stopped by stopService
        this.restarted = [];       // [{pid, name, proc}] started by startService
    }

    async start() {
        const port = await freePort();
        const d = this.dataDir;
        fs.writeFileSync(this.clockFile, '0\n');
        const env = {};
        for (const [k, v] of Object.entries(process.env))
            if (!k.startsWith('PARTA_') && k !== 'BUILD') env[k] = v;
        Object.assign(env, {
            PARTA_BIN: BIN,
            PARTA_ROOT: ROOT,
            PARTA_DATA: d,
            PARTA_HTTP: `127.0.0.1:${port}`,
            PARTA_BUS: `ipc://${d}/bus.sock`,
            PARTA_EVENTS_IN: `ipc://${d}/ein.sock`,
            PARTA_EVENTS_OUT: `ipc://${d}/eout.sock`,
            PARTA_TEST_CLOCK_FILE: this.clockFile,
        }, this.opts.env || {});
        this.env = env;
        this.proc = spawn('bash', [path.join(ROOT, 'scripts', 'run.sh')], {
            env,
            cwd: d,
            stdio: ['ignore', 'pipe', 'pipe'],
        });
        running.add(this);
        this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
        this.proc.stdout.setEncoding('utf8');
        this.proc.stderr.setEncoding('utf8');
        this.proc.stderr.on('data', (s) => { this.output += s; });
        const ready = new Promise((resolve, reject) => {
            this.proc.stdout.on('data', (s) => {
                this.output += s;
                const m = this.output.match(/^PARTA_READY url=(\S+)$/m);
                if (m) resolve(m[1]);
            });
            this.exited.then(({ code, signal }) =>
                reject(new Error(`run.sh ended before it was ready (code ${code}, signal ${signal})`)));
        });
        let timer;
        const timeout = new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no PARTA_READY within ${READY_TIMEOUT_MS} ms`)),
                this.opts.readyTimeoutMs || READY_TIMEOUT_MS);
        });
        try {
            this.url = await Promise.race([ready, timeout]);
        } catch (err) {
            const report = `${err.message}\n--- run.sh output ---\n${this.output}\n${this.logTails(20)}`;
            await this.stop().catch(() => {});
            throw new Error(report);
        } finally {
            clearTimeout(timer);
        }
        this.pids = this.readPids();
        return this;
    }

    // [{pid, name}] from <data>/run.pids.
    readPids() {
        let text = '';
        try {
            text = fs.readFileSync(path.join(this.dataDir, 'run.pids'), 'utf8');
        } catch {
            return [];
        }
        return text.split('\n').filter(Boolean).map((line) => {
            const [pid, name] = line.trim().split(/\s+/);
            return { pid: Number(pid), name };
        });
    }

    pidOf(name) {
        const again = this.restarted.filter((p) => p.name === name);
        if (again.length) return again[again.length - 1].pid;
        const row = (this.pids || this.readPids()).find((p) => p.name === name);
        assert.ok(row, `no process named ${name} in run.pids`);
        return row.pid;
    }

    // Stops the process `name` (as run.pids names it) with SIGTERM and
    // waits, bounded, until it is gone; startService(name) starts it again
    // with the same command line and environment, its stderr appended to
    // the same log. For tests of what happens while a service is down and
    // after it comes back. Returns the pid stopped.
    async stopService(name, { timeoutMs = STOP_TIMEOUT_MS } = {}) {
        const pid = this.pidOf(name);
        let argv = null;
        let env = null;
        try {
            argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
            env = {};
            for (const kv of fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean)) {
                const i = kv.indexOf('=');
                if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
            }
        } catch {
            // No /proc: the command and environment run.sh would give it.
            argv = [path.join(BIN, `parta-${name}`)];
            env = { PARTA_REDIS: path.join(this.dataDir, 'redis.sock'), PARTA_OPERATORS: DEFAULT_OPERATOR,
                PARTA_CURVE: path.join(this.dataDir, 'curve'), ...this.env };
            if (env.PARTA_CURVE === 'off') delete env.PARTA_CURVE;
        }
        this.stoppedServices.set(name, { argv, env });
        process.kill(pid, 'SIGTERM');
        if (!await waitFor(() => !stillRunning(pid), { timeoutMs, intervalMs: 50 })) {
            try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
            throw new Error(`${name} (pid ${pid}) did not end within ${timeoutMs} ms of SIGTERM`);
        }
        return pid;
    }

    // Starts a process stopped by stopService again and waits, bounded,
    // until /readyz says every service has a worker. Returns its pid.
    async startService(name, { timeoutMs = READY_TIMEOUT_MS } = {}) {
        const saved = this.stoppedServices.get(name);
        assert.ok(saved, `${name} was not stopped by stopService`);
        const log = fs.openSync(this.logPath(name), 'a');
        let proc;
        try {
            proc = spawn(saved.argv[0], saved.argv.slice(1), { env: saved.env, cwd: this.dataDir,
                stdio: ['ignore', 'ignore', log] });
        } finally {
            fs.closeSync(log);
        }
        assert.ok(proc.pid, `could not start ${saved.argv[0]}`);
        this.stoppedServices.delete(name);
        this.restarted.push({ pid: proc.pid, name, proc });
        const ready = await waitFor(async () => {
            if (!stillRunning(proc.pid)) return 'exited';
            const r = await this.get('/readyz').catch(() => null);
            return r && r.status === 200 ? 'ready' : null;
        }, { timeoutMs, intervalMs: 100 });
        if (ready !== 'ready')
            throw new Error(`${name} did not come back (${ready || 'not ready in time'})\n${this.logTails(20, [name])}`);
        return proc.pid;
    }

    // Starts another process like `like` (as run.pids names it): its
    // command line and environment, with `envOverrides`; its stderr goes
    // to log/<name>.log, and stop() ends it with the stack. Returns the
    // child process.
    spawnLike(like, name, envOverrides = {}) {
        const pid = this.pidOf(like);
        const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
        const env = {};
        for (const kv of fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean)) {
            const i = kv.indexOf('=');
            if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
        }
        Object.assign(env, envOverrides);
        const log = fs.openSync(this.logPath(name), 'a');
        let proc;
        try {
            proc = spawn(argv[0], argv.slice(1), { env, cwd: this.dataDir, stdio: ['ignore', 'ignore', log] });
        } finally {
            fs.closeSync(log);
        }
        assert.ok(proc.pid, `could not start ${argv[0]}`);
        this.restarted.push({ pid: proc.pid, name, proc });
        return proc;
    }

    // Starts another gateway on a free port of 127.0.0.1, with the command
    // line and environment of the stack's own (the same bus, Redis and
    // keys), as an operator runs several behind one load balancer; its log
    // is log/<name>.log. Waits, bounded, until its /readyz is 200. Returns
    // a view of this stack that talks to the new gateway (url, get, post,
    // ... and pid); stop() ends it with the stack.
    async startGateway(name = 'gateway-2', { timeoutMs = READY_TIMEOUT_MS } = {}) {
        const port = await freePort();
        const proc = this.spawnLike('gateway', name, { PARTA_HTTP: `127.0.0.1:${port}` });
        const view = Object.create(this);
        view.url = `http://127.0.0.1:${port}`;
        view.pid = proc.pid;
        const ready = await waitFor(async () => {
            if (!stillRunning(proc.pid)) return 'exited';
            const r = await view.get('/readyz').catch(() => null);
            return r && r.status === 200 ? 'ready' : null;
        }, { timeoutMs, intervalMs: 100 });
        if (ready !== 'ready')
            throw new Error(`${name} did not start (${ready || 'not ready in time'})\n${this.logTails(20, [name])}`);
        return view;
    }

    // Sends `signal` to the process `name` (as run.pids names it).
    kill(name, signal = 'SIGTERM') {
        const pid = this.pidOf(name);
        process.kill(pid, signal);
        return pid;
    }

    logPath(name) {
        return path.join(this.dataDir, 'log', `${name}.log`);
    }

    log(name) {
        try {
            return fs.readFileSync(this.logPath(name), 'utf8');
        } catch {
            return '';
        }
    }

    logTails(lines = 15, names) {
        let dir = [];
        try {
            dir = fs.readdirSync(path.join(this.dataDir, 'log'));
        } catch {
            return '(no logs)';
        }
        const chosen = names ? dir.filter((f) => names.includes(f.replace(/\.log$/, ''))) : dir;
        return chosen.sort().map((f) => {
            const text = this.log(f.replace(/\.log$/, '')).split('\n').filter(Boolean);
            return `--- ${f} (last ${lines} lines) ---\n${text.slice(-lines).join('\n')}`;
        }).join('\n');
    }

    // The SMS messages written so far: [{to, text, at}].
    smsMessages() {
        let text = '';
        try {
            text = fs.readFileSync(path.join(this.dataDir, 'sms.outbox'), 'utf8');
        } catch {
            return [];
        }
        return text.split('\n').filter(Boolean).map((line) => JSON.parse(line));
    }

    // The last code sent to `phone` (E.164), or null. The code is the
    // standalone six-digit word of the message text.
    readOtp(phone) {
        const mine = this.smsMessages().filter((m) => m.to === phone);
        if (!mine.length) return null;
        const m = mine[mine.length - 1].text.match(/(?<![0-9])[0-9]{6}(?![0-9])/);
        return m ? m[0] : null;
    }

    // Moves the services' clock (PARTA_TEST_CLOCK_FILE) by `ms` from now
    // on. Written to a temporary file and renamed, so that a process never
    // reads it half-written.
    setClockOffset(ms) {
        const tmp = `${this.clockFile}.tmp`;
        fs.writeFileSync(tmp, `${Math.trunc(ms)}\n`);
        fs.renameSync(tmp, this.clockFile);
    }

    // One HTTP request through fetch. `body`: an object (sent as JSON), a
    // string or a Buffer (sent as is, Content-Type application/json unless
    // `headers` says otherwise). Returns {status, headers, text, json}.
    async request(method, urlPath, { body, token, headers = {}, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
        const h = { ...headers };
        let payload;
        if (body !== undefined) {
            payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
            if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type'))
                h['Content-Type'] = 'application/json';
        }
        if (token) h.Authorization = `Bearer ${token}`;
        const res = await fetch(this.url + urlPath, {
            method,
            headers: h,
            body: payload,
            signal: AbortSignal.timeout(timeoutMs),
        });
        const text = await res.text();
        let json = null;
        try {
            json = text ? JSON.parse(text) : null;
        } catch {
            json = null;
        }
        const out = { status: res.status, headers: res.headers, text, json };
        if (json && typeof json.token === 'string') this.tokens.add(json.token);
        return out;
    }

    get(p, opts) { return this.request('GET', p, opts); }
    post(p, body, opts = {}) { return this.request('POST', p, { ...opts, body }); }
    patch(p, body, opts = {}) { return this.request('PATCH', p, { ...opts, body }); }
    del(p, opts) { return this.request('DELETE', p, opts); }
    put(p, body, opts = {}) { return this.request('PUT', p, { ...opts, body }); }

    // The platform operator's phone: the first of PARTA_OPERATORS as the
    // stack was given it, else scripts/run.sh's default.
    operatorPhone() {
        const list = (this.env && this.env.PARTA_OPERATORS) || DEFAULT_OPERATOR;
        return list.split(',')[0].trim();
    }

    // A request through node:http, for what fetch would not send as is
    // (raw paths, any method). Resolves {status, headers, text} or
    // {error} when the connection failed.
    raw(method, urlPath, { headers = {}, body, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
        const u = new URL(this.url);
        return new Promise((resolve) => {
            let done = false;
            const finish = (v) => { if (!done) { done = true; resolve(v); } };
            const req = http.request({
                host: u.hostname, port: u.port, method, path: urlPath, headers, agent: false,
            }, (res) => {
                const chunks = [];
                res.on('data', (c) => chunks.push(c));
                res.on('end', () => finish({ status: res.statusCode, headers: res.headers,
                    text: Buffer.concat(chunks).toString('utf8') }));
                res.on('error', (err) => finish({ error: err.message }));
            });
            req.setTimeout(timeoutMs, () => { req.destroy(new Error('timed out')); });
            req.on('error', (err) => finish({ error: err.message }));
            if (body !== undefined) req.end(body);
            else req.end();
        });
    }

    // Sends the request head on a plain socket, then `bodyBytes` bytes of a
    // body of `contentLength` announced bytes, and reads the reply the
    // server gives (it may answer before the body is sent and close).
    // Resolves {status, headers, text} or {error}.
    rawHead(method, urlPath, contentLength, { contentType = 'application/json', bodyBytes = 0, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
        const u = new URL(this.url);
        return new Promise((resolve) => {
            const sock = net.connect(Number(u.port), u.hostname);
            let buf = Buffer.alloc(0);
            let done = false;
            const finish = (v) => { if (!done) { done = true; clearTimeout(timer); sock.destroy(); resolve(v); } };
            const timer = setTimeout(() => finish({ error: 'timed out' }), timeoutMs);
            const tryParse = (final) => {
                const text = buf.toString('latin1');
                const end = text.indexOf('\r\n\r\n');
                if (end < 0) return final ? finish({ error: `incomplete reply: ${JSON.stringify(text)}` }) : null;
                const lines = text.slice(0, end).split('\r\n');
                const status = Number((lines[0].match(/^HTTP\/1\.[01] (\d{3})/) || [])[1]);
                const headers = {};
                for (const l of lines.slice(1)) {
                    const i = l.indexOf(':');
                    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
                }
                const bodyStart = Buffer.byteLength(text.slice(0, end + 4), 'latin1');
                const want = headers['content-length'] !== undefined ? Number(headers['content-length']) : null;
                const have = buf.length - bodyStart;
                if (want !== null && have < want && !final) return null;
                if (want === null && !final) return null;
                return finish({ status, headers, text: buf.slice(bodyStart, want === null ? undefined : bodyStart + want).toString('utf8') });
            };
            sock.on('data', (c) => { buf = Buffer.concat([buf, c]); tryParse(false); });
            sock.on('end', () => tryParse(true));
            sock.on('close', () => tryParse(true));
            sock.on('error', () => { if (buf.length) tryParse(true); else finish({ error: 'connection failed' }); });
            sock.on('connect', () => {
                sock.write(`${method} ${urlPath} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: ${contentType}\r\n` +
                    `Content-Length: ${contentLength}\r\n\r\n`);
                if (bodyBytes > 0) {
                    // Written in pieces; a server that already answered may
                    // close meanwhile, which is fine.
                    const piece = Buffer.alloc(65536, 0x20);
                    let left = bodyBytes;
                    const more = () => {
                        while (left > 0 && !done && !sock.destroyed) {
                            const n = Math.min(left, piece.length);
                            left -= n;
                            if (!sock.write(piece.subarray(0, n))) return sock.once('drain', more);
                        }
                        return undefined;
                    };
                    more();
                }
            });
        });
    }

    // Ends the stack: SIGTERM to run.sh, wait for it, then check that every
    // process of run.pids is gone. Throws (after killing them) if any is
    // left. Safe to call twice.
    async stop() {
        if (this.stopped) return;
        this.stopped = true;
        const pids = this.readPids().concat(this.restarted.map(({ pid, name }) => ({ pid, name })));
        let problem = null;
        for (const p of this.restarted)
            if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGTERM');
        if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
            this.proc.kill('SIGTERM');
            let timer;
            const ended = await Promise.race([
                this.exited.then(() => true),
                new Promise((resolve) => { timer = setTimeout(() => resolve(false), STOP_TIMEOUT_MS); }),
            ]);
            clearTimeout(timer);
            if (!ended) {
                problem = `run.sh did not end within ${STOP_TIMEOUT_MS} ms of SIGTERM`;
                this.proc.kill('SIGKILL');
            }
        }
        // run.sh reaps its children before it exits; allow a moment for the
        // kernel to finish, no more.
        await waitFor(() => pids.every((p) => !alive(p.pid)), { timeoutMs: 2000, intervalMs: 50 });
        const left = pids.filter((p) => alive(p.pid));
        if (left.length) {
            problem = `${problem ? problem + '; ' : ''}processes left after stop: ` +
                left.map((p) => `${p.name} pid ${p.pid} (${procState(p.pid)})`).join(', ');
        }
        this.killAll();
        running.delete(this);
        const reports = this.sanitizerReports();
        if (reports) problem = `${problem ? problem + '; ' : ''}a sanitizer reported:\n${reports}`;
        if (problem) throw new Error(`${problem}\n--- run.sh output ---\n${this.output}`);
        if (!process.env.PARTA_E2E_KEEP) fs.rmSync(this.dataDir, { recursive: true, force: true });
    }

    // What AddressSanitizer, LeakSanitizer or UBSan wrote in the processes'
    // logs (a sanitized build), each with a few lines after it; '' if none.
    sanitizerReports() {
        const dir = path.join(this.dataDir, 'log');
        let files = [];
        try { files = fs.readdirSync(dir); } catch { return ''; }
        const found = [];
        for (const f of files) {
            let lines;
            try { lines = fs.readFileSync(path.join(dir, f), 'utf8').split('\n'); } catch { continue; }
            const i = lines.findIndex((l) => /ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error: /.test(l));
            if (i >= 0) found.push(`${f}:\n${lines.slice(i, i + 30).join('\n')}`);
        }
        return found.join('\n');
    }

    // SIGKILL to run.sh and everything it started: the last resort.
    killAll() {
        for (const p of this.readPids()) {
            try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
        }
        for (const p of this.restarted)
            if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
        if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
            try { this.proc.kill('SIGKILL'); } catch { /* gone */ }
        }
    }
}

async function startStack(opts = {}) {
    const stack = new Stack(opts);
    return stack.start();
}

// For a describe block: starts a stack before its tests and stops it after
// them. Returns a function giving the stack; when the stack did not start,
// that function throws why, so that every test's failure carries the cause.
function stackForSuite(opts = {}) {
    const { before, after } = require('node:test');
    const holder = { stack: null, error: null };
    before(async () => {
        try {
            holder.stack = await startStack(opts);
        } catch (err) {
            holder.error = err;
        }
    });
    after(async () => { if (holder.stack) await holder.stack.stop(); });
    return () => {
        if (holder.error) throw new Error(`the stack did not start: ${holder.error.message}`);
        return holder.stack;
    };
}

// --- what a client does ---

// Asserts the API's error shape: the status, a JSON body
// {"error": {"code", "message"[, "field"]}}, and the field when given
// (`field: undefined` means "not checked", null means "absent").
function assertError(res, status, code, field, what = '') {
    const where = `${what ? what + ': ' : ''}got ${res.status} ${res.text}`;
    assert.equal(res.status, status, where);
    assert.ok(res.json && typeof res.json === 'object' && res.json.error && typeof res.json.error === 'object',
        `the body is not {"error": {...}}: ${where}`);
    const err = res.json.error;
    if (code !== undefined) assert.equal(err.code, code, where);
    assert.equal(typeof err.code, 'string', where);
    assert.equal(typeof err.message, 'string', where);
    assert.ok(err.message.length > 0, `empty message: ${where}`);
    if (field === null) assert.ok(!('field' in err), `unexpected field: ${where}`);
    else if (Array.isArray(field)) assert.ok(field.includes(err.field), `field should be one of ${field.join(', ')}: ${where}`);
    else if (field !== undefined) assert.equal(err.field, field, where);
    const type = res.headers && (res.headers.get ? res.headers.get('content-type') : res.headers['content-type']);
    assert.match(String(type), /^application\/json/, `content type of an error: ${where}`);
}

// Asserts the status (the reply in the message) and returns the JSON body.
function expectStatus(res, status, what = '') {
    assert.equal(res.status, status, `${what ? what + ': ' : ''}got ${res.status} ${res.text}`);
    return res.json;
}

// Asks for a code for `phone` and returns it as read from the SMS outbox.
// `expectPhone` is the E.164 form when `phone` is written otherwise.
async function requestCode(stack, phone, { expectPhone = phone, headers } = {}) {
    const before = stack.smsMessages().filter((m) => m.to === expectPhone).length;
    const res = await stack.post('/v1/auth/otp', { phone }, { headers });
    assert.equal(res.status, 202, `POST /v1/auth/otp ${phone}: ${res.status} ${res.text}`);
    const sent = stack.smsMessages().filter((m) => m.to === expectPhone);
    assert.equal(sent.length, before + 1, `one new SMS to ${expectPhone}`);
    const code = stack.readOtp(expectPhone);
    assert.match(String(code), /^[0-9]{6}$/, `a six-digit code in ${JSON.stringify(sent[sent.length - 1])}`);
    return code;
}

// Signs a new user up: a code, then register. Returns {token, user, phone, body}.
async function signUp(stack, { phone = newPhone(), fullName = 'Test User', password, headers } = {}) {
    const code = await requestCode(stack, phone, { headers });
    const body = { phone, code, full_name: fullName };
    if (password !== undefined) body.password = password;
    const res = await stack.post('/v1/auth/register', body, { headers });
    assert.equal(res.status, 201, `register ${phone}: ${res.status} ${res.text}`);
    return { token: res.json.token, user: res.json.user, phone, body: res.json };
}

// Signs an existing user in with a fresh code. Returns the response.
async function loginByCode(stack, phone, { headers } = {}) {
    const code = await requestCode(stack, phone, { headers });
    return stack.post('/v1/auth/login', { phone, code }, { headers });
}

module.exports = {
    ROOT, BIN, limits, startStack, stackForSuite, Stack, assertError, expectStatus, requestCode, signUp,
    loginByCode, newPhone, sleep, waitFor, alive,
};
