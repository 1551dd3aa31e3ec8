'use strict';
// Sign-in and the account as a client sees them (API.md "Auth and account",
// DESIGN.md §5): codes by SMS (read from the outbox), registration,
// sessions and their revocation, the profile, bad input, the one-time-code
// limits, tokens kept out of the logs, and X-Forwarded-For.

const { describe, it, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const {
    stackForSuite, limits, assertError, requestCode, signUp, loginByCode, newPhone, waitFor,
} = require('./lib/stack');

const TOKEN_RE = /^[A-Za-z0-9_-]{43,}$/;   // 256 bits, base64url
const OPERATOR = '+79990000000';            // scripts/run.sh's default PARTA_OPERATORS

function assertAuthReply(res, status, phone) {
    assert.equal(res.status, status, res.text);
    const b = res.json;
    assert.match(String(b.token), TOKEN_RE, `a 256-bit base64url token: ${res.text}`);
    assert.ok(b.user && typeof b.user.id === 'string' && b.user.id.length > 0, res.text);
    if (phone) assert.equal(b.user.phone, phone, res.text);
    assert.equal(typeof b.user.full_name, 'string', res.text);
    assert.equal(typeof b.expires_at, 'string', `expires_at: ${res.text}`);
    assert.match(b.expires_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, `expires_at is RFC 3339 UTC: ${res.text}`);
    assert.ok(Date.parse(b.expires_at) > Date.now(), `expires_at is in the future: ${res.text}`);
}

// Six digits other than `code`.
const otherCode = (code, i = 1) => String((Number(code) + 111111 * i) % 1000000).padStart(6, '0');

describe('sign-in and the account', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('a new user asks for a code, registers, sees themself, logs out and signs in again', async () => {
        const phone = newPhone();
        const otp = await stack.post('/v1/auth/otp', { phone });
        assert.equal(otp.status, 202, otp.text);
        assert.ok(Number.isInteger(otp.json.expires_in) && otp.json.expires_in > 0 && otp.json.expires_in <= 300,
            `expires_in in seconds, at most 5 minutes: ${otp.text}`);
        const code = stack.readOtp(phone);
        assert.match(String(code), /^[0-9]{6}$/, 'a six-digit code in the SMS');

        const reg = await stack.post('/v1/auth/register', { phone, code, full_name: 'Анна Иванова', password: 'correct horse 1' });
        assertAuthReply(reg, 201, phone);
        assert.equal(reg.json.user.full_name, 'Анна Иванова');
        const { token } = reg.json;
        const id = reg.json.user.id;

        const me = await stack.get('/v1/me', { token });
        assert.equal(me.status, 200, me.text);
        assert.deepEqual(me.json.user, { id, phone, full_name: 'Анна Иванова' });
        assert.deepEqual(me.json.memberships, []);
        assert.equal(me.json.operator, false);

        // The same code does not register or sign in a second time.
        assertError(await stack.post('/v1/auth/login', { phone, code }), 401, undefined);

        const out = await stack.post('/v1/auth/logout', undefined, { token });
        assert.equal(out.status, 204, out.text);
        assert.equal(out.text, '');
        assertError(await stack.get('/v1/me', { token }), 401, 'unauthorized', null);
        assertError(await stack.post('/v1/auth/logout', undefined, { token }), 401, 'unauthorized', null);

        const byCode = await loginByCode(stack, phone);
        assertAuthReply(byCode, 200, phone);
        assert.equal(byCode.json.user.id, id, 'the same user');
        assert.notEqual(byCode.json.token, token, 'a new token');
        assert.equal((await stack.get('/v1/me', { token: byCode.json.token })).status, 200);

        const byPassword = await stack.post('/v1/auth/login', { phone, password: 'correct horse 1' });
        assertAuthReply(byPassword, 200, phone);
        assert.equal(byPassword.json.user.id, id);
        assertError(await stack.post('/v1/auth/login', { phone, password: 'correct horse 2' }), 401, undefined);
    });

    it('an unknown phone cannot sign in: 404 user_not_found', async () => {
        const phone = newPhone();
        assertError(await stack.post('/v1/auth/login', { phone, password: 'some password' }), 404, 'user_not_found');
        const code = await requestCode(stack, phone);
        assertError(await stack.post('/v1/auth/login', { phone, code }), 404, 'user_not_found');
    });

    it('the platform operator signs in as operator', async () => {
        const op = await signUp(stack, { phone: OPERATOR, fullName: 'Platform Operator' });
        const me = await stack.get('/v1/me', { token: op.token });
        assert.equal(me.status, 200, me.text);
        assert.equal(me.json.operator, true, me.text);
    });

    it('"8 999 123-45-67" and "+7 (999) 123 45 67" are the same phone', async () => {
        const e164 = newPhone();                 // +7999NNNNNNN
        const d = e164.slice(2);                 // 999NNNNNNN
        const spaced8 = `8 ${d.slice(0, 3)} ${d.slice(3, 6)}-${d.slice(6, 8)}-${d.slice(8)}`;
        const bracketed = `+7 (${d.slice(0, 3)}) ${d.slice(3, 6)} ${d.slice(6, 8)} ${d.slice(8)}`;
        // The code is asked for with one spelling and used with the other.
        const code = await requestCode(stack, bracketed, { expectPhone: e164 });
        const reg = await stack.post('/v1/auth/register', { phone: spaced8, code, full_name: 'Пётр Сидоров' });
        assertAuthReply(reg, 201, e164);
        const code2 = await requestCode(stack, spaced8, { expectPhone: e164 });
        const login = await stack.post('/v1/auth/login', { phone: bracketed, code: code2 });
        assertAuthReply(login, 200, e164);
        assert.equal(login.json.user.id, reg.json.user.id, 'the same user');
        const plain = await stack.post('/v1/auth/login', { phone: `8${d}`, password: 'none set yet' });
        assert.equal(plain.status, 401, `known user, no password: ${plain.text}`);
        // Registering the other spelling again is a conflict, not a second user.
        const code3 = await requestCode(stack, e164);
        assertError(await stack.post('/v1/auth/register', { phone: `+7${d}`, code: code3, full_name: 'Someone Else' }), 409, undefined);
    });

    it('an invalid phone is 400 with field phone, and no SMS is sent', async () => {
        const before = stack.smsMessages().length;
        for (const phone of ['12345', 'abc', '+0 999 123 45 67', '+7 999 123 45 6', '8 999 123 45 67 89',
            '+79991234567x', '+7 999 123\u00a045 67', '', '   ', '+', '8-800', '+7999123456789012345']) {
            const res = await stack.post('/v1/auth/otp', { phone });
            assertError(res, 400, 'bad_request', 'phone', `phone ${JSON.stringify(phone)}`);
        }
        assert.equal(stack.smsMessages().length, before, 'no SMS for an invalid phone');
    });

    it('five wrong codes use the code up; four do not', async () => {
        const phone = newPhone();
        const code = await requestCode(stack, phone);
        for (let i = 1; i <= 5; i++) {
            const res = await stack.post('/v1/auth/register', { phone, code: otherCode(code, i), full_name: 'Wrong Code' });
            assertError(res, 401, undefined, undefined, `wrong code #${i}`);
        }
        const right = await stack.post('/v1/auth/register', { phone, code, full_name: 'Wrong Code' });
        assertError(right, 401, undefined, undefined, 'the right code after five wrong ones');
        assertError(await stack.post('/v1/auth/login', { phone, password: 'anything 123' }), 404, 'user_not_found');

        const phone2 = newPhone();
        const code2 = await requestCode(stack, phone2);
        for (let i = 1; i <= 4; i++)
            assertError(await stack.post('/v1/auth/register', { phone: phone2, code: otherCode(code2, i), full_name: 'Four Wrong' }),
                401, undefined, undefined, `wrong code #${i}`);
        const ok = await stack.post('/v1/auth/register', { phone: phone2, code: code2, full_name: 'Four Wrong' });
        assertAuthReply(ok, 201, phone2);

        // Sign-in counts attempts the same way.
        const code3 = await requestCode(stack, phone2);
        for (let i = 1; i <= 5; i++)
            assertError(await stack.post('/v1/auth/login', { phone: phone2, code: otherCode(code3, i) }), 401, undefined);
        assertError(await stack.post('/v1/auth/login', { phone: phone2, code: code3 }), 401, undefined);
        // A new code works again.
        assertAuthReply(await loginByCode(stack, phone2), 200, phone2);
    });

    it('a code older than 5 minutes is refused; one of 4 minutes is not', async () => {
        const phone = newPhone();
        const code = await requestCode(stack, phone);
        try {
            stack.setClockOffset(6 * 60 * 1000);
            const res = await stack.post('/v1/auth/register', { phone, code, full_name: 'Late Comer' });
            assertError(res, 401, undefined, undefined, 'a code 6 minutes old');
        } finally {
            stack.setClockOffset(0);
        }
        // Expired for good: the clock back does not revive it.
        assertError(await stack.post('/v1/auth/register', { phone, code, full_name: 'Late Comer' }), 401, undefined);

        const phone2 = newPhone();
        const code2 = await requestCode(stack, phone2);
        try {
            stack.setClockOffset(4 * 60 * 1000);
            const res = await stack.post('/v1/auth/register', { phone: phone2, code: code2, full_name: 'In Time' });
            assertAuthReply(res, 201, phone2);
        } finally {
            stack.setClockOffset(0);
        }
    });

    it('sessions are listed with their user agent and address, exactly one current', async () => {
        const first = await signUp(stack, { fullName: 'Many Sessions' });
        const { phone } = first;
        const a = await loginByCode(stack, phone, { headers: { 'User-Agent': 'PartaTest/A (phone)' } });
        assertAuthReply(a, 200, phone);
        const b = await loginByCode(stack, phone, { headers: { 'User-Agent': 'PartaTest/B (laptop)' } });
        assertAuthReply(b, 200, phone);

        const list = await stack.get('/v1/me/sessions', { token: a.json.token });
        assert.equal(list.status, 200, list.text);
        const items = list.json.items;
        assert.ok(Array.isArray(items), list.text);
        assert.equal(items.length, 3, `the registration's session and two sign-ins: ${list.text}`);
        for (const s of items) {
            assert.equal(typeof s.id, 'string', list.text);
            assert.match(String(s.created_at), /^\d{4}-\d\d-\d\dT/, list.text);
            assert.match(String(s.last_seen_at), /^\d{4}-\d\d-\d\dT/, list.text);
            assert.equal(typeof s.current, 'boolean', list.text);
        }
        assert.equal(new Set(items.map((s) => s.id)).size, 3, 'distinct ids');
        assert.equal(items.filter((s) => s.current).length, 1, `exactly one current session: ${list.text}`);
        // The current one, as B sees it, is another.
        const listB = await stack.get('/v1/me/sessions', { token: b.json.token });
        assert.notEqual(listB.json.items.find((s) => s.current).id, items.find((s) => s.current).id, listB.text);

        const agents = items.map((s) => s.user_agent).sort();
        assert.deepEqual(agents.filter((x) => x.startsWith('PartaTest/')), ['PartaTest/A (phone)', 'PartaTest/B (laptop)'],
            `user_agent kept for each sign-in: ${list.text}`);
        const current = items.find((s) => s.current);
        assert.equal(current.user_agent, 'PartaTest/A (phone)', `the current one is A's: ${list.text}`);
        for (const s of items) assert.equal(s.ip, '127.0.0.1', `the client's address on every session: ${list.text}`);
    });

    it('ending another session: 204, and its token is refused on the very next request', async () => {
        const first = await signUp(stack, { fullName: 'Two Devices' });
        const b = await loginByCode(stack, first.phone);
        assertAuthReply(b, 200, first.phone);
        const tb = b.json.token;
        // B's own view names B's session as current.
        const mine = await stack.get('/v1/me/sessions', { token: tb });
        assert.equal(mine.status, 200, mine.text);
        const idB = mine.json.items.find((s) => s.current).id;
        // B's token has just been used (the gateway may cache it) ...
        assert.equal((await stack.get('/v1/me', { token: tb })).status, 200);
        const del = await stack.del(`/v1/me/sessions/${encodeURIComponent(idB)}`, { token: first.token });
        assert.equal(del.status, 204, del.text);
        // ... and stops working on the very next request.
        assertError(await stack.get('/v1/me', { token: tb }), 401, 'unauthorized', null);
        const left = await stack.get('/v1/me/sessions', { token: first.token });
        assert.equal(left.status, 200, left.text);
        assert.equal(left.json.items.length, 1, left.text);
        assert.ok(!left.json.items.some((s) => s.id === idB), left.text);
        assertError(await stack.del(`/v1/me/sessions/${encodeURIComponent(idB)}`, { token: first.token }), 404, undefined,
            undefined, 'ending it twice');

        // Someone else's session cannot be ended.
        const stranger = await signUp(stack, { fullName: 'Stranger' });
        const theirs = await stack.get('/v1/me/sessions', { token: stranger.token });
        const theirId = theirs.json.items[0].id;
        assertError(await stack.del(`/v1/me/sessions/${encodeURIComponent(theirId)}`, { token: first.token }), 404, undefined);
        assert.equal((await stack.get('/v1/me', { token: stranger.token })).status, 200, 'the stranger is still signed in');
        // Ending one's own current session works like logging out.
        const own = await stack.del(`/v1/me/sessions/${encodeURIComponent(left.json.items[0].id)}`, { token: first.token });
        assert.equal(own.status, 204, own.text);
        assertError(await stack.get('/v1/me', { token: first.token }), 401, 'unauthorized', null);
    });

    it('a security report ends every session at once, this one too, and is logged', async () => {
        const first = await signUp(stack, { fullName: 'Hacked Account' });
        const a = await loginByCode(stack, first.phone);
        assertAuthReply(a, 200, first.phone);
        const stranger = await signUp(stack, { fullName: 'Bystander' });
        // Both tokens have just been used (the gateway may cache them).
        assert.equal((await stack.get('/v1/me', { token: first.token })).status, 200);
        assert.equal((await stack.get('/v1/me', { token: a.json.token })).status, 200);
        const report = await stack.post('/v1/me/security/report', { comment: 'I did not sign in from there' }, { token: a.json.token });
        assert.equal(report.status, 202, report.text);
        assertError(await stack.get('/v1/me', { token: a.json.token }), 401, 'unauthorized', null, 'the reporting session');
        assertError(await stack.get('/v1/me', { token: first.token }), 401, 'unauthorized', null, 'the other session');
        assertError(await stack.get('/v1/me/sessions', { token: a.json.token }), 401, 'unauthorized', null);
        // Recorded where an operator sees it.
        const line = await waitFor(() => stack.log('identity').split('\n')
            .find((l) => l.includes(`unauthorized access reported user=${first.user.id}`)), { timeoutMs: 5000 });
        assert.ok(line, `identity logs the report for user ${first.user.id}\n${stack.logTails(10, ['identity'])}`);
        // Another user is untouched, and the user can sign in again.
        assert.equal((await stack.get('/v1/me', { token: stranger.token })).status, 200);
        const again = await loginByCode(stack, first.phone);
        assertAuthReply(again, 200, first.phone);
        const sessions = await stack.get('/v1/me/sessions', { token: again.json.token });
        assert.equal(sessions.json.items.length, 1, `only the new session: ${sessions.text}`);
    });

    it('PATCH /v1/me changes the name and sets the password', async () => {
        const u = await signUp(stack, { fullName: 'Old Name' });
        const res = await stack.patch('/v1/me', { full_name: '  New Name  ' }, { token: u.token });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.json.user.full_name, 'New Name', 'trimmed');
        assert.equal(res.json.user.id, u.user.id);
        const me = await stack.get('/v1/me', { token: u.token });
        assert.equal(me.json.user.full_name, 'New Name');

        const long = 'Я'.repeat(200);
        const ok200 = await stack.patch('/v1/me', { full_name: long }, { token: u.token });
        assert.equal(ok200.status, 200, 'a name of 200 characters is allowed');
        assert.equal(ok200.json.user.full_name, long);
        assertError(await stack.patch('/v1/me', { full_name: long + 'Я' }, { token: u.token }), 400, 'bad_request', 'full_name');

        assertError(await stack.post('/v1/auth/login', { phone: u.phone, password: 'a good password' }), 401, undefined,
            undefined, 'no password yet');
        // The first password needs a fresh code: a stolen session alone cannot set one.
        assertError(await stack.patch('/v1/me', { password: 'a good password' }, { token: u.token }), 400, 'bad_request', 'code');
        let code = await requestCode(stack, u.phone);
        assertError(await stack.patch('/v1/me', { password: 'a good password', code: otherCode(code) }, { token: u.token }),
            403, undefined, 'code', 'a wrong code');
        // Wrong codes here count toward the code's five tries like anywhere else.
        for (let i = 2; i <= 5; i++) {
            assertError(await stack.patch('/v1/me', { password: 'a good password', code: otherCode(code, i) },
                { token: u.token }), 403, undefined, 'code', `wrong code #${i}`);
        }
        assertError(await stack.patch('/v1/me', { password: 'a good password', code }, { token: u.token }),
            403, undefined, 'code', 'the right code after five wrong ones');
        code = await requestCode(stack, u.phone);
        // A refused password spends no code.
        assertError(await stack.patch('/v1/me', { password: 'short', code }, { token: u.token }), 400, 'bad_request', 'password');
        const pw = await stack.patch('/v1/me', { password: 'a good password', code }, { token: u.token });
        assert.equal(pw.status, 200, pw.text);
        assert.ok(!('password' in pw.json.user) && !pw.text.includes('a good password'), `the password is not echoed: ${pw.text}`);
        assertAuthReply(await stack.post('/v1/auth/login', { phone: u.phone, password: 'a good password' }), 200, u.phone);

        // Changing it needs the current one.
        assertError(await stack.patch('/v1/me', { password: 'another good one' }, { token: u.token }), 400, 'bad_request',
            'current_password');
        assertError(await stack.patch('/v1/me', { password: 'another good one', current_password: 'not the one' },
            { token: u.token }), 403, undefined, 'current_password');
        assertError(await stack.patch('/v1/me', { password: 'short', current_password: 'a good password' }, { token: u.token }),
            400, 'bad_request', 'password');
        // The refused passwords changed nothing.
        assertAuthReply(await stack.post('/v1/auth/login', { phone: u.phone, password: 'a good password' }), 200, u.phone);
        assertError(await stack.post('/v1/auth/login', { phone: u.phone, password: 'short' }), 401, undefined);
        assertError(await stack.post('/v1/auth/login', { phone: u.phone, password: 'another good one' }), 401, undefined);

        const elsewhere = await stack.post('/v1/auth/login', { phone: u.phone, password: 'a good password' });
        assert.equal(elsewhere.status, 200, elsewhere.text);
        const pw2 = await stack.patch('/v1/me', { password: 'another good one', current_password: 'a good password' },
            { token: u.token });
        assert.equal(pw2.status, 200, pw2.text);
        assertError(await stack.post('/v1/auth/login', { phone: u.phone, password: 'a good password' }), 401, undefined);
        assertAuthReply(await stack.post('/v1/auth/login', { phone: u.phone, password: 'another good one' }), 200, u.phone);
        // A new password ends every other session; the one that changed it stays.
        assertError(await stack.get('/v1/me', { token: elsewhere.json.token }), 401, 'unauthorized', null, 'other session ended');
        assert.equal((await stack.get('/v1/me', { token: u.token })).json.user.full_name, long, 'the name is kept');
    });

    it('bad input on every auth endpoint: 400 with the field, and nothing stored', async () => {
        const big = 'x'.repeat(10 * 1024);
        const bigName = 'Иван '.repeat(2048);
        const nobody = newPhone();

        // POST /v1/auth/otp
        assertError(await stack.request('POST', '/v1/auth/otp'), 400, 'bad_request', 'phone', 'otp, no body');
        assertError(await stack.post('/v1/auth/otp', ''), 400, 'bad_request', 'phone', 'otp, empty body');
        assertError(await stack.post('/v1/auth/otp', {}), 400, 'bad_request', 'phone', 'otp {}');
        assertError(await stack.post('/v1/auth/otp', { phone: null }), 400, 'bad_request', 'phone', 'otp phone null');
        assertError(await stack.post('/v1/auth/otp', { phone: 79991234567 }), 400, 'bad_request', 'phone');
        assertError(await stack.post('/v1/auth/otp', { phone: big }), 400, 'bad_request', 'phone');
        assertError(await stack.post('/v1/auth/otp', { phone: nobody, extra: 1 }), 400, 'bad_request', 'extra');

        // POST /v1/auth/register
        const reg = (body, field, what) => stack.post('/v1/auth/register', body)
            .then((res) => assertError(res, 400, 'bad_request', field, `register ${what}`));
        await reg({}, ['phone', 'code', 'full_name'], '{}');
        await reg('', ['phone', 'code', 'full_name'], 'empty body');
        await reg({ code: '123456', full_name: 'No Phone' }, 'phone', 'without phone');
        await reg({ phone: nobody, full_name: 'No Code' }, 'code', 'without code');
        await reg({ phone: nobody, code: '123456' }, 'full_name', 'without full_name');
        await reg({ phone: 'not a phone', code: '123456', full_name: 'Bad Phone' }, 'phone', 'bad phone');
        await reg({ phone: big, code: '123456', full_name: 'Big Phone' }, 'phone', '10 KB phone');
        await reg({ phone: nobody, code: 123456, full_name: 'Number Code' }, 'code', 'code as a number');
        await reg({ phone: nobody, code: '123456', full_name: 42 }, 'full_name', 'name as a number');
        await reg({ phone: nobody, code: '123456', full_name: bigName }, 'full_name', '10 KB name');
        await reg({ phone: nobody, code: '123456', full_name: '    ' }, 'full_name', 'blank name');
        await reg({ phone: nobody, code: '123456', full_name: 'Line\nBreak' }, 'full_name', 'a name with a line break');
        await reg({ phone: nobody, code: '123456', full_name: 'Short Password', password: 'short' }, 'password', 'short password');
        await reg({ phone: nobody, code: '123456', full_name: 'Number Password', password: 12345678 }, 'password', 'password as a number');
        // With a real code, a refused name stores nobody.
        const code = await requestCode(stack, nobody);
        await reg({ phone: nobody, code, full_name: bigName }, 'full_name', '10 KB name with the right code');
        await reg({ phone: nobody, code, full_name: 'Real Code', password: 'short' }, 'password', 'short password with the right code');
        assertError(await stack.post('/v1/auth/login', { phone: nobody, password: 'whatever 123' }), 404, 'user_not_found',
            undefined, 'nobody was stored');

        // POST /v1/auth/login
        const known = await signUp(stack, { fullName: 'Known User', password: 'known password' });
        const login = (body, field, what) => stack.post('/v1/auth/login', body)
            .then((res) => assertError(res, 400, 'bad_request', field, `login ${what}`));
        await login({}, 'phone', '{}');
        await login('', 'phone', 'empty body');
        await login({ password: 'known password' }, 'phone', 'without phone');
        await login({ phone: big, password: 'known password' }, 'phone', '10 KB phone');
        await login({ phone: 'abc', code: '123456' }, 'phone', 'bad phone');
        await login({ phone: known.phone }, ['code', 'password'], 'neither code nor password');
        await login({ phone: known.phone, code: 'abcdef' }, 'code', 'letters for a code');
        await login({ phone: known.phone, code: '12345' }, 'code', 'five digits');
        await login({ phone: known.phone, code: big }, 'code', '10 KB code');
        await login({ phone: known.phone, code: 123456 }, 'code', 'code as a number');
        await login({ phone: known.phone, password: 12345678 }, 'password', 'password as a number');
        await login({ phone: known.phone, code: '123456', password: 'known password' }, ['code', 'password'], 'both');
        assertAuthReply(await stack.post('/v1/auth/login', { phone: known.phone, password: 'known password' }), 200, known.phone);

        // The account endpoints
        const t = known.token;
        assertError(await stack.get('/v1/me'), 401, 'unauthorized', null, 'no token');
        assertError(await stack.get('/v1/me', { headers: { Authorization: 'Bearer not-a-token' } }), 401, 'unauthorized', null);
        assertError(await stack.get('/v1/me', { headers: { Authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } }), 401, 'unauthorized', null);
        assertError(await stack.get('/v1/me', { headers: { Authorization: `Bearer ${'x'.repeat(2048)}` } }), 401, 'unauthorized', null);
        const patch = (body, field, what) => stack.patch('/v1/me', body, { token: t })
            .then((res) => assertError(res, 400, 'bad_request', field, `PATCH /v1/me ${what}`));
        await patch({ full_name: 5 }, 'full_name', 'name as a number');
        await patch({ full_name: '' }, 'full_name', 'empty name');
        await patch({ full_name: bigName }, 'full_name', '10 KB name');
        // Lengths are in characters: 200 four-byte characters and one more
        // is too long, not a name cut to 200.
        await patch({ full_name: '\u{1F600}'.repeat(200) + 'a' }, 'full_name', '201 characters, 200 of them four bytes');
        await patch({ password: 'short' }, 'password', 'short password');
        await patch({ password: 12345678 }, 'password', 'password as a number');
        await patch({ password: big + big }, 'password', '20 KB password');
        await patch({ nickname: 'x' }, 'nickname', 'unknown field');
        await patch('[]', '', 'an array');
        const me = await stack.get('/v1/me', { token: t });
        assert.equal(me.json.user.full_name, 'Known User', 'nothing changed');
        assertAuthReply(await stack.post('/v1/auth/login', { phone: known.phone, password: 'known password' }), 200, known.phone);

        assertError(await stack.post('/v1/auth/logout', { everything: true }, { token: t }), 400, 'bad_request', 'everything');
        assertError(await stack.post('/v1/me/security/report', { comment: 5 }, { token: t }), 400, 'bad_request', 'comment');
        assertError(await stack.post('/v1/me/security/report', { comment: big }, { token: t }), 400, 'bad_request', 'comment');
        assertError(await stack.post('/v1/me/security/report', { comment: '\u{1F600}'.repeat(2000) + 'a' }, { token: t }), 400,
            'bad_request', 'comment', 'a comment of 2001 characters, 2000 of them four bytes');
        assertError(await stack.post('/v1/me/security/report', { reason: 'x' }, { token: t }), 400, 'bad_request', 'reason');
        assertError(await stack.del('/v1/me/sessions/no-such-session', { token: t }), 404, undefined);
        assertError(await stack.del(`/v1/me/sessions/${'A'.repeat(26)}`, { token: t }), 404, undefined);
        // None of that ended the session.
        assert.equal((await stack.get('/v1/me', { token: t })).status, 200, 'the token still works');
        const sessions = await stack.get('/v1/me/sessions', { token: t });
        assert.equal(sessions.json.items.length, 3, `the registration's session and two sign-ins by password: ${sessions.text}`);
    });

    it('tokens never appear in the logs', async () => {
        // One more of each kind of request that carries a token.
        const u = await signUp(stack, { fullName: 'Log Reader' });
        await stack.get('/v1/me', { token: u.token });
        await stack.get('/v1/me/sessions', { token: u.token });
        await stack.post('/v1/auth/logout', undefined, { token: u.token });
        await stack.get('/v1/me', { token: u.token });
        const tokens = [...stack.tokens];
        assert.ok(tokens.length >= 10, `the tests above handed out tokens: ${tokens.length}`);
        const dir = path.join(stack.dataDir, 'log');
        const files = fs.readdirSync(dir);
        assert.ok(files.includes('gateway.log') && files.includes('identity.log'), files.join(', '));
        const found = [];
        for (const f of files) {
            const text = fs.readFileSync(path.join(dir, f), 'latin1');
            for (const t of tokens) {
                if (text.includes(t)) found.push(`${f} has a token`);
                else if (text.includes(t.slice(0, 16))) found.push(`${f} has the start of a token`);
            }
        }
        assert.deepEqual(found, []);
    });
});

describe('the one-time-code limits (defaults)', { timeout: 120000 }, () => {
    const suiteStack = stackForSuite();
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('a second code for a phone within a minute is 429 with Retry-After, and sends nothing', async () => {
        const phone = newPhone();
        const code = await requestCode(stack, phone);
        const again = await stack.post('/v1/auth/otp', { phone });
        assertError(again, 429, 'rate_limited', null);
        const retry = again.headers.get('retry-after');
        assert.match(String(retry), /^[0-9]+$/, `Retry-After: ${retry}`);
        assert.ok(Number(retry) >= 1 && Number(retry) <= 60, `Retry-After within the minute: ${retry}`);
        // The same phone spelt otherwise shares the budget.
        const d = phone.slice(2);
        assertError(await stack.post('/v1/auth/otp', { phone: `8 (${d.slice(0, 3)}) ${d.slice(3)}` }), 429, 'rate_limited', null);
        assert.equal(stack.smsMessages().filter((m) => m.to === phone).length, 1, 'one SMS only');
        // The first code still works; another phone is not limited.
        const reg = await stack.post('/v1/auth/register', { phone, code, full_name: 'Patient User' });
        assertAuthReply(reg, 201, phone);
        await requestCode(stack, newPhone());
    });
});

describe('the one-time-code limits (five an hour)', { timeout: 120000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits({ otp_phone: '5/3600' }) } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('the sixth code request for one phone within the hour is 429 with Retry-After', async () => {
        const phone = newPhone();
        for (let i = 1; i <= 5; i++) {
            const res = await stack.post('/v1/auth/otp', { phone });
            assert.equal(res.status, 202, `request #${i}: ${res.text}`);
        }
        const sixth = await stack.post('/v1/auth/otp', { phone });
        assertError(sixth, 429, 'rate_limited', null, 'the sixth request');
        const retry = Number(sixth.headers.get('retry-after'));
        assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 3600, `Retry-After: ${sixth.headers.get('retry-after')}`);
        assert.equal(stack.smsMessages().filter((m) => m.to === phone).length, 5, 'five SMS');
        // The last code sent is the one that works.
        const reg = await stack.post('/v1/auth/register', { phone, code: stack.readOtp(phone), full_name: 'Fifth Code' });
        assertAuthReply(reg, 201, phone);
    });
});

describe('the sign-in check limits (defaults: 10 an hour per phone, 50 per address)', { timeout: 120000 }, () => {
    const suiteStack = stackForSuite();
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('the eleventh check for a phone is 429; the fifty-first from one address is 429 whatever the phone', async () => {
        // Nobody has these phones: each check is answered 404 by identity,
        // and each counts, as a guess at a password would.
        const phone = newPhone();
        for (let i = 1; i <= 10; i++) {
            const res = await stack.post('/v1/auth/login', { phone, password: 'not the password' });
            assertError(res, 404, 'user_not_found', 'phone', `check #${i} for one phone`);
        }
        const eleventh = await stack.post('/v1/auth/login', { phone, code: '123456' });
        assertError(eleventh, 429, 'rate_limited', null, 'the eleventh check for one phone, by code');
        assert.match(String(eleventh.headers.get('retry-after')), /^[0-9]+$/);
        // The address has spent 10 of its 50 (a refused check spends nothing).
        for (let i = 11; i <= 50; i++) {
            const res = await stack.post('/v1/auth/login', { phone: newPhone(), password: 'not the password' });
            assertError(res, 404, 'user_not_found', 'phone', `check #${i} from this address`);
        }
        const over = await stack.post('/v1/auth/login', { phone: newPhone(), password: 'not the password' });
        assertError(over, 429, 'rate_limited', null, 'the fifty-first check from one address');
    });
});

// Sends GET /healthz with `xff` until a 429 or `max` requests; returns the
// number sent when the 429 came, or null.
async function exhaust(stack, xff, max) {
    for (let i = 1; i <= max; i++) {
        const res = await stack.get('/healthz', { headers: xff ? { 'X-Forwarded-For': xff } : {} });
        if (res.status === 429) return i;
        assert.equal(res.status, 200, res.text);
    }
    return null;
}

describe('X-Forwarded-For from a client that is not a trusted proxy', { timeout: 120000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits({ ip: '40/3600' }) } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('is ignored for the session\'s address: it is the peer\'s', async () => {
        const u = await signUp(stack, { fullName: 'Behind Nothing', headers: { 'X-Forwarded-For': '10.0.0.7' } });
        const list = await stack.get('/v1/me/sessions', { token: u.token, headers: { 'X-Forwarded-For': '10.0.0.7' } });
        assert.equal(list.status, 200, list.text);
        assert.equal(list.json.items[0].ip, '127.0.0.1', `the session's address is the peer's: ${list.text}`);
    });

    it('is ignored for the limits: every XFF shares the peer\'s budget', async () => {
        // Alternating addresses would each have a budget of 40 if believed.
        let n = 0;
        let limitedAt = null;
        for (; n < 90 && !limitedAt; n++) {
            const xff = n % 2 ? '1.1.1.1' : '2.2.2.2';
            const res = await stack.get('/healthz', { headers: { 'X-Forwarded-For': xff } });
            if (res.status === 429) limitedAt = n + 1;
            else assert.equal(res.status, 200, res.text);
        }
        assert.ok(limitedAt !== null && limitedAt <= 40, `one budget of 40 for the peer: 429 came at ${limitedAt}`);
        for (const xff of ['3.3.3.3', '1.1.1.1, 4.4.4.4', undefined]) {
            const res = await stack.get('/healthz', { headers: xff ? { 'X-Forwarded-For': xff } : {} });
            assertError(res, 429, 'rate_limited', null, `XFF ${xff}`);
        }
    });
});

describe('X-Forwarded-For from a trusted proxy', { timeout: 120000 }, () => {
    const suiteStack = stackForSuite({
        env: { PARTA_RATE_LIMITS: limits({ ip: '40/3600' }), PARTA_TRUSTED_PROXIES: '127.0.0.1' },
    });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('is believed for the session\'s address', async () => {
        const u = await signUp(stack, { fullName: 'Behind A Proxy', headers: { 'X-Forwarded-For': '10.0.0.7' } });
        const list = await stack.get('/v1/me/sessions', { token: u.token, headers: { 'X-Forwarded-For': '10.0.0.7' } });
        assert.equal(list.status, 200, list.text);
        assert.equal(list.json.items[0].ip, '10.0.0.7', `the session's address is the forwarded one: ${list.text}`);
    });

    it('is believed for the limits, its last hop: budgets are per forwarded address', async () => {
        const at = await exhaust(stack, '1.2.3.4', 60);
        assert.ok(at !== null && at >= 30 && at <= 41, `1.2.3.4 has a budget of 40 of its own: 429 came at ${at}`);
        assertError(await stack.get('/healthz', { headers: { 'X-Forwarded-For': '1.2.3.4' } }), 429, 'rate_limited', null);
        // Another address still gets through ...
        assert.equal((await stack.get('/healthz', { headers: { 'X-Forwarded-For': '5.6.7.8' } })).status, 200);
        // ... the last hop is the one that counts: a client cannot escape by
        // prepending an address, nor be blamed for one before it.
        assertError(await stack.get('/healthz', { headers: { 'X-Forwarded-For': '5.6.7.8, 1.2.3.4' } }), 429, 'rate_limited', null);
        assert.equal((await stack.get('/healthz', { headers: { 'X-Forwarded-For': '1.2.3.4, 5.6.7.8' } })).status, 200);
        // The proxy's own requests (no XFF) have their own budget.
        assert.equal((await stack.get('/healthz')).status, 200);
    });
});
