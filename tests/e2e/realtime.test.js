'use strict';
// Realtime as a client sees it (API.md "Realtime", DESIGN.md §2 and §5):
// signing a WebSocket in by its first frame or by the upgrade's header, the
// close codes for a bad or missing token, pings both ways, the frame size
// bound, errors that keep the socket open, the session revoked under a
// socket, the pushes of a user's chats (messages, chats, members, read
// markers, typing, presence) reaching exactly the right sockets, a slow
// client getting a resync instead of unbounded memory, presence read over
// HTTP and reading as unknown while Redis is down, and the connections
// gauge. Each describe block runs its own stack from the built binaries.

const { describe, it, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const WebSocket = require('ws');
const {
    stackForSuite, limits, assertError, signUp, loginByCode, newPhone, waitFor, sleep, alive,
} = require('./lib/stack');

const NO_SUCH_CHAT = '01J0000000000000000000ZZZZ';
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
const FRAME_MAX = 64 * 1024;

// --- a WebSocket client that keeps what it receives ---

// Every frame received is kept; a test waits for the one it means, since
// frames of other chats (the org's automatic ones) may come in between.
class Client {
    constructor(ws) {
        this.ws = ws;
        this.frames = [];
        this.taken = new Set();
        this.pings = 0;
        this.closedWith = null;
        ws.on('message', (data, binary) => {
            let frame;
            try {
                frame = JSON.parse(data.toString('utf8'));
            } catch {
                frame = { unparsable: data.toString('utf8'), binary };
            }
            this.frames.push(frame);
        });
        ws.on('ping', () => { this.pings += 1; });
        ws.on('error', () => { /* seen as the close */ });
        this.closed = new Promise((resolve) => ws.on('close', (code, reason) => {
            this.closedWith = { code, reason: reason.toString('utf8') };
            resolve(this.closedWith);
        }));
    }

    // Opens /v1/ws (or `path`). Rejects with {status, body} when the
    // server answers the upgrade with something else than 101.
    static connect(stack, { token, protocols, path = '/v1/ws', headers = {} } = {}) {
        const url = stack.url.replace(/^http/, 'ws') + path;
        const h = { ...headers };
        if (token) h.Authorization = `Bearer ${token}`;
        const ws = new WebSocket(url, protocols, { headers: h, handshakeTimeout: 10000 });
        const client = new Client(ws);
        return new Promise((resolve, reject) => {
            ws.on('open', () => resolve(client));
            ws.on('unexpected-response', (req, res) => {
                let body = '';
                res.setEncoding('utf8');
                res.on('data', (c) => { body += c; });
                res.on('end', () => {
                    let json = null;
                    try { json = JSON.parse(body); } catch { json = null; }
                    const err = new Error(`the upgrade was answered ${res.statusCode} ${body}`);
                    Object.assign(err, { status: res.statusCode, body, json, headers: res.headers });
                    reject(err);
                    req.destroy();
                });
            });
            ws.on('error', reject);
        });
    }

    send(frame) {
        this.ws.send(typeof frame === 'string' || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame));
    }

    // The first frame not waited for yet that `pred` accepts, within
    // `timeoutMs`; fails with what did arrive.
    async next(pred, what, timeoutMs = 5000) {
        const find = () => {
            for (let i = 0; i < this.frames.length; i++) {
                if (!this.taken.has(i) && pred(this.frames[i])) {
                    this.taken.add(i);
                    return { frame: this.frames[i] };
                }
            }
            return null;
        };
        const hit = await waitFor(() => find() || (this.closedWith && { closed: true }), { timeoutMs, intervalMs: 20 });
        if (hit && hit.frame) return hit.frame;
        const late = find();    // a frame that came with the close
        if (late) return late.frame;
        assert.fail(`${what}: not received within ${timeoutMs} ms${this.closedWith ? ` (closed ${JSON.stringify(this.closedWith)})` : ''}; ` +
            `frames: ${JSON.stringify(this.frames).slice(0, 3000)}`);
        return null;
    }

    // Where the frames received so far end (for none()).
    mark() {
        return this.frames.length;
    }

    // Asserts that no frame `pred` accepts arrived since `from` (a mark;
    // by default, anything not waited for) or arrives within `ms`.
    async none(pred, what, ms = 700, from = 0) {
        await sleep(ms);
        const bad = this.frames.filter((f, i) => i >= from && !this.taken.has(i) && pred(f));
        assert.deepEqual(bad, [], `${what}: unexpected frames`);
    }

    async closeCode(what, timeoutMs = 5000) {
        const done = await Promise.race([this.closed, sleep(timeoutMs).then(() => null)]);
        assert.ok(done, `${what}: the socket is still open after ${timeoutMs} ms; frames ${JSON.stringify(this.frames)}`);
        return done;
    }

    // A ping frame answered by a pong proves the socket is open and that
    // everything sent before it was handled.
    async roundTrip(what = 'round trip') {
        this.send({ type: 'ping' });
        await this.next((f) => f.type === 'pong', `${what}: pong`);
    }

    close() {
        if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    }
}

// A signed-in socket: by the first frame, or by the header when `header`.
async function signedIn(stack, user, { header = false } = {}) {
    const client = await Client.connect(stack, header ? { token: user.token } : {});
    if (!header) client.send({ type: 'auth', token: user.token });
    const ready = await client.next((f) => f.type === 'ready', 'ready');
    assert.deepEqual(ready, { type: 'ready', user_id: user.user.id });
    return client;
}

// The value of parta_ws_connections in /metrics.
async function wsGauge(stack) {
    const res = await stack.get('/metrics');
    assert.equal(res.status, 200, res.text);
    const m = res.text.match(/^parta_ws_connections (\d+)$/m);
    assert.ok(m, `parta_ws_connections in /metrics:\n${res.text}`);
    return Number(m[1]);
}

// A WebSocket by hand that never answers pings. Resolves
// {pings, closed: Promise<ms after the upgrade>}.
function mutedSocket(stack, token) {
    const u = new URL(stack.url);
    return new Promise((resolve, reject) => {
        const sock = net.connect(Number(u.port), u.hostname);
        let buf = Buffer.alloc(0);
        let upgraded = false;
        let openedAt = 0;
        const state = { pings: 0 };
        state.closed = new Promise((done) => sock.on('close', () => done(Date.now() - openedAt)));
        const timer = setTimeout(() => { sock.destroy(); reject(new Error('no 101 within 10 s')); }, 10000);
        sock.on('error', () => {});
        sock.on('data', (chunk) => {
            buf = Buffer.concat([buf, chunk]);
            if (!upgraded) {
                const end = buf.indexOf('\r\n\r\n');
                if (end < 0) return;
                const head = buf.subarray(0, end).toString('latin1');
                buf = buf.subarray(end + 4);
                clearTimeout(timer);
                if (!/^HTTP\/1\.1 101 /.test(head)) {
                    reject(new Error(`upgrade refused: ${head}`));
                    sock.destroy();
                    return;
                }
                upgraded = true;
                openedAt = Date.now();
                resolve(state);
            }
            // Server frames are unmasked: opcode, length, payload.
            for (;;) {
                if (buf.length < 2) return;
                let len = buf[1] & 0x7f;
                let off = 2;
                if (len === 126) {
                    if (buf.length < 4) return;
                    len = buf.readUInt16BE(2);
                    off = 4;
                } else if (len === 127) {
                    if (buf.length < 10) return;
                    len = Number(buf.readBigUInt64BE(2));
                    off = 10;
                }
                if (buf.length < off + len) return;
                if ((buf[0] & 0x0f) === 0x9) state.pings += 1;
                buf = buf.subarray(off + len);
            }
        });
        sock.on('connect', () => {
            sock.write(`GET /v1/ws HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
                `Authorization: Bearer ${token}\r\n\r\n`);
        });
    });
}

// A JSON text frame of exactly `size` bytes: a ping with padding.
function pingOfSize(size) {
    const empty = JSON.stringify({ type: 'ping', pad: '' });
    return JSON.stringify({ type: 'ping', pad: 'x'.repeat(size - empty.length) });
}

// --- an org with a chat (for the suites that need chats) ---

function operatorPhone(stack) {
    return ((stack.env && stack.env.PARTA_OPERATORS) || '+79990000000').split(',')[0].trim();
}

function ok(res, status, what) {
    assert.equal(res.status, status, `${what}: got ${res.status} ${res.text}`);
    return res.json;
}

// An approved org, its admin, three teachers (a, b, c) and a group chat
// made by the admin with a and b: {org, admin, a, b, c, chat}.
async function world(stack) {
    const op = await signUp(stack, { phone: operatorPhone(stack), fullName: 'Оператор Платформы' });
    const adminPhone = newPhone();
    const app = ok(await stack.post('/v1/org-applications', {
        org_name: 'Колледж связи', short_name: 'КС', region: 'Рязанская область',
        admin: { full_name: 'Администратор Колледжа', phone: adminPhone, email: 'admin@college.example' },
        order_number: '12-к', order_date: '2026-08-20',
    }), 201, 'apply');
    const org = ok(await stack.post(`/v1/org-applications/${app.id}/approve`, undefined, { token: op.token }), 200, 'approve').org_id;
    const admin = await signUp(stack, { phone: adminPhone, fullName: 'Администратор Колледжа' });
    const teacher = async (fullName) => {
        const t = await signUp(stack, { fullName });
        ok(await stack.post(`/v1/orgs/${org}/members/${t.user.id}/roles`, { role: 'teacher' }, { token: admin.token }), 200, `teacher ${fullName}`);
        return t;
    };
    const a = await teacher('Анна Петрова');
    const b = await teacher('Борис Сидоров');
    const c = await teacher('Вера Кузнецова');
    const chat = ok(await stack.post(`/v1/orgs/${org}/chats`, {
        kind: 'group', title: 'Кафедра информатики', member_ids: [a.user.id, b.user.id],
    }, { token: admin.token }), 201, 'create the chat');
    return { org, admin, a, b, c, chat };
}

async function post(stack, user, chatId, text) {
    return ok(await stack.post(`/v1/chats/${chatId}/messages`, { text }, { token: user.token }), 201, `post "${text.slice(0, 20)}"`);
}

const isMessage = (type, chatId, pred = () => true) => (f) => f.type === type && f.message && f.message.chat_id === chatId && pred(f.message);

// ---------------------------------------------------------------------------

describe('WebSocket: signing in, frames, keepalive', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits(), PARTA_WS_PING_S: '1' } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('signs in with a first frame {type: auth}, says ready with the user id, answers ping with pong', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Первая' });
        const client = await Client.connect(stack);
        client.send({ type: 'auth', token: u.token });
        assert.deepEqual(await client.next((f) => f.type === 'ready', 'ready'), { type: 'ready', user_id: u.user.id });
        client.send({ type: 'ping' });
        assert.deepEqual(await client.next((f) => f.type === 'pong', 'pong'), { type: 'pong' });
        client.close();
        assert.equal((await client.closeCode('client close')).code, 1005);
    });

    it('signs in with Authorization: Bearer at the upgrade; frames sent right behind the auth frame wait for it', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Вторая' });
        const byHeader = await Client.connect(stack, { token: u.token });
        assert.deepEqual(await byHeader.next((f) => f.type === 'ready', 'ready'), { type: 'ready', user_id: u.user.id });
        await byHeader.roundTrip();

        // auth and ping in one go: ready comes first, then the pong.
        const eager = await Client.connect(stack);
        eager.send({ type: 'auth', token: u.token });
        eager.send({ type: 'ping' });
        await eager.next((f) => f.type === 'pong', 'pong after auth');
        assert.deepEqual(eager.frames.map((f) => f.type), ['ready', 'pong']);
        byHeader.close();
        eager.close();
    });

    it('a bad token gets {type: error, code: unauthorized} and close 4001, by frame and by header', async () => {
        const wrong = crypto.randomBytes(32).toString('base64url');
        const byFrame = await Client.connect(stack);
        byFrame.send({ type: 'auth', token: wrong });
        const err = await byFrame.next((f) => f.type === 'error', 'error frame');
        assert.equal(err.code, 'unauthorized', JSON.stringify(err));
        assert.equal(typeof err.message, 'string');
        assert.equal((await byFrame.closeCode('bad token by frame')).code, 4001);

        const byHeader = await Client.connect(stack, { token: wrong });
        assert.equal((await byHeader.next((f) => f.type === 'error', 'error frame')).code, 'unauthorized');
        assert.equal((await byHeader.closeCode('bad token by header')).code, 4001);

        const basic = await Client.connect(stack, { headers: { Authorization: 'Basic dXNlcjpwYXNz' } });
        assert.equal((await basic.next((f) => f.type === 'error', 'error frame')).code, 'unauthorized');
        assert.equal((await basic.closeCode('Basic auth')).code, 4001);
    });

    it('a first frame that is not auth closes with 4001 and says why', async () => {
        for (const first of [{ type: 'ping' }, { type: 'auth' }, { type: 'auth', token: 7 }, 'not json', '[]']) {
            const client = await Client.connect(stack);
            client.send(first);
            const err = await client.next((f) => f.type === 'error', `error for ${JSON.stringify(first)}`);
            assert.equal(err.code, 'unauthorized', JSON.stringify(err));
            assert.equal((await client.closeCode(`first frame ${JSON.stringify(first)}`)).code, 4001);
            assert.ok(!client.frames.some((f) => f.type === 'pong' || f.type === 'ready'), JSON.stringify(client.frames));
        }
    });

    it('a socket that does not sign in within 10 s is closed with 4001', async () => {
        const started = Date.now();
        const client = await Client.connect(stack);
        const closed = await client.closeCode('silent socket', 16000);
        const took = Date.now() - started;
        assert.equal(closed.code, 4001, JSON.stringify(closed));
        assert.ok(took >= 9000 && took <= 14000, `closed after ${took} ms, expected about 10 s`);
        assert.equal((await client.next((f) => f.type === 'error', 'error frame')).code, 'unauthorized');
    });

    it('a revoked token cannot sign a socket in', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Третья' });
        ok(await stack.post('/v1/auth/logout', undefined, { token: u.token }), 204, 'logout');
        const client = await Client.connect(stack);
        client.send({ type: 'auth', token: u.token });
        assert.equal((await client.next((f) => f.type === 'error', 'error')).code, 'unauthorized');
        assert.equal((await client.closeCode('revoked token')).code, 4001);
    });

    it('malformed and unknown frames get an error frame and the socket stays open', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Четвёртая' });
        const client = await signedIn(stack, u);
        const cases = ['{"type": "ping"', '[1, 2]', '"ping"', '{"kind": "ping"}', '{"type": 5}',
            '{"type": "dance"}', '{"type": "auth", "token": "x"}', '{"type":"ping","type":"ping"}'];
        for (const text of cases) {
            client.send(text);
            const err = await client.next((f) => f.type === 'error', `error for ${text}`);
            assert.equal(err.code, 'bad_request', `${text}: ${JSON.stringify(err)}`);
            assert.equal(typeof err.message, 'string');
        }
        client.send(Buffer.from([1, 2, 3]));    // a binary frame
        assert.equal((await client.next((f) => f.type === 'error', 'error for binary')).code, 'bad_request');
        await client.roundTrip('still open');
        assert.equal(client.closedWith, null);
        client.close();
    });

    it('a frame of 64 KiB is read; one byte more closes with 1009, also when it comes in fragments', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Пятая' });
        const client = await signedIn(stack, u);
        const exact = pingOfSize(FRAME_MAX);
        assert.equal(Buffer.byteLength(exact), FRAME_MAX);
        client.send(exact);
        await client.next((f) => f.type === 'pong', 'pong for 64 KiB');

        client.send(pingOfSize(FRAME_MAX + 1));
        assert.equal((await client.closeCode('64 KiB + 1')).code, 1009);

        const fragmented = await signedIn(stack, u);
        const half = Buffer.alloc(40000, 0x20);
        fragmented.ws.send(half, { fin: false, binary: false });
        fragmented.ws.send(half, { fin: true, binary: false });
        assert.equal((await fragmented.closeCode('two fragments of 40000')).code, 1009);
    });

    it('the gateway pings every socket and hangs up on one that never answers', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Шестая' });
        const client = await signedIn(stack, u);    // ws answers pings by itself
        await sleep(3500);
        assert.ok(client.pings >= 2, `pings received in 3.5 s with PARTA_WS_PING_S=1: ${client.pings}`);
        await client.roundTrip('alive after the pings');

        const muted = await mutedSocket(stack, u.token);
        const after = await Promise.race([muted.closed, sleep(8000).then(() => null)]);
        assert.ok(after !== null, 'a socket that never answers pings is closed');
        assert.ok(muted.pings >= 1, 'it was pinged first');
        // Not before its ping went unanswered for a whole interval.
        assert.ok(after >= 1500, `closed ${after} ms after the upgrade (ping after 1 s, hang up 1 s later)`);
        client.close();
    });

    it('typing to a chat you are not in answers forbidden; a bad chat_id answers bad_request', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Седьмая' });
        const client = await signedIn(stack, u);
        client.send({ type: 'typing', chat_id: NO_SUCH_CHAT });
        const err = await client.next((f) => f.type === 'error', 'error');
        assert.deepEqual({ code: err.code, chat_id: err.chat_id }, { code: 'forbidden', chat_id: NO_SUCH_CHAT });
        for (const bad of [{ type: 'typing' }, { type: 'typing', chat_id: '' }, { type: 'typing', chat_id: 'a/b' },
            { type: 'typing', chat_id: 'x'.repeat(200) }, { type: 'typing', chat_id: 12 }]) {
            client.send(bad);
            assert.equal((await client.next((f) => f.type === 'error', JSON.stringify(bad))).code, 'bad_request');
        }
        await client.roundTrip();
        client.close();
    });

    it('ending a session (DELETE /v1/me/sessions/{id}, logout, security report) pushes session.revoked and closes 4003', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Восьмая' });
        const second = ok(await loginByCode(stack, u.phone), 200, 'second session');
        const sessions = ok(await stack.get('/v1/me/sessions', { token: second.token }), 200, 'sessions').items;
        const first = sessions.find((s) => !s.current);
        assert.ok(first, JSON.stringify(sessions));

        const s1 = await signedIn(stack, u);
        const s1b = await signedIn(stack, u, { header: true });
        const s2 = await signedIn(stack, { ...u, token: second.token });
        ok(await stack.del(`/v1/me/sessions/${first.id}`, { token: second.token }), 204, 'revoke the first session');
        for (const [client, name] of [[s1, 'first socket'], [s1b, 'second socket of the first session']]) {
            const frame = await client.next((f) => f.type === 'session.revoked', `${name}: session.revoked`);
            assert.equal(frame.type, 'session.revoked');
            assert.equal((await client.closeCode(name)).code, 4003);
        }
        await s2.roundTrip('the other session is not touched');

        ok(await stack.post('/v1/auth/logout', undefined, { token: second.token }), 204, 'logout');
        await s2.next((f) => f.type === 'session.revoked', 'logout: session.revoked');
        assert.equal((await s2.closeCode('logout')).code, 4003);

        // The unauthorized-access report ends every session of the user.
        const third = ok(await loginByCode(stack, u.phone), 200, 'third session');
        const fourth = ok(await loginByCode(stack, u.phone), 200, 'fourth session');
        const s3 = await signedIn(stack, { ...u, token: third.token });
        const s4 = await signedIn(stack, { ...u, token: fourth.token });
        ok(await stack.post('/v1/me/security/report', { comment: 'not me' }, { token: third.token }), 202, 'report');
        for (const client of [s3, s4]) {
            await client.next((f) => f.type === 'session.revoked', 'report: session.revoked');
            assert.equal((await client.closeCode('security report')).code, 4003);
        }
    });

    it('only GET /v1/ws upgrades, to no subprotocol or parta-ws; a plain GET /v1/ws is told to upgrade', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Девятая' });
        const plain = await stack.get('/v1/ws');
        assertError(plain, 400, 'bad_request', '');
        assert.match(plain.json.error.message, /WebSocket/);

        const named = await Client.connect(stack, { token: u.token, protocols: ['parta-ws'] });
        assert.equal(named.ws.protocol, 'parta-ws');
        await named.next((f) => f.type === 'ready', 'ready with the subprotocol named');
        named.close();

        for (const [opts, what] of [
            [{ path: '/v1/me', token: u.token }, 'an upgrade elsewhere'],
            [{ path: '/v1/ws/more' }, 'an upgrade below /v1/ws'],
            [{ protocols: ['http'] }, 'subprotocol http'],
            [{ protocols: ['parta-fd'] }, 'subprotocol parta-fd'],
            [{ protocols: ['graphql-ws'] }, 'an unknown subprotocol'],
            [{ protocols: ['http', 'parta-ws'] }, 'http named before parta-ws'],
        ]) {
            const err = await Client.connect(stack, opts).then(
                (c) => { c.close(); return null; },
                (e) => e,
            );
            assert.ok(err && err.status, `${what}: refused, not upgraded`);
            assertError({ status: err.status, json: err.json, text: err.body, headers: err.headers }, 400, 'bad_request', undefined, what);
        }
        // The refusals did not disturb the server.
        const after = await signedIn(stack, u);
        await after.roundTrip();
        after.close();
    });

    it('parta_ws_connections in /metrics counts open sockets, signed in or not', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Десятая' });
        const before = await wsGauge(stack);
        const clients = [await signedIn(stack, u), await signedIn(stack, u, { header: true }), await Client.connect(stack)];
        assert.ok(await waitFor(async () => (await wsGauge(stack)) === before + 3, { timeoutMs: 5000 }),
            `the gauge goes from ${before} to ${before + 3}: ${await wsGauge(stack)}`);
        for (const c of clients) c.close();
        await Promise.all(clients.map((c) => c.closed));
        assert.ok(await waitFor(async () => (await wsGauge(stack)) === before, { timeoutMs: 5000 }),
            `the gauge is back to ${before}: ${await wsGauge(stack)}`);
    });

    it('never writes a token to the gateway log', async () => {
        const u = await signUp(stack, { fullName: 'Ирина Одиннадцатая' });
        const c = await signedIn(stack, u);
        await c.roundTrip();
        c.close();
        await c.closed;
        const log = stack.log('gateway');
        assert.ok(log.includes('ws signed in'), 'the sign-in is logged');
        for (const token of [...stack.tokens, u.token])
            assert.ok(!log.includes(token), 'a token is in the gateway log');
    });
});

// ---------------------------------------------------------------------------

describe('WebSocket: pushes of the user\'s chats, typing and presence', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    let w;
    beforeEach(async () => {
        stack = suiteStack();
        if (!w) w = await world(stack);
    });

    it('chat.created reaches the members\' sockets, with the chat; not anyone else\'s', async () => {
        const a = await signedIn(stack, w.a);
        const c = await signedIn(stack, w.c);
        const made = ok(await stack.post(`/v1/orgs/${w.org}/chats`, {
            kind: 'group', title: 'Методическое объединение', member_ids: [w.a.user.id],
        }, { token: w.admin.token }), 201, 'create');
        const frame = await a.next((f) => f.type === 'chat.created' && f.chat && f.chat.id === made.id, 'chat.created');
        assert.equal(frame.chat.title, 'Методическое объединение');
        assert.equal(frame.chat.org_id, w.org);
        assert.equal(frame.chat.kind, 'group');
        assert.ok(!('member_ids' in frame.chat), 'the member list is not pushed');
        await c.none((f) => f.chat && f.chat.id === made.id, 'a non-member');
        a.close();
        c.close();
    });

    it('message.posted, edited and deleted reach every socket of every member, and no one else', async () => {
        const a1 = await signedIn(stack, w.a);
        const a2 = await signedIn(stack, w.a, { header: true });
        const b = await signedIn(stack, w.b);
        const c = await signedIn(stack, w.c);
        const msg = await post(stack, w.b, w.chat.id, 'Совещание в среду в 15:00');
        for (const [client, who] of [[a1, 'a, first socket'], [a2, 'a, second socket'], [b, 'the author']]) {
            const f = await client.next(isMessage('message.posted', w.chat.id, (m) => m.id === msg.id), `${who}: message.posted`);
            assert.deepEqual(f.message, msg, `${who}: the message as POST returned it`);
        }
        const edited = ok(await stack.patch(`/v1/chats/${w.chat.id}/messages/${msg.id}`, { text: 'Совещание в четверг' },
            { token: w.b.token }), 200, 'edit');
        const fe = await a1.next(isMessage('message.edited', w.chat.id, (m) => m.id === msg.id), 'message.edited');
        assert.equal(fe.message.text, 'Совещание в четверг');
        assert.equal(fe.message.edited_at, edited.edited_at);
        assert.ok(!('previous_text' in fe) && !JSON.stringify(fe).includes('в среду'), 'the old text is not pushed');
        ok(await stack.del(`/v1/chats/${w.chat.id}/messages/${msg.id}`, { token: w.b.token }), 204, 'delete');
        const fd = await a2.next(isMessage('message.deleted', w.chat.id, (m) => m.id === msg.id), 'message.deleted');
        assert.equal(fd.message.deleted, true);
        await c.none((f) => f.message && f.message.chat_id === w.chat.id, 'a non-member');
        for (const x of [a1, a2, b, c]) x.close();
    });

    it('chat.read goes to the reader\'s own sockets only', async () => {
        const b1 = await signedIn(stack, w.b);
        const b2 = await signedIn(stack, w.b);
        const a = await signedIn(stack, w.a);
        const msg = await post(stack, w.a, w.chat.id, 'Прочитайте, пожалуйста');
        await b1.next(isMessage('message.posted', w.chat.id, (m) => m.id === msg.id), 'posted');
        ok(await stack.post(`/v1/chats/${w.chat.id}/read`, { seq: msg.seq }, { token: w.b.token }), 204, 'read');
        for (const client of [b1, b2]) {
            const f = await client.next((x) => x.type === 'chat.read' && x.chat_id === w.chat.id, 'chat.read');
            assert.deepEqual(f, { type: 'chat.read', chat_id: w.chat.id, user_id: w.b.user.id, seq: msg.seq });
        }
        await a.none((f) => f.type === 'chat.read', 'another member');
        for (const x of [a, b1, b2]) x.close();
    });

    it('typing reaches the other members\' sockets, at most once a second per chat', async () => {
        const a1 = await signedIn(stack, w.a);
        const a2 = await signedIn(stack, w.a);
        const b = await signedIn(stack, w.b);
        const c = await signedIn(stack, w.c);
        a1.send({ type: 'typing', chat_id: w.chat.id });
        const f = await b.next((x) => x.type === 'typing', 'typing');
        assert.deepEqual(f, { type: 'typing', chat_id: w.chat.id, user_id: w.a.user.id });
        a1.send({ type: 'typing', chat_id: w.chat.id });   // within the second: not passed on
        await a1.roundTrip();
        await b.none((x) => x.type === 'typing', 'a second typing within a second', 600);
        await sleep(500);
        a1.send({ type: 'typing', chat_id: w.chat.id });
        await b.next((x) => x.type === 'typing', 'typing after a second');
        await a2.none((x) => x.type === 'typing', 'the typist\'s own other socket', 100);
        await c.none((x) => x.type === 'typing', 'a non-member', 100);
        c.send({ type: 'typing', chat_id: w.chat.id });
        assert.equal((await c.next((x) => x.type === 'error', 'non-member typing')).code, 'forbidden');
        for (const x of [a1, a2, b, c]) x.close();
    });

    it('chat.updated, chat.member_added and chat.member_removed; a removed member hears nothing more of the chat', async () => {
        const a = await signedIn(stack, w.a);
        const b = await signedIn(stack, w.b);
        const c = await signedIn(stack, w.c);
        ok(await stack.patch(`/v1/chats/${w.chat.id}`, { title: 'Кафедра ИТ' }, { token: w.admin.token }), 200, 'rename');
        const upd = await b.next((x) => x.type === 'chat.updated' && x.chat && x.chat.id === w.chat.id, 'chat.updated');
        assert.equal(upd.chat.title, 'Кафедра ИТ');

        ok(await stack.post(`/v1/chats/${w.chat.id}/members`, { user_ids: [w.c.user.id] }, { token: w.admin.token }), 200, 'add c');
        for (const [client, who] of [[a, 'a member'], [c, 'the one added']]) {
            const f = await client.next((x) => x.type === 'chat.member_added' && x.chat_id === w.chat.id && x.user_id === w.c.user.id,
                `${who}: member_added`);
            assert.deepEqual(f, { type: 'chat.member_added', chat_id: w.chat.id, user_id: w.c.user.id, role: 'member' });
        }
        const hello = await post(stack, w.a, w.chat.id, 'Добро пожаловать');
        await c.next(isMessage('message.posted', w.chat.id, (m) => m.id === hello.id), 'the new member gets messages');

        ok(await stack.del(`/v1/chats/${w.chat.id}/members/${w.b.user.id}`, { token: w.admin.token }), 204, 'remove b');
        for (const [client, who] of [[a, 'a member'], [b, 'the one removed']]) {
            const f = await client.next((x) => x.type === 'chat.member_removed' && x.chat_id === w.chat.id && x.user_id === w.b.user.id,
                `${who}: member_removed`);
            assert.equal(f.type, 'chat.member_removed');
        }
        const removedAt = b.mark();
        const after = await post(stack, w.a, w.chat.id, 'Уже без Бориса');
        a.send({ type: 'typing', chat_id: w.chat.id });
        await a.next(isMessage('message.posted', w.chat.id, (m) => m.id === after.id), 'a member still hears');
        await b.none((x) => (x.message && x.message.chat_id === w.chat.id) || (x.type === 'typing' && x.chat_id === w.chat.id),
            'the removed member', 700, removedAt);
        b.send({ type: 'typing', chat_id: w.chat.id });
        assert.equal((await b.next((x) => x.type === 'error', 'typing after removal')).code, 'forbidden');
        // Back in, for the tests that follow.
        ok(await stack.post(`/v1/chats/${w.chat.id}/members`, { user_ids: [w.b.user.id] }, { token: w.admin.token }), 200, 'add b back');
        await b.next((x) => x.type === 'chat.member_added' && x.chat_id === w.chat.id && x.user_id === w.b.user.id, 'b is back');
        const back = await post(stack, w.a, w.chat.id, 'С возвращением');
        await b.next(isMessage('message.posted', w.chat.id, (m) => m.id === back.id), 'b hears the chat again');
        for (const x of [a, b, c]) x.close();
    });

    it('a member reports unauthorized access: the org\'s admins\' sockets are told who and when, nobody else\'s; the reporter\'s close', async () => {
        const victim = await signUp(stack, { fullName: 'Жертва Взлома' });
        ok(await stack.post(`/v1/orgs/${w.org}/members/${victim.user.id}/roles`, { role: 'teacher' }, { token: w.admin.token }),
            200, 'teacher');
        const admin = await signedIn(stack, w.admin);
        const other = await signedIn(stack, w.a);
        const own = await signedIn(stack, victim);
        const before = Date.now();
        const res = await stack.post('/v1/me/security/report', { comment: 'Кто-то читал мои сообщения' }, { token: victim.token });
        assert.equal(res.status, 202, res.text);
        const f = await admin.next((x) => x.type === 'security.reported', 'the admin is told');
        assert.deepEqual(Object.keys(f).sort(), ['at', 'org_id', 'type', 'user']);
        assert.equal(f.org_id, w.org);
        assert.deepEqual(f.user, { id: victim.user.id, full_name: 'Жертва Взлома' });
        assert.match(f.at, RFC3339);
        assert.ok(Math.abs(Date.parse(f.at) - before) < 10000, f.at);
        assert.ok(!JSON.stringify(f).includes('Кто-то читал'), 'not the comment');
        assert.equal((await own.closeCode('the reporter\'s socket')).code, 4003);
        await other.none((x) => x.type === 'security.reported', 'a teacher is not told', 300);
        admin.close();
        other.close();
    });

    it('presence: co-members\' sockets hear a user come online and go offline', async () => {
        const a = await signedIn(stack, w.a);
        await sleep(500);   // a's chats are looked up when a connects
        const b = await signedIn(stack, w.b);
        const on = await a.next((x) => x.type === 'presence' && x.user_id === w.b.user.id && x.online === true, 'b online');
        assert.deepEqual(on, { type: 'presence', user_id: w.b.user.id, online: true, last_seen_at: null });
        const b2 = await signedIn(stack, w.b);
        b.close();
        await b.closed;
        await a.none((x) => x.type === 'presence' && x.user_id === w.b.user.id, 'b still has a socket', 500);
        b2.close();
        const off = await a.next((x) => x.type === 'presence' && x.user_id === w.b.user.id && x.online === false, 'b offline');
        assert.match(off.last_seen_at, RFC3339);
        assert.ok(Math.abs(Date.parse(off.last_seen_at) - Date.now()) < 10000, off.last_seen_at);
        a.close();
    });

    it('GET /v1/chats/{chat_id}/presence: online, last seen, or never seen; members only', async () => {
        const fresh = await signUp(stack, { fullName: 'Галина Новикова' });
        ok(await stack.post(`/v1/orgs/${w.org}/members/${fresh.user.id}/roles`, { role: 'teacher' }, { token: w.admin.token }), 200, 'teacher');
        ok(await stack.post(`/v1/chats/${w.chat.id}/members`, { user_ids: [fresh.user.id] }, { token: w.admin.token }), 200, 'add');
        const b = await signedIn(stack, w.b);
        b.close();
        await b.closed;
        const a = await signedIn(stack, w.a);
        const res = await stack.get(`/v1/chats/${w.chat.id}/presence`, { token: w.a.token });
        const body = ok(res, 200, 'presence');
        assert.deepEqual(Object.keys(body), ['items']);
        const by = Object.fromEntries(body.items.map((i) => [i.user_id, i]));
        assert.deepEqual(by[w.a.user.id], { user_id: w.a.user.id, online: true, last_seen_at: null });
        assert.equal(by[w.b.user.id].online, false);
        assert.match(String(by[w.b.user.id].last_seen_at), RFC3339);
        assert.deepEqual(by[fresh.user.id], { user_id: fresh.user.id, online: false, last_seen_at: null });
        const members = ok(await stack.get(`/v1/chats/${w.chat.id}/members?limit=200`, { token: w.a.token }), 200, 'members');
        assert.deepEqual(body.items.map((i) => i.user_id).sort(), members.items.map((m) => m.user.id).sort(),
            'one item per member');

        const outsider = await signUp(stack, { fullName: 'Посторонний Человек' });
        const denied = await stack.get(`/v1/chats/${w.chat.id}/presence`, { token: outsider.token });
        assert.ok([403, 404].includes(denied.status), `a non-member: ${denied.status} ${denied.text}`);
        assertError(denied, denied.status, undefined);
        assertError(await stack.get(`/v1/chats/${NO_SUCH_CHAT}/presence`, { token: w.a.token }), 404, undefined);
        assertError(await stack.get(`/v1/chats/${w.chat.id}/presence`), 401, 'unauthorized');
        a.close();
    });
});

// ---------------------------------------------------------------------------

describe('WebSocket: a group\'s students, their curator and a parent', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    let g;
    beforeEach(async () => {
        stack = suiteStack();
        if (!g) g = await groupWorld(stack);
    });

    // An org with a group ИС-31, its verified curator, two students and a
    // parent linked to the first; the group chat and the parents chat.
    async function groupWorld(st) {
        const op = await signUp(st, { phone: operatorPhone(st), fullName: 'Оператор Платформы' });
        const adminPhone = newPhone();
        const app = ok(await st.post('/v1/org-applications', {
            org_name: 'Колледж информационных систем', short_name: 'КИС', region: 'Рязанская область',
            admin: { full_name: 'Администратор КИС', phone: adminPhone, email: 'admin@kis.example' },
            order_number: '5-к', order_date: '2026-08-20',
        }), 201, 'apply');
        const org = ok(await st.post(`/v1/org-applications/${app.id}/approve`, undefined, { token: op.token }), 200, 'approve').org_id;
        const admin = await signUp(st, { phone: adminPhone, fullName: 'Администратор КИС' });
        const as = { token: admin.token };
        const group = ok(await st.post(`/v1/orgs/${org}/units`, { kind: 'group', name: 'ИС-31', code: 'ИС-31', year: 3 }, as), 201, 'group');
        const person = async (fullName, role) => {
            const u = await signUp(st, { fullName });
            ok(await st.post(`/v1/orgs/${org}/members/${u.user.id}/roles`, { role }, as), 200, `${role} ${fullName}`);
            return u;
        };
        const curator = await person('Куратор Группы', 'teacher');
        ok(await st.post(`/v1/orgs/${org}/members/${curator.user.id}/verify`, { verified: true }, as), 200, 'verify');
        ok(await st.put(`/v1/orgs/${org}/units/${group.id}/curator`, { user_id: curator.user.id }, as), 200, 'curator');
        const s1 = await person('Студент Первый', 'student');
        const s2 = await person('Студент Второй', 'student');
        for (const s of [s1, s2])
            ok(await st.post(`/v1/orgs/${org}/movements`, { kind: 'enroll', user_id: s.user.id, unit_id: group.id }, as), 201, 'enroll');
        const parent = await person('Родитель Первого', 'parent');
        ok(await st.post(`/v1/orgs/${org}/guardians`, { parent_id: parent.user.id, student_id: s1.user.id }, as), 201, 'link');
        // The automatic chats follow the roster through events: wait for them.
        const chatFor = async (who, audience, members) => waitFor(async () => {
            const list = ok(await st.get('/v1/chats', { token: who.token }), 200, 'chats').items;
            const c = list.find((x) => x.unit_id === group.id && x.audience === audience);
            if (!c) return null;
            const m = ok(await st.get(`/v1/chats/${c.id}/members?limit=200`, { token: who.token }), 200, 'members').items
                .map((x) => x.user.id);
            return members.every((id) => m.includes(id)) ? c : null;
        }, { timeoutMs: 15000 });
        const groupChat = await chatFor(curator, 'students', [curator.user.id, s1.user.id, s2.user.id]);
        assert.ok(groupChat, 'the group chat with the curator and both students');
        const parentsChat = await chatFor(curator, 'parents', [curator.user.id, parent.user.id]);
        assert.ok(parentsChat, 'the parents chat with the curator and the parent');
        return { org, admin, group, curator, s1, s2, parent, groupChat, parentsChat };
    }

    it('the curator posts: both students\' sockets get it, the parent\'s does not; a student replies; an expelled student hears nothing more and reads nothing', async () => {
        const cur = await signedIn(stack, g.curator);
        const s1 = await signedIn(stack, g.s1);
        const s2 = await signedIn(stack, g.s2);
        const par = await signedIn(stack, g.parent);
        const m = await post(stack, g.curator, g.groupChat.id, 'Завтра классный час в 10:00');
        for (const [client, name] of [[s1, 'the first student'], [s2, 'the second student']]) {
            const f = await client.next(isMessage('message.posted', g.groupChat.id, (x) => x.id === m.id), `${name}: the curator's post`);
            assert.equal(f.message.text, 'Завтра классный час в 10:00');
            assert.equal(f.message.author.id, g.curator.user.id);
        }
        const reply = ok(await stack.post(`/v1/chats/${g.groupChat.id}/messages`, { text: 'Хорошо, будем', reply_to: m.id },
            { token: g.s1.token }), 201, 'a student replies');
        const heard = await cur.next(isMessage('message.posted', g.groupChat.id, (x) => x.id === reply.id), 'the curator hears the reply');
        assert.equal(heard.message.reply_to, m.id);
        await par.none((f) => f.message && f.message.chat_id === g.groupChat.id, 'the parent hears nothing of the students\' chat', 300);
        const denied = await stack.get(`/v1/chats/${g.groupChat.id}/messages`, { token: g.parent.token });
        assert.ok([403, 404].includes(denied.status), `the parent reads the students' chat: ${denied.status} ${denied.text}`);
        // The parents chat is theirs.
        const pm = await post(stack, g.curator, g.parentsChat.id, 'Родительское собрание в пятницу');
        await par.next(isMessage('message.posted', g.parentsChat.id, (x) => x.id === pm.id), 'the parent: the parents chat');
        await s1.none(isMessage('message.posted', g.parentsChat.id), 'a student hears nothing of the parents chat', 300);

        // Expelled: out of the chat at once, over HTTP and on the socket.
        ok(await stack.post(`/v1/orgs/${g.org}/movements`, { kind: 'expel', user_id: g.s2.user.id, order_number: '31-у' },
            { token: g.admin.token }), 201, 'expel');
        const read = await stack.get(`/v1/chats/${g.groupChat.id}/messages`, { token: g.s2.token });
        assert.ok([403, 404].includes(read.status), `the expelled student reads the group chat: ${read.status} ${read.text}`);
        await s2.next((f) => f.type === 'chat.member_removed' && f.chat_id === g.groupChat.id && f.user_id === g.s2.user.id,
            'the expelled student\'s socket: removed from the group chat');
        const mark = s2.mark();
        const after = await post(stack, g.curator, g.groupChat.id, 'Расписание на неделю');
        await s1.next(isMessage('message.posted', g.groupChat.id, (x) => x.id === after.id), 'the remaining student still hears');
        await s2.none((f) => f.message && f.message.chat_id === g.groupChat.id, 'the expelled student hears nothing more', 500, mark);
        for (const c of [cur, s1, s2, par]) c.close();
    });
});

// ---------------------------------------------------------------------------

describe('WebSocket: two gateways on one platform (behind a load balancer)', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    let w;
    let g2;     // the stack as seen through a second gateway
    beforeEach(async () => {
        stack = suiteStack();
        if (!w) {
            w = await world(stack);
            g2 = await stack.startGateway();
        }
    });

    it('messages, typing and presence reach members whichever gateway their sockets are on', async () => {
        const a = await signedIn(stack, w.a);
        const c = await signedIn(g2, w.c);
        await sleep(500);   // a's and c's chats are looked up when they connect
        const b = await signedIn(g2, w.b);
        const on = await a.next((x) => x.type === 'presence' && x.user_id === w.b.user.id && x.online === true,
            'b (on the other gateway) online');
        assert.deepEqual(on, { type: 'presence', user_id: w.b.user.id, online: true, last_seen_at: null });

        const m = await post(stack, w.a, w.chat.id, 'Сообщение через первый шлюз');
        await b.next(isMessage('message.posted', w.chat.id, (x) => x.id === m.id), 'the post, on the other gateway');

        a.send({ type: 'typing', chat_id: w.chat.id });
        assert.deepEqual(await b.next((x) => x.type === 'typing', 'a typing, heard on the other gateway'),
            { type: 'typing', chat_id: w.chat.id, user_id: w.a.user.id });
        b.send({ type: 'typing', chat_id: w.chat.id });
        assert.deepEqual(await a.next((x) => x.type === 'typing', 'b typing, heard on the first gateway'),
            { type: 'typing', chat_id: w.chat.id, user_id: w.b.user.id });
        await c.none((x) => x.type === 'typing', 'a non-member of the chat, on the other gateway', 300);

        // b on both gateways: closing the socket on one of them is not
        // going offline; closing the last one is, wherever it was.
        const b1 = await signedIn(stack, w.b);
        b1.close();
        await b1.closed;
        await a.none((x) => x.type === 'presence' && x.user_id === w.b.user.id && x.online === false,
            'b still has a socket on the other gateway', 800);
        const still = ok(await stack.get(`/v1/chats/${w.chat.id}/presence`, { token: w.a.token }), 200, 'presence');
        assert.equal(still.items.find((i) => i.user_id === w.b.user.id).online, true, 'b is online');
        b.close();
        const off = await a.next((x) => x.type === 'presence' && x.user_id === w.b.user.id && x.online === false,
            'b offline, told by the other gateway');
        assert.match(off.last_seen_at, RFC3339);
        const after = ok(await g2.get(`/v1/chats/${w.chat.id}/presence`, { token: w.a.token }), 200, 'presence');
        const bNow = after.items.find((i) => i.user_id === w.b.user.id);
        assert.equal(bNow.online, false);
        assert.match(String(bNow.last_seen_at), RFC3339);
        a.close();
        c.close();
    });

    it('a session ended while its gateway missed the event (stopped, its queue overflowed) still closes its socket: the gateway fetches what it missed', async () => {
        const u = await signUp(g2, { fullName: 'Ирина Пропущенная' });
        const second = ok(await loginByCode(g2, u.phone), 200, 'second session');
        const first = ok(await g2.get('/v1/me/sessions', { token: second.token }), 200, 'sessions').items
            .find((x) => !x.current);
        const flooders = [];
        for (let i = 0; i < 8; i++) flooders.push(await signUp(g2, { fullName: `Участник Нагрузки ${i}` }));
        const sock = await signedIn(stack, u);
        const other = await signedIn(stack, { ...u, token: second.token });
        assert.equal((await stack.get('/v1/me', { token: u.token })).status, 200, 'the token is cached');
        const logBefore = stack.log('gateway').length;
        stack.kill('gateway', 'SIGSTOP');
        try {
            // More identity events than the stopped gateway's queues hold
            // (ZeroMQ's high-water marks on both sides, the socket buffers),
            // then the revocation, which is dropped with the rest.
            const pairs = 2500;
            let next = 0;
            const worker = async (user) => {
                while (next < pairs) {
                    next += 1;
                    ok(await g2.post(`/v1/orgs/${w.org}/members/${user.id}/roles`, { role: 'administration' },
                        { token: w.admin.token }), 200, 'grant');
                    const del = await g2.del(`/v1/orgs/${w.org}/members/${user.id}/roles/administration`,
                        { token: w.admin.token });
                    assert.equal(del.status, 204, `revoke: ${del.status} ${del.text}`);
                }
            };
            await Promise.all(flooders.map((f) => worker(f.user)));
            ok(await g2.del(`/v1/me/sessions/${first.id}`, { token: second.token }), 204, 'end the first session');
        } finally {
            stack.kill('gateway', 'SIGCONT');
        }
        const frame = await sock.next((f) => f.type === 'session.revoked', 'session.revoked, fetched again', 20000);
        assert.equal(frame.type, 'session.revoked');
        assert.equal((await sock.closeCode('the ended session\'s socket')).code, 4003);
        assert.match(stack.log('gateway').slice(logBefore), /identity events were missed, fetching them again/);
        assertError(await stack.get('/v1/me', { token: u.token }), 401, 'unauthorized');
        await other.roundTrip('the other session\'s socket stays');
        other.close();
    });

    it('what is not a gateway\'s message on the gateways\' channel is dropped; both gateways go on', async () => {
        const a = await signedIn(stack, w.a);
        const b = await signedIn(g2, w.b);
        const junk = ['not json', '[]', '{}', JSON.stringify({ from: 'x', type: 'typing', chat_id: w.chat.id }),
            JSON.stringify({ from: 'x', type: 'typing', chat_id: '../../etc', user_id: w.c.user.id }),
            JSON.stringify({ from: 'x', type: 'presence', user_id: w.c.user.id, online: 'yes', chats: w.chat.id }),
            JSON.stringify({ from: 'x', type: 'presence', user_id: w.c.user.id, online: true, chats: [1, null, {}] }),
            JSON.stringify({ from: 'x', type: 'presence', user_id: w.c.user.id, online: false, last_seen_at: -1e18, chats: [w.chat.id] }),
            JSON.stringify({ from: 'x', type: 'presence', user_id: w.c.user.id, online: false, last_seen_at: 1e17, chats: [w.chat.id] }),
            JSON.stringify({ from: 'x', type: 'presence', user_id: w.c.user.id, online: false, chats: [w.chat.id] }),
            JSON.stringify({ from: 'x', type: 'nonsense', user_id: w.c.user.id }), 'x'.repeat(2 * 1024 * 1024)];
        assert.equal(await redisPublish(stack, 'parta:gateways', junk), junk.length);
        await a.roundTrip('the first gateway after the junk');
        await b.roundTrip('the other gateway after the junk');
        await a.none((x) => x.type === 'typing' || (x.type === 'presence' && x.user_id === w.c.user.id), 'frames from junk', 300);
        assert.match(stack.log('gateway'), /dropped a message on parta:gateways that is not a gateway's/);
        a.send({ type: 'typing', chat_id: w.chat.id });
        await b.next((x) => x.type === 'typing' && x.user_id === w.a.user.id, 'typing still crosses');
        // Redis drops the gateways' subscriptions: they subscribe again.
        assert.ok(await redisCommand(stack, ['CLIENT', 'KILL', 'TYPE', 'pubsub']) >= 2, 'both subscriptions dropped');
        const crossed = await waitFor(async () => {
            a.send({ type: 'typing', chat_id: w.chat.id });
            await sleep(1100);
            return b.frames.some((x, i) => !b.taken.has(i) && x.type === 'typing' && x.user_id === w.a.user.id);
        }, { timeoutMs: 20000, intervalMs: 0 });
        assert.ok(crossed, 'typing crosses again after the subscriptions were dropped');
        a.close();
        b.close();
    });

    it('a gateway that stops releases its users: one with no other socket is offline at once, one with a socket elsewhere stays online', async () => {
        // Last in this suite: the second gateway does not come back.
        const b = await signedIn(g2, w.b);
        const c2 = await signedIn(g2, w.c);
        const c1 = await signedIn(stack, w.c);
        // The staff channel has a, b and c.
        const staff = ok(await stack.get('/v1/chats', { token: w.a.token }), 200, 'chats').items.find((x) => x.audience === 'staff');
        assert.ok(staff, 'the staff channel');
        const presence = async () => Object.fromEntries(ok(await stack.get(`/v1/chats/${staff.id}/presence`,
            { token: w.a.token }), 200, 'presence').items.map((i) => [i.user_id, i]));
        assert.equal((await presence())[w.c.user.id].online, true, 'c is online');
        assert.equal((await presence())[w.b.user.id].online, true, 'b is online');
        const stopped = Date.now();
        process.kill(g2.pid, 'SIGTERM');
        assert.ok(await waitFor(() => !alive(g2.pid), { timeoutMs: 15000 }), 'the second gateway stopped');
        await b.closed;
        const after = await presence();
        assert.equal(after[w.b.user.id].online, false, 'b, whose only socket was there, is offline');
        assert.ok(Math.abs(Date.parse(after[w.b.user.id].last_seen_at) - stopped) < 10000, after[w.b.user.id].last_seen_at);
        assert.match(g2.log('gateway-2'), /released this gateway's users from presence users=2/);
        // c has a socket here too: still online, and stays so when the
        // stopped gateway's socket is gone.
        assert.equal(after[w.c.user.id].online, true, 'c is still online');
        await c2.closed;
        await c1.roundTrip('c\'s socket here is untouched');
        c1.close();
    });
});

// One command to the stack's Redis; resolves its integer reply.
async function redisCommand(stack, args) {
    const arg = (x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`;
    const wire = `*${args.length}\r\n${args.map(arg).join('')}`;
    return new Promise((resolve, reject) => {
        const sock = net.connect(stack.env.PARTA_REDIS || `${stack.dataDir}/redis.sock`);
        let text = '';
        const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no answer: ${text}`)); }, 10000);
        sock.on('error', (err) => { clearTimeout(timer); reject(err); });
        sock.on('data', (chunk) => {
            text += chunk.toString('latin1');
            const m = /^:(-?\d+)\r\n/.exec(text);
            if (m || text.startsWith('-')) {
                clearTimeout(timer);
                sock.end();
                if (m) resolve(Number(m[1])); else reject(new Error(text));
            }
        });
        sock.on('connect', () => sock.write(wire));
    });
}

// PUBLISHes each of `messages` on `channel` of the stack's Redis (RESP by
// hand over its unix socket); resolves the number of replies read.
function redisPublish(stack, channel, messages) {
    const arg = (x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`;
    const wire = messages.map((m) => `*3\r\n${arg('PUBLISH')}${arg(channel)}${arg(m)}`).join('');
    return new Promise((resolve, reject) => {
        const sock = net.connect(stack.env.PARTA_REDIS || `${stack.dataDir}/redis.sock`);
        let replies = 0;
        let text = '';
        const timer = setTimeout(() => { sock.destroy(); reject(new Error(`redis answered ${replies} of ${messages.length}: ${text}`)); }, 10000);
        sock.on('error', (err) => { clearTimeout(timer); reject(err); });
        sock.on('data', (chunk) => {
            text += chunk.toString('latin1');
            replies = (text.match(/^:\d+\r$/mg) || []).length;
            if (replies >= messages.length) {
                clearTimeout(timer);
                sock.end();
                resolve(replies);
            }
        });
        sock.on('connect', () => sock.write(wire));
    });
}

// ---------------------------------------------------------------------------

describe('WebSocket: a slow client, and Redis down', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits(), PARTA_WS_QUEUE_FRAMES: '16' } });
    let stack;
    let w;
    beforeEach(async () => {
        stack = suiteStack();
        if (!w) w = await world(stack);
    });

    it('a client that stops reading gets one resync with the last seq it was sent, and what it missed is in the history', async () => {
        const slow = await signedIn(stack, w.a);
        const b = await signedIn(stack, w.b);
        slow.ws._socket.pause();    // stops reading: the kernel buffers fill, then the gateway's queue
        const text = 'Длинное сообщение для медленного клиента. '.repeat(95);    // about 7.5 KB of UTF-8
        let overflowed = false;
        let sent = 0;
        // Four at a time: a burst of events never exceeds the queue of a
        // client that reads (PARTA_WS_QUEUE_FRAMES=16).
        for (let batch = 0; batch < 100 && !overflowed; batch++) {
            const posts = [];
            for (let i = 0; i < 4; i++) posts.push(post(stack, w.b, w.chat.id, `${sent + i} ${text}`));
            await Promise.all(posts);
            sent += 4;
            overflowed = await waitFor(() => stack.log('gateway').includes('resync owed'), { timeoutMs: 100 });
        }
        assert.ok(overflowed, `the gateway never dropped the slow client's queue after ${sent} messages`);
        // b read everything as it came: no resync for a client that keeps up.
        await b.roundTrip();
        assert.ok(!b.frames.some((f) => f.type === 'resync'), 'a client that reads gets no resync');

        slow.ws._socket.resume();
        const resync = await slow.next((f) => f.type === 'resync', 'resync', 20000);
        const index = slow.frames.indexOf(resync);
        const before = slow.frames.slice(0, index).filter(isMessage('message.posted', w.chat.id)).map((f) => f.message.seq);
        assert.ok(Array.isArray(resync.chats), JSON.stringify(resync));
        const mine = resync.chats.find((x) => x.chat_id === w.chat.id);
        assert.ok(before.length > 0 && mine, `resync names the chat: ${JSON.stringify(resync)} after ${before.length} messages`);
        assert.equal(mine.last_seq, Math.max(...before), 'last_seq is the last message the client was sent');
        assert.ok(before.length < sent, `not every message was queued (${before.length} of ${sent})`);
        assert.equal(slow.frames.filter((f) => f.type === 'resync').length, 1, 'one resync');
        // What it missed: the history after last_seq.
        const history = ok(await stack.get(`/v1/chats/${w.chat.id}/messages?after=${mine.last_seq}&limit=200`, { token: w.a.token }), 200, 'history');
        assert.ok(history.items.length > 0 && history.items.every((m) => m.seq > mine.last_seq), 'the history has the rest');
        await slow.roundTrip('the slow client is still connected');
        slow.close();
        b.close();
    });

    it('without Redis, chat still works over the socket and presence reads as unknown (200)', async () => {
        const a = await signedIn(stack, w.a);
        const pid = stack.kill('redis', 'SIGKILL');
        assert.ok(await waitFor(() => !alive(pid), { timeoutMs: 5000 }), 'redis is gone');
        assert.ok(await waitFor(async () => (await stack.get('/readyz')).status === 503, { timeoutMs: 15000 }),
            'the gateway noticed Redis is down');

        const res = await stack.get(`/v1/chats/${w.chat.id}/presence`, { token: w.a.token });
        const body = ok(res, 200, 'presence without Redis');
        assert.ok(body.items.length >= 3, res.text);
        for (const item of body.items)
            assert.deepEqual({ online: item.online, last_seen_at: item.last_seen_at }, { online: null, last_seen_at: null },
                JSON.stringify(item));

        const b = await signedIn(stack, w.b);   // signing in needs no Redis either
        const msg = await post(stack, w.b, w.chat.id, 'Redis лежит, а чат работает');
        await a.next(isMessage('message.posted', w.chat.id, (m) => m.id === msg.id), 'message.posted without Redis');
        b.send({ type: 'typing', chat_id: w.chat.id });
        await a.next((x) => x.type === 'typing' && x.user_id === w.b.user.id, 'typing without Redis');
        a.close();
        b.close();
    });
});

// ---------------------------------------------------------------------------

describe('WebSocket: connections count against the per-address limit', { timeout: 120000 }, () => {
    const suiteStack = stackForSuite({
        env: { PARTA_RATE_LIMITS: limits({ ip: '40/3600' }), PARTA_TRUSTED_PROXIES: '127.0.0.1' },
    });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('an address that opened too many gets rate_limited and 4029, before its token is looked at; others still connect', async () => {
        const u = await signUp(stack, { fullName: 'Много Соединений' });  // on the proxy's own budget
        const via = (ip) => ({ token: u.token, headers: { 'X-Forwarded-For': ip } });
        const open = [];
        let refusedAt = null;
        for (let n = 1; n <= 45 && refusedAt === null; n++) {
            const c = await Client.connect(stack, via('9.9.9.9'));
            const first = await c.next((f) => f.type === 'ready' || f.type === 'error', `socket ${n}: ready or error`);
            if (first.type === 'ready') {
                open.push(c);
                continue;
            }
            refusedAt = n;
            assert.equal(first.code, 'rate_limited', JSON.stringify(first));
            assert.ok(Number.isInteger(first.retry_after) && first.retry_after >= 1, JSON.stringify(first));
            assert.equal((await c.closeCode('refused socket')).code, 4029);
            assert.deepEqual(c.frames.map((f) => f.type), ['error'], 'nothing but the refusal');
        }
        assert.ok(refusedAt !== null && refusedAt >= 30 && refusedAt <= 41, `a budget of 40 for 9.9.9.9: refused at ${refusedAt}`);
        const other = await Client.connect(stack, via('9.9.9.8'));
        await other.next((f) => f.type === 'ready', 'another address');
        await open[0].roundTrip('sockets opened within the budget stay open');
        for (const c of [...open, other]) c.close();
    });
});

// ---------------------------------------------------------------------------

describe('WebSocket: the token is checked again while the socket is open', { timeout: 120000 }, () => {
    const suiteStack = stackForSuite({
        env: { PARTA_RATE_LIMITS: limits(), PARTA_WS_REVALIDATE_S: '1', PARTA_AUTH_CACHE_MS: '0' },
    });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('a session that expires with no event closes its socket with 4001; a live one stays open', async () => {
        const u = await signUp(stack, { fullName: 'Долго Подключённая' });
        const client = await signedIn(stack, u);
        await sleep(3500);      // three checks pass
        await client.roundTrip('still open after the checks');
        assert.equal(client.closedWith, null);
        try {
            stack.setClockOffset(31 * 24 * 3600 * 1000);   // past the 30 days a session may idle
            const err = await client.next((f) => f.type === 'error', 'error after expiry', 5000);
            assert.equal(err.code, 'unauthorized', JSON.stringify(err));
            assert.equal((await client.closeCode('expired session')).code, 4001);
        } finally {
            stack.setClockOffset(0);
        }
    });
});
