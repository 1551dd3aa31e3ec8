'use strict';
// Invitation links and join requests as a client sees them (API.md
// "Invitations and join requests", policy 3А, 3В-3Е): the admin invites a
// teacher, the teacher joins unverified and, once verified and made a
// curator, invites students and parents; the admin annuls unclaimed links.
// Every way a link can be gone (410), accepting twice, twenty people racing
// for the last use, who may invite, what the public preview shows, that
// listings never show tokens, guessing protection, other orgs' ids, and join
// requests with their approval and rejection.

const { describe, it, before, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const {
    stackForSuite, limits, assertError, expectStatus, signUp, newPhone, waitFor,
} = require('./lib/stack');

const NO_SUCH_ID = '01J0000000000000000000ZZZZ';
const TOKEN_RE = /^[A-Za-z0-9_-]{43,}$/;    // at least 256 bits, base64url
const HOUR = 3600 * 1000;

// A token of the right shape nobody was given.
const unknownToken = () => crypto.randomBytes(32).toString('base64url');

// The platform operator of a stack, registered the first time.
const operators = new WeakMap();
async function operator(stack) {
    if (!operators.has(stack))
        operators.set(stack, await signUp(stack, { phone: stack.operatorPhone(), fullName: 'Оператор Платформы' }));
    return operators.get(stack);
}

// An approved org with its admin signed up: {id, name, admin, staffId, staffName}.
async function newOrg(stack, orgName, shortName) {
    const op = await operator(stack);
    const adminPhone = newPhone();
    const app = expectStatus(await stack.post('/v1/org-applications', {
        org_name: orgName, short_name: shortName, region: 'Рязанская область',
        admin: { full_name: `Администратор ${shortName}`, phone: adminPhone, email: 'admin@college.example' },
        order_number: '7-к', order_date: '2026-08-20',
    }), 201, `apply ${orgName}`);
    const approved = expectStatus(await stack.post(`/v1/org-applications/${app.id}/approve`, undefined, { token: op.token }), 200);
    const admin = await signUp(stack, { phone: adminPhone, fullName: `Администратор ${shortName}` });
    const staff = expectStatus(await stack.get(`/v1/orgs/${approved.org_id}/units?kind=staff`, { token: admin.token }), 200).items[0];
    return { id: approved.org_id, name: orgName, admin, staffId: staff.id, staffName: staff.name };
}

async function newUnit(stack, org, body) {
    return expectStatus(await stack.post(`/v1/orgs/${org.id}/units`, body, { token: org.admin.token }), 201, `unit ${body.name}`);
}

async function member(stack, org, role, fullName) {
    const u = await signUp(stack, { fullName });
    expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${u.user.id}/roles`, { role }, { token: org.admin.token }), 200,
        `grant ${role} to ${fullName}`);
    return u;
}

async function teacher(stack, org, fullName, { verified, curatorOf } = {}) {
    const t = await member(stack, org, 'teacher', fullName);
    if (verified)
        expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${t.user.id}/verify`, { verified: true }, { token: org.admin.token }), 200);
    if (curatorOf)
        expectStatus(await stack.put(`/v1/orgs/${org.id}/units/${curatorOf.id}/curator`, { user_id: t.user.id }, { token: org.admin.token }), 200);
    return t;
}

async function student(stack, org, group, fullName) {
    const s = await member(stack, org, 'student', fullName);
    expectStatus(await stack.post(`/v1/orgs/${org.id}/movements`, { kind: 'enroll', user_id: s.user.id, unit_id: group.id },
        { token: org.admin.token }), 201);
    return s;
}

async function invite(stack, org, who, body) {
    return expectStatus(await stack.post(`/v1/orgs/${org.id}/invitations`, body, { token: who.token }), 201,
        `invitation ${JSON.stringify(body)}`);
}

const accept = (stack, token, who) => stack.post(`/v1/invitations/${token}/accept`, undefined, { token: who.token });
const preview = (stack, token, opts) => stack.get(`/v1/invitations/${token}`, opts);

async function me(stack, who) {
    return expectStatus(await stack.get('/v1/me', { token: who.token }), 200, 'GET /v1/me');
}

const membershipIn = (meBody, orgId) => meBody.memberships.find((m) => m.org_id === orgId);

// Every invitation of an org as its admin lists them, by id.
async function invitations(stack, org, query = '') {
    const res = expectStatus(await stack.get(`/v1/orgs/${org.id}/invitations?limit=200${query}`, { token: org.admin.token }), 200);
    return Object.fromEntries(res.items.map((i) => [i.id, i]));
}

async function unitMembers(stack, org, unit) {
    return expectStatus(await stack.get(`/v1/orgs/${org.id}/units/${unit.id}/members?limit=200`, { token: org.admin.token }), 200)
        .items.map((m) => m.user.id).sort();
}

describe('invitations and join requests', { timeout: 900000 }, () => {
    // Guessing protection has its own stack below; here it is out of the way.
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits(), PARTA_INVITE_GUESSES: '100000/3600' } });
    let stack;
    let w;
    before(async () => {
        try {
            const s = suiteStack();
            const a = await newOrg(s, 'Рыбновский технологический колледж', 'РТК');
            const d1 = await newUnit(s, a, { kind: 'department', name: 'Технологическое отделение' });
            const g1 = await newUnit(s, a, { kind: 'group', name: 'ТП-21', code: 'ТП-21', year: 2, parent_id: d1.id });
            const g2 = await newUnit(s, a, { kind: 'group', name: 'ТП-22', code: 'ТП-22', year: 2, parent_id: d1.id });
            const g3 = await newUnit(s, a, { kind: 'group', name: 'ТП-11', code: 'ТП-11', year: 1, parent_id: d1.id });
            const t1 = await teacher(s, a, 'Куратор ТП-21', { verified: true, curatorOf: g1 });
            const t2 = await teacher(s, a, 'Куратор ТП-22', { verified: true, curatorOf: g2 });
            const t3 = await teacher(s, a, 'Непроверенный Куратор ТП-11', { verified: false, curatorOf: g3 });
            const adm = await member(s, a, 'administration', 'Заместитель Директора');
            const s1 = await student(s, a, g1, 'Студент ТП-21');
            const s2 = await student(s, a, g2, 'Студент ТП-22');
            const p1 = await member(s, a, 'parent', 'Родитель Студента');
            const outsider = await signUp(s, { fullName: 'Посторонний' });
            const b = await newOrg(s, 'Спасский педагогический колледж', 'СПК');
            const gb = await newUnit(s, b, { kind: 'group', name: 'ПД-31', code: 'ПД-31', year: 3 });
            w = { a, d1, g1, g2, g3, t1, t2, t3, adm, s1, s2, p1, outsider, b, gb };
        } catch (err) {
            w = { error: err };
        }
    });
    beforeEach(() => {
        stack = suiteStack();
        if (w.error) throw new Error(`the organisations could not be built: ${w.error.stack}`);
    });
    const forbid = (res, what) => assertError(res, 403, 'forbidden', undefined, what);
    const gone = (res, code, what) => assertError(res, 410, code, undefined, what);

    it('as the policy runs: teacher invited and verified, curator invites students and parents, unclaimed links annulled', async () => {
        const org = await newOrg(stack, 'Михайловский аграрный колледж', 'МАК');
        const admin = org.admin;
        const group = await newUnit(stack, org, { kind: 'group', name: 'Группа АГ-21', code: 'АГ-21', year: 2 });

        // The admin invites a teacher into the staff group.
        const tInv = await invite(stack, org, admin, { role: 'teacher', unit_id: org.staffId, note: 'Для преподавателя химии' });
        assert.match(String(tInv.token), TOKEN_RE, JSON.stringify(tInv));
        assert.equal(tInv.url, `${stack.url}/join/${tInv.token}`, 'the link is the gateway\'s address with the token');
        assert.equal(tInv.role, 'teacher');
        assert.equal(tInv.unit_id, org.staffId);
        assert.equal(tInv.chat_id, null);
        assert.equal(tInv.max_uses, 1, 'one use by default');
        assert.equal(tInv.uses, 0);
        assert.equal(tInv.status, 'active');
        const week = Date.parse(tInv.expires_at) - Date.now();
        assert.ok(week > 167 * HOUR && week <= 169 * HOUR, `expires in 7 days by default: ${tInv.expires_at}`);

        const pv = expectStatus(await preview(stack, tInv.token), 200, 'the public preview');
        assert.deepEqual(pv, {
            org: { id: org.id, name: org.name }, role: 'teacher', unit: { id: org.staffId, name: org.staffName },
            chat: null, status: 'active', expires_at: tInv.expires_at,
        });

        // The teacher signs up and accepts: an unverified teacher in the staff group.
        const tch = await signUp(stack, { fullName: 'Мария Ивановна Химикова' });
        const acc = expectStatus(await accept(stack, tInv.token, tch), 200, 'the teacher accepts');
        assert.deepEqual(acc, { org_id: org.id, role: 'teacher', unit_id: org.staffId, chat_id: null });
        const tMe = membershipIn(await me(stack, tch), org.id);
        assert.ok(tMe, 'the teacher is a member');
        assert.deepEqual(tMe.roles, ['teacher']);
        assert.equal(tMe.verified, false, 'a teacher joining by invitation starts unverified');
        assert.deepEqual(tMe.units.map((u) => [u.id, u.kind]), [[org.staffId, 'staff']]);
        const listed = expectStatus(await stack.get(`/v1/orgs/${org.id}/members?role=teacher`, { token: admin.token }), 200);
        assert.deepEqual(listed.items.map((m) => [m.user.id, m.verified, m.units.map((u) => u.id)]), [[tch.user.id, false, [org.staffId]]]);
        assert.deepEqual(await unitMembers(stack, org, { id: org.staffId }), [tch.user.id]);
        assert.equal((await invitations(stack, org))[tInv.id].status, 'used', 'the one-use link is used');

        // Made curator while unverified, they cannot invite yet.
        expectStatus(await stack.put(`/v1/orgs/${org.id}/units/${group.id}/curator`, { user_id: tch.user.id }, { token: admin.token }), 200);
        forbid(await stack.post(`/v1/orgs/${org.id}/invitations`, { role: 'student', unit_id: group.id, max_uses: 30 }, { token: tch.token }),
            'an unverified curator invites');
        // The admin verifies them.
        const v = expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${tch.user.id}/verify`, { verified: true }, { token: admin.token }), 200);
        assert.equal(v.verified, true);
        assert.equal(membershipIn(await me(stack, tch), org.id).verified, true);

        // The curator invites the group's students with a 30-use link.
        const sInv = await invite(stack, org, tch, { role: 'student', unit_id: group.id, max_uses: 30 });
        assert.equal(sInv.max_uses, 30);
        assert.equal(sInv.role, 'student');
        const students = [];
        for (const name of ['Алексей Первокурсников', 'Богдана Второва', 'Виктор Третьяков']) {
            const s = await signUp(stack, { fullName: name });
            const r = expectStatus(await accept(stack, sInv.token, s), 200, `${name} accepts`);
            assert.deepEqual(r, { org_id: org.id, role: 'student', unit_id: group.id, chat_id: null });
            const m = membershipIn(await me(stack, s), org.id);
            assert.deepEqual(m.roles, ['student']);
            assert.deepEqual(m.units.map((u) => u.id), [group.id]);
            students.push(s);
        }
        assert.deepEqual(await unitMembers(stack, org, group), students.map((s) => s.user.id).sort(), 'the group\'s members');
        const mine = expectStatus(await stack.get(`/v1/orgs/${org.id}/invitations`, { token: tch.token }), 200);
        const sRow = mine.items.find((i) => i.id === sInv.id);
        assert.equal(sRow.uses, 3);
        assert.equal(sRow.status, 'active');

        // A parent link naming a student.
        const pInv = await invite(stack, org, tch, { role: 'parent', unit_id: group.id, student_id: students[0].user.id });
        assert.equal(pInv.student_id, students[0].user.id);
        const parent = await signUp(stack, { fullName: 'Ольга Первокурсникова' });
        const pr = expectStatus(await accept(stack, pInv.token, parent), 200, 'the parent accepts');
        assert.equal(pr.role, 'parent');
        const pMe = membershipIn(await me(stack, parent), org.id);
        assert.deepEqual(pMe.roles, ['parent']);
        assert.deepEqual(pMe.students, [{ id: students[0].user.id, full_name: 'Алексей Первокурсников' }], 'the guardian link is visible');

        // Links still open (never used, or with uses left, as the group's
        // 30-use link): the admin annuls them; each answers 410.
        const unclaimed = [
            sInv,
            await invite(stack, org, admin, { role: 'teacher', unit_id: org.staffId }),
            await invite(stack, org, admin, { role: 'administration' }),
            await invite(stack, org, tch, { role: 'parent', unit_id: group.id, student_id: students[1].user.id }),
            await invite(stack, org, tch, { role: 'student', unit_id: group.id, max_uses: 5 }),
        ];
        const beforeAnnul = await invitations(stack, org);
        const expected = Object.values(beforeAnnul).filter((i) => i.status === 'active').map((i) => i.id).sort();
        assert.deepEqual(expected, unclaimed.map((i) => i.id).sort(), 'the unclaimed links');
        assert.ok(beforeAnnul[sInv.id].uses > 0, 'the group link was used by some');
        const annul = expectStatus(await stack.post(`/v1/orgs/${org.id}/invitations/revoke-unused`, {}, { token: admin.token }), 200);
        assert.deepEqual(annul, { revoked: unclaimed.length });
        const late = await signUp(stack, { fullName: 'Опоздавший' });
        for (const inv of unclaimed) {
            gone(await accept(stack, inv.token, late), 'invitation_revoked', `an annulled ${inv.role} link`);
            assert.equal(expectStatus(await preview(stack, inv.token), 200).status, 'revoked');
        }
        assert.equal(membershipIn(await me(stack, late), org.id), undefined, 'the late user got nothing');
        const afterAnnul = await invitations(stack, org);
        for (const inv of unclaimed) assert.equal(afterAnnul[inv.id].status, 'revoked');
        assert.equal(afterAnnul[sInv.id].uses, beforeAnnul[sInv.id].uses, 'its uses are kept');
        assert.equal(afterAnnul[tInv.id].status, 'used', 'a used link stays used');
        assert.equal(afterAnnul[pInv.id].status, 'used');
        // Nothing left to annul.
        assert.deepEqual(expectStatus(await stack.post(`/v1/orgs/${org.id}/invitations/revoke-unused`, {}, { token: admin.token }), 200),
            { revoked: 0 });
        // The people who joined are still there.
        assert.deepEqual(await unitMembers(stack, org, group), students.map((s) => s.user.id).sort());
        assert.deepEqual(membershipIn(await me(stack, parent), org.id).students.map((s) => s.id), [students[0].user.id]);
    });

    it('annulling only links older than N hours keeps the newer ones', async () => {
        const fresh = await invite(stack, w.a, w.a.admin, { role: 'parent', unit_id: w.g1.id });
        const res = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/invitations/revoke-unused`, { older_than_hours: 1 }, { token: w.a.admin.token }), 200);
        assert.equal(res.revoked, 0, 'nothing older than an hour');
        assert.equal(expectStatus(await preview(stack, fresh.token), 200).status, 'active');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/invitations/revoke-unused`, { older_than_hours: 100000 }, { token: w.a.admin.token }),
            400, 'bad_request', 'older_than_hours');
        for (const who of [w.t1, w.adm, w.s1])
            forbid(await stack.post(`/v1/orgs/${w.a.id}/invitations/revoke-unused`, {}, { token: who.token }), 'a non-admin annuls');
        assert.equal(expectStatus(await preview(stack, fresh.token), 200).status, 'active', 'still active');
        expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${fresh.id}`, { token: w.a.admin.token }), 204);
    });

    it('a revoked link is 410 invitation_revoked; revoking is for its creator and admins', async () => {
        const inv = await invite(stack, w.a, w.t1, { role: 'student', unit_id: w.g1.id, max_uses: 10 });
        forbid(await stack.del(`/v1/orgs/${w.a.id}/invitations/${inv.id}`, { token: w.t2.token }), 'another teacher revokes it');
        forbid(await stack.del(`/v1/orgs/${w.a.id}/invitations/${inv.id}`, { token: w.s1.token }), 'a student revokes it');
        assert.equal(expectStatus(await preview(stack, inv.token), 200).status, 'active', 'still active');
        const del = await stack.del(`/v1/orgs/${w.a.id}/invitations/${inv.id}`, { token: w.t1.token });
        assert.equal(del.status, 204, del.text);
        const u = await signUp(stack, { fullName: 'По Отозванной Ссылке' });
        gone(await accept(stack, inv.token, u), 'invitation_revoked');
        assert.equal(expectStatus(await preview(stack, inv.token), 200).status, 'revoked');
        assert.equal(membershipIn(await me(stack, u), w.a.id), undefined, 'nothing granted');
        assert.equal((await invitations(stack, w.a))[inv.id].uses, 0);

        const inv2 = await invite(stack, w.a, w.t1, { role: 'parent', unit_id: w.g1.id });
        expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${inv2.id}`, { token: w.a.admin.token }), 204, 'the admin revokes');
        gone(await accept(stack, inv2.token, u), 'invitation_revoked');
        assertError(await stack.del(`/v1/orgs/${w.a.id}/invitations/${NO_SUCH_ID}`, { token: w.a.admin.token }), 404, undefined, 'id');
    });

    it('an expired link is 410 invitation_expired (the clock moved past its expiry)', async () => {
        const inv = await invite(stack, w.a, w.t1, { role: 'student', unit_id: w.g1.id, expires_in_hours: 1, max_uses: 5 });
        const hour = Date.parse(inv.expires_at) - Date.now();
        assert.ok(hour > 0 && hour <= HOUR, `expires within the hour: ${inv.expires_at}`);
        const u = await signUp(stack, { fullName: 'Опоздавший На Час' });
        const groupBefore = await unitMembers(stack, w.a, w.g1);
        try {
            stack.setClockOffset(2 * HOUR);
            gone(await accept(stack, inv.token, u), 'invitation_expired', 'two hours later');
            assert.equal(expectStatus(await preview(stack, inv.token), 200).status, 'expired');
            const row = (await invitations(stack, w.a, '&status=expired'))[inv.id];
            assert.ok(row && row.status === 'expired' && row.uses === 0, JSON.stringify(row));
        } finally {
            stack.setClockOffset(0);
        }
        assert.equal(membershipIn(await me(stack, u), w.a.id), undefined, 'nothing granted');
        assert.deepEqual(await unitMembers(stack, w.a, w.g1), groupBefore, 'the group unchanged');
    });

    it('a used-up link is 410 invitation_used_up; accepting twice is a no-op answering the same', async () => {
        const one = await invite(stack, w.a, w.t1, { role: 'parent', unit_id: w.g1.id, student_id: w.s1.user.id });
        const first = await signUp(stack, { fullName: 'Первый Родитель' });
        const second = await signUp(stack, { fullName: 'Второй Родитель' });
        const r1 = expectStatus(await accept(stack, one.token, first), 200);
        gone(await accept(stack, one.token, second), 'invitation_used_up', 'the second person');
        assert.equal(membershipIn(await me(stack, second), w.a.id), undefined, 'the second person got nothing');
        // The first one again: the same answer, nothing counted.
        const r1again = expectStatus(await accept(stack, one.token, first), 200, 'accepting again after the link is used up');
        assert.deepEqual(r1again, r1);
        const row = (await invitations(stack, w.a))[one.id];
        assert.equal(row.uses, 1);
        assert.equal(row.status, 'used');
        assert.equal(expectStatus(await preview(stack, one.token), 200).status, 'used');
        assert.deepEqual(membershipIn(await me(stack, first), w.a.id).students.map((s) => s.id), [w.s1.user.id]);

        // On a link with uses left: twice by the same person counts once.
        const many = await invite(stack, w.a, w.t2, { role: 'student', unit_id: w.g2.id, max_uses: 5 });
        const s = await signUp(stack, { fullName: 'Дважды Принявший' });
        const a1 = expectStatus(await accept(stack, many.token, s), 200);
        const a2 = expectStatus(await accept(stack, many.token, s), 200);
        assert.deepEqual(a2, a1, 'the same answer');
        assert.deepEqual(a1, { org_id: w.a.id, role: 'student', unit_id: w.g2.id, chat_id: null });
        const row2 = (await invitations(stack, w.a))[many.id];
        assert.equal(row2.uses, 1, 'uses not incremented by the second accept');
        assert.equal(row2.status, 'active');
        assert.deepEqual(membershipIn(await me(stack, s), w.a.id).roles, ['student']);
        assert.equal((await unitMembers(stack, w.a, w.g2)).filter((id) => id === s.user.id).length, 1, 'in the group once');
    });

    it('twenty people race for a one-use link: exactly one gets it, nineteen get 410 invitation_used_up', async () => {
        const inv = await invite(stack, w.a, w.t2, { role: 'student', unit_id: w.g2.id });
        const racers = [];
        for (let i = 0; i < 20; i++) racers.push(await signUp(stack, { fullName: `Участник Гонки ${i + 1}` }));
        const groupBefore = await unitMembers(stack, w.a, w.g2);
        const results = await Promise.all(racers.map((u) => accept(stack, inv.token, u)));
        const statuses = results.map((r) => (r.status === 200 ? '200' : `${r.status} ${r.json && r.json.error && r.json.error.code}`));
        assert.equal(statuses.filter((s) => s === '200').length, 1, statuses.join(', '));
        assert.equal(statuses.filter((s) => s === '410 invitation_used_up').length, 19, statuses.join(', '));
        for (const r of results.filter((x) => x.status !== 200)) gone(r, 'invitation_used_up');
        const winner = racers[results.findIndex((r) => r.status === 200)];
        const row = (await invitations(stack, w.a))[inv.id];
        assert.equal(row.uses, 1);
        assert.equal(row.status, 'used');
        const groupAfter = await unitMembers(stack, w.a, w.g2);
        assert.deepEqual(groupAfter, [...groupBefore, winner.user.id].sort(), 'exactly the winner joined');
        for (const u of racers.filter((x) => x !== winner))
            assert.equal(membershipIn(await me(stack, u), w.a.id), undefined, `${u.user.full_name} got nothing`);
    });

    it('who may invite: teachers only into their own group, and only if verified; students, parents, administration never', async () => {
        const before = await invitations(stack, w.a);
        const tryInvite = (who, body) => stack.post(`/v1/orgs/${w.a.id}/invitations`, body, { token: who.token });
        forbid(await tryInvite(w.t1, { role: 'student', unit_id: w.g2.id }), 'a curator invites into another teacher\'s group');
        forbid(await tryInvite(w.t1, { role: 'parent', unit_id: w.g2.id }), 'a curator invites parents into another teacher\'s group');
        forbid(await tryInvite(w.t1, { role: 'student', unit_id: w.g3.id }), 'into the unverified teacher\'s group');
        forbid(await tryInvite(w.t1, { role: 'student' }), 'a teacher invites a student into no group');
        forbid(await tryInvite(w.t1, { role: 'teacher', unit_id: w.a.staffId }), 'a teacher invites a teacher');
        forbid(await tryInvite(w.t1, { role: 'admin' }), 'a teacher invites an admin');
        forbid(await tryInvite(w.t3, { role: 'student', unit_id: w.g3.id }), 'an unverified teacher invites into their own group');
        for (const [name, who] of [['student', w.s1], ['parent', w.p1], ['administration', w.adm]]) {
            forbid(await tryInvite(who, { role: 'student', unit_id: w.g1.id }), `a ${name} invites a student`);
            forbid(await tryInvite(who, { role: 'parent', unit_id: w.g1.id }), `a ${name} invites a parent`);
        }
        assertError(await tryInvite(w.outsider, { role: 'student', unit_id: w.g1.id }), 404, undefined, undefined, 'an outsider invites');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/invitations`, { role: 'student', unit_id: w.g1.id }), 401, 'unauthorized');
        assert.deepEqual(await invitations(stack, w.a), before, 'no invitation was made');
        // The same curator may invite into their own group.
        const ok = await invite(stack, w.a, w.t1, { role: 'student', unit_id: w.g1.id });
        expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${ok.id}`, { token: w.t1.token }), 204);
    });

    it('a teacher\'s link naming a group and a chat needs both to be theirs; nobody is invited into a direct chat', async () => {
        const own = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/chats`, { kind: 'group', title: 'Кружок робототехники' },
            { token: w.t1.token }), 201, 'the curator\'s own chat');
        const chats = expectStatus(await stack.get('/v1/chats', { token: w.t1.token }), 200).items;
        const staffChannel = chats.find((c) => c.audience === 'staff');
        assert.ok(staffChannel, JSON.stringify(chats));
        const dm = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: w.s2.user.id }, { token: w.s1.token }),
            201, 'a direct chat of two students');
        const before = await invitations(stack, w.a);
        const tryInvite = (who, body) => stack.post(`/v1/orgs/${w.a.id}/invitations`, body, { token: who.token });
        forbid(await tryInvite(w.t1, { role: 'student', unit_id: w.g2.id, chat_id: own.id }),
            'the curator\'s own chat, but another teacher\'s group');
        forbid(await tryInvite(w.t1, { role: 'student', unit_id: w.g1.id, chat_id: staffChannel.id }),
            'the curator\'s own group, but the staff channel they only read');
        forbid(await tryInvite(w.t1, { role: 'parent', chat_id: staffChannel.id }), 'a chat they do not run');
        for (const who of [w.a.admin, w.t1])
            assertError(await tryInvite(who, { role: 'parent', chat_id: dm.id }), 400, 'bad_request', 'chat_id',
                'into two students\' direct chat');
        assert.deepEqual(await invitations(stack, w.a), before, 'no invitation was made');
        // Both their own: made, and accepting it joins both.
        const inv = await invite(stack, w.a, w.t1, { role: 'student', unit_id: w.g1.id, chat_id: own.id });
        const newcomer = await signUp(stack, { fullName: 'Новичок Кружка' });
        expectStatus(await accept(stack, inv.token, newcomer), 200, 'accept');
        assert.ok((await unitMembers(stack, w.a, w.g1)).includes(newcomer.user.id), 'in the group');
        const members = expectStatus(await stack.get(`/v1/chats/${own.id}/members?limit=200`, { token: w.t1.token }), 200);
        assert.ok(members.items.some((m) => m.user.id === newcomer.user.id), 'in the chat');
        // Leave the shared fixture as it was.
        expectStatus(await stack.post(`/v1/orgs/${w.a.id}/movements`, { kind: 'expel', user_id: newcomer.user.id },
            { token: w.a.admin.token }), 201);
    });

    it('a student who joined the group chat by a link naming it leaves it with the group, like everyone the roster put there', async () => {
        const chats = expectStatus(await stack.get('/v1/chats', { token: w.t1.token }), 200).items;
        const groupChat = chats.find((c) => c.unit_id === w.g1.id && c.audience === 'students');
        assert.ok(groupChat, JSON.stringify(chats));
        const inv = await invite(stack, w.a, w.t1, { role: 'student', unit_id: w.g1.id, chat_id: groupChat.id });
        const s = await signUp(stack, { fullName: 'Студент По Ссылке В Чат' });
        expectStatus(await accept(stack, inv.token, s), 200, 'accept');
        const inChat = async () => expectStatus(await stack.get(`/v1/chats/${groupChat.id}/members?limit=200`,
            { token: w.t1.token }), 200).items.some((m) => m.user.id === s.user.id);
        assert.ok(await inChat(), 'in the group chat');
        expectStatus(await stack.post(`/v1/orgs/${w.a.id}/movements`, { kind: 'expel', user_id: s.user.id },
            { token: w.a.admin.token }), 201, 'expel');
        assert.ok(await waitFor(async () => !(await inChat()), { timeoutMs: 10000 }), 'out of the group chat after the expulsion');
        const read = await stack.get(`/v1/chats/${groupChat.id}/messages`, { token: s.token });
        assert.ok([403, 404].includes(read.status), `the expelled student reads the group chat: ${read.status}`);
        expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${inv.id}`, { token: w.t1.token }), 204);
    });

    it('a join that cannot be done leaves nothing behind: no role, no membership, the use given back', async () => {
        // A student link to a group archived since; a parent link naming a
        // student expelled since; a join request to a group archived since.
        const gx = await newUnit(stack, w.a, { kind: 'group', name: 'ТП-91', code: 'ТП-91', year: 1 });
        const gy = await newUnit(stack, w.a, { kind: 'group', name: 'ТП-92', code: 'ТП-92', year: 1 });
        const sx = await student(stack, w.a, gx, 'Студент Отчисляемый');
        const toArchived = await invite(stack, w.a, w.a.admin, { role: 'student', unit_id: gx.id });
        const parentLink = await invite(stack, w.a, w.a.admin, { role: 'parent', unit_id: gx.id, student_id: sx.user.id });
        const asker = await signUp(stack, { fullName: 'Просящийся В Группу' });
        const request = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'student', unit_id: gy.id },
            { token: asker.token }), 201);
        expectStatus(await stack.post(`/v1/orgs/${w.a.id}/movements`, { kind: 'expel', user_id: sx.user.id },
            { token: w.a.admin.token }), 201);
        expectStatus(await stack.patch(`/v1/orgs/${w.a.id}/units/${gx.id}`, { archived: true }, { token: w.a.admin.token }), 200);
        expectStatus(await stack.patch(`/v1/orgs/${w.a.id}/units/${gy.id}`, { archived: true }, { token: w.a.admin.token }), 200);

        const u1 = await signUp(stack, { fullName: 'Опоздавший Студент' });
        assertError(await accept(stack, toArchived.token, u1), 409, undefined, 'unit_id', 'a link to an archived group');
        const u2 = await signUp(stack, { fullName: 'Опоздавший Родитель' });
        assertError(await accept(stack, parentLink.token, u2), 400, 'not_a_student', 'student_id',
            'a parent link naming a student expelled since');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/join-requests/${request.id}/approve`, undefined,
            { token: w.a.admin.token }), 409, undefined, 'unit_id', 'approving a request to an archived group');
        for (const [who, name] of [[u1, 'the student'], [u2, 'the parent'], [asker, 'the requester']])
            assert.equal(membershipIn(await me(stack, who), w.a.id), undefined, `${name} holds no role in the org`);
        const rows = await invitations(stack, w.a);
        assert.equal(rows[toArchived.id].uses, 0, 'the use was given back');
        assert.equal(rows[parentLink.id].uses, 0, 'the use was given back');
        const pending = expectStatus(await stack.get(`/v1/orgs/${w.a.id}/join-requests?status=pending`, { token: w.a.admin.token }), 200);
        assert.ok(pending.items.some((r) => r.id === request.id), 'the request is still pending');
        expectStatus(await stack.post(`/v1/orgs/${w.a.id}/join-requests/${request.id}/reject`, { reason: 'группа закрыта' },
            { token: w.a.admin.token }), 200);
        for (const id of [toArchived.id, parentLink.id])
            expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${id}`, { token: w.a.admin.token }), 204);
    });

    it('a parent link naming a student who is no longer one: refused, and the parent role is not given', async () => {
        const gz = await newUnit(stack, w.a, { kind: 'group', name: 'ТП-93', code: 'ТП-93', year: 1 });
        const sz = await student(stack, w.a, gz, 'Студент Ушедший');
        const link = await invite(stack, w.a, w.a.admin, { role: 'parent', student_id: sz.user.id });
        expectStatus(await stack.del(`/v1/orgs/${w.a.id}/members/${sz.user.id}/roles/student`, { token: w.a.admin.token }), 204);
        const parent = await signUp(stack, { fullName: 'Родитель Ушедшего' });
        assertError(await accept(stack, link.token, parent), 400, 'not_a_student', 'student_id', 'the named student left');
        assert.equal(membershipIn(await me(stack, parent), w.a.id), undefined, 'no parent role');
        assert.equal((await invitations(stack, w.a))[link.id].uses, 0, 'the use was given back');
        expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${link.id}`, { token: w.a.admin.token }), 204);
    });

    it('a curator\'s parent link cannot name a student of another group', async () => {
        // Curators link guardians for their own group's students only (org
        // rules); a parent link naming a student would link the guardian on
        // acceptance, so it must follow the same rule.
        const before = await invitations(stack, w.a);
        const res = await stack.post(`/v1/orgs/${w.a.id}/invitations`, { role: 'parent', unit_id: w.g1.id, student_id: w.s2.user.id },
            { token: w.t1.token });
        assert.ok(res.status === 403 || res.status === 400,
            `the curator of ТП-21 names a student of ТП-22 in a parent link: expected 403 (or 400), got ${res.status} ${res.text}`);
        assertError(res, res.status, undefined);
        assert.deepEqual(await invitations(stack, w.a), before, 'no invitation was made');
    });

    it('bad input when inviting: 400 naming the field, nothing made', async () => {
        const before = await invitations(stack, w.a);
        const t = { token: w.a.admin.token };
        const bad = async (body, field, code = 'bad_request') =>
            assertError(await stack.post(`/v1/orgs/${w.a.id}/invitations`, body, t), 400, code, field, JSON.stringify(body));
        await bad({ role: 'janitor' }, 'role');
        await bad({}, 'role');
        await bad({ role: 'student', unit_id: w.g1.id, expires_in_hours: 0 }, 'expires_in_hours');
        await bad({ role: 'student', unit_id: w.g1.id, expires_in_hours: 721 }, 'expires_in_hours');
        await bad({ role: 'student', unit_id: w.g1.id, max_uses: 0 }, 'max_uses');
        await bad({ role: 'student', unit_id: w.g1.id, max_uses: 501 }, 'max_uses');
        await bad({ role: 'student', unit_id: w.a.staffId }, 'unit_id');
        await bad({ role: 'teacher', unit_id: w.g1.id }, 'unit_id');
        await bad({ role: 'student', unit_id: w.d1.id }, 'unit_id');
        await bad({ role: 'student', unit_id: w.g1.id, student_id: w.s1.user.id }, 'student_id');
        await bad({ role: 'parent', unit_id: w.g1.id, student_id: w.p1.user.id }, 'student_id');
        await bad({ role: 'student', unit_id: 'not-an-id' }, 'unit_id');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/invitations`, { role: 'student', unit_id: NO_SUCH_ID }, t), 404, undefined, 'unit_id');
        assert.deepEqual(await invitations(stack, w.a), before);
        // The limits themselves are allowed.
        const max = await invite(stack, w.a, w.a.admin, { role: 'student', unit_id: w.g1.id, expires_in_hours: 720, max_uses: 500 });
        const hours = (Date.parse(max.expires_at) - Date.now()) / HOUR;
        assert.ok(hours > 719 && hours <= 721, `720 hours: ${max.expires_at}`);
        expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${max.id}`, t), 204);
    });

    it('an unknown token is 404, for the preview and for accepting', async () => {
        for (const token of [unknownToken(), 'x', 'A'.repeat(128), 'A'.repeat(129)]) {
            assertError(await preview(stack, token), 404, undefined, undefined, `preview ${token.slice(0, 20)}`);
            assertError(await accept(stack, token, w.outsider), 404, undefined, undefined, `accept ${token.slice(0, 20)}`);
        }
        assertError(await stack.post(`/v1/invitations/${unknownToken()}/accept`), 401, 'unauthorized', undefined, 'accepting needs a sign-in');
        assert.equal(membershipIn(await me(stack, w.outsider), w.a.id), undefined);
    });

    it('the preview shows org, role, unit, status and expiry, and nothing else: no members, no phones', async () => {
        const links = [
            await invite(stack, w.a, w.a.admin, { role: 'teacher', unit_id: w.a.staffId }),
            await invite(stack, w.a, w.t1, { role: 'student', unit_id: w.g1.id, max_uses: 30, note: 'для ТП-21' }),
            await invite(stack, w.a, w.t1, { role: 'parent', unit_id: w.g1.id, student_id: w.s1.user.id }),
            await invite(stack, w.a, w.a.admin, { role: 'administration' }),
        ];
        const members = expectStatus(await stack.get(`/v1/orgs/${w.a.id}/members?limit=200`, { token: w.a.admin.token }), 200).items;
        const secrets = members.flatMap((m) => [m.user.phone, m.user.full_name, m.user.id]).filter(Boolean);
        for (const inv of links) {
            for (const opts of [undefined, { token: w.outsider.token }]) {
                const res = await preview(stack, inv.token, opts);
                const pv = expectStatus(res, 200, `preview of a ${inv.role} link`);
                assert.deepEqual(Object.keys(pv).sort(), ['chat', 'expires_at', 'org', 'role', 'status', 'unit']);
                assert.deepEqual(pv.org, { id: w.a.id, name: w.a.name });
                assert.equal(pv.role, inv.role);
                assert.equal(pv.status, 'active');
                assert.equal(pv.expires_at, inv.expires_at);
                assert.equal(pv.chat, null);
                if (inv.unit_id) {
                    const name = inv.unit_id === w.a.staffId ? w.a.staffName : 'ТП-21';
                    assert.deepEqual(pv.unit, { id: inv.unit_id, name });
                } else {
                    assert.equal(pv.unit, null);
                }
                for (const s of secrets) assert.ok(!res.text.includes(s), `the preview shows ${s}: ${res.text}`);
                for (const s of [inv.creator_id, inv.id, inv.note || 'для ТП-21', w.s1.user.id])
                    assert.ok(!res.text.includes(s), `the preview shows ${s}: ${res.text}`);
            }
            expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${inv.id}`, { token: w.a.admin.token }), 204);
        }
    });

    it('the link itself (/join/{token}): a browser gets a page saying what the invitation is; other clients the preview; unknown links 404', async () => {
        const inv = await invite(stack, w.a, w.t1, { role: 'student', unit_id: w.g1.id, max_uses: 30 });
        const url = new URL(inv.url);
        assert.equal(url.pathname, `/join/${inv.token}`);
        // What Chromium-based browsers send when a link is opened (135 bytes).
        const chrome = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,'
            + 'application/signed-exchange;v=b3;q=0.7';
        const page = await stack.get(url.pathname, { headers: { Accept: chrome } });
        assert.equal(page.status, 200, page.text);
        assert.match(page.headers.get('content-type'), /^text\/html; charset=utf-8$/);
        assert.equal(page.headers.get('cache-control'), 'no-store');
        assert.equal(page.headers.get('content-security-policy'), "default-src 'none'");
        assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
        assert.equal(page.headers.get('vary'), 'Accept');
        const firefox = await stack.get(url.pathname, {
            headers: { Accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' } });
        assert.match(firefox.headers.get('content-type'), /^text\/html/);
        assert.match(page.text, /^<!DOCTYPE html>/);
        for (const part of [w.a.name, 'обучающийся', 'ТП-21', 'действует'])
            assert.ok(page.text.includes(part), `the page names ${part}:\n${page.text}`);
        for (const secret of [inv.token, inv.id, w.t1.user.id, w.s1.user.id])
            assert.ok(!page.text.includes(secret), `the page shows ${secret}`);
        const json = await stack.get(url.pathname);
        assert.equal(json.status, 200, json.text);
        assert.equal(json.headers.get('cache-control'), 'no-store');
        assert.deepEqual(json.json, expectStatus(await preview(stack, inv.token), 200));
        const unknown = await stack.get(`/join/${unknownToken()}`, { headers: { Accept: 'text/html' } });
        assert.equal(unknown.status, 404);
        assert.match(unknown.headers.get('content-type'), /^text\/html/);
        assertError(await stack.get(`/join/${unknownToken()}`), 404, undefined, 'token');
        expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${inv.id}`, { token: w.t1.token }), 204);
        const revoked = await stack.get(url.pathname, { headers: { Accept: 'text/html' } });
        assert.equal(revoked.status, 200);
        assert.ok(revoked.text.includes('отозвано'), revoked.text);
        // What a service says is text, never markup.
        const org = await newOrg(stack, 'Колледж <b>"Кавычки" & скобки</b>', 'ККС');
        const inv2 = await invite(stack, org, org.admin, { role: 'parent' });
        const page2 = await stack.get(`/join/${inv2.token}`, { headers: { Accept: 'text/html' } });
        assert.ok(page2.text.includes('Колледж &lt;b&gt;&quot;Кавычки&quot; &amp; скобки&lt;/b&gt;'), page2.text);
        assert.ok(!page2.text.includes('<b>'), 'no markup from the name');
    });

    it('listings never show tokens; a teacher lists only their own invitations', async () => {
        const byT1 = [
            await invite(stack, w.a, w.t1, { role: 'student', unit_id: w.g1.id }),
            await invite(stack, w.a, w.t1, { role: 'parent', unit_id: w.g1.id }),
        ];
        const byT2 = [await invite(stack, w.a, w.t2, { role: 'student', unit_id: w.g2.id })];
        const byAdmin = [await invite(stack, w.a, w.a.admin, { role: 'teacher', unit_id: w.a.staffId })];
        // Every token this stack handed out (invitations and sessions alike).
        const tokens = [...new Set([...stack.tokens, ...[...byT1, ...byT2, ...byAdmin].map((i) => i.token)])];
        const check = (res, who) => {
            const body = expectStatus(res, 200, who);
            for (const i of body.items) {
                assert.equal(i.token, null, `${who}: token shown for ${i.id}`);
                assert.equal(i.url, null, `${who}: url shown for ${i.id}`);
            }
            for (const t of tokens) assert.ok(!res.text.includes(t), `${who}: a token in the listing`);
            return body.items;
        };
        const all = check(await stack.get(`/v1/orgs/${w.a.id}/invitations?limit=200`, { token: w.a.admin.token }), 'admin');
        for (const i of [...byT1, ...byT2, ...byAdmin]) assert.ok(all.some((x) => x.id === i.id), `the admin sees ${i.id}`);
        assert.ok(all.some((x) => x.creator_id !== w.a.admin.user.id), 'the admin sees the teachers\' links too');
        const t1 = check(await stack.get(`/v1/orgs/${w.a.id}/invitations?limit=200`, { token: w.t1.token }), 'teacher 1');
        assert.ok(t1.length >= byT1.length && t1.every((i) => i.creator_id === w.t1.user.id), `only teacher 1's: ${JSON.stringify(t1)}`);
        for (const i of byT1) assert.ok(t1.some((x) => x.id === i.id), `teacher 1 sees ${i.id}`);
        const t2 = check(await stack.get(`/v1/orgs/${w.a.id}/invitations?limit=200`, { token: w.t2.token }), 'teacher 2');
        assert.ok(t2.every((i) => i.creator_id === w.t2.user.id), `only teacher 2's: ${JSON.stringify(t2)}`);
        assert.ok(t2.some((x) => x.id === byT2[0].id));
        const t3 = check(await stack.get(`/v1/orgs/${w.a.id}/invitations`, { token: w.t3.token }), 'teacher 3');
        assert.deepEqual(t3, [], 'a teacher who made none sees none');
        const active = check(await stack.get(`/v1/orgs/${w.a.id}/invitations?status=active&limit=200`, { token: w.a.admin.token }), 'active');
        assert.ok(active.every((i) => i.status === 'active') && active.some((i) => i.id === byT2[0].id));
        const revoked = check(await stack.get(`/v1/orgs/${w.a.id}/invitations?status=revoked&limit=200`, { token: w.a.admin.token }), 'revoked');
        assert.ok(revoked.every((i) => i.status === 'revoked') && !revoked.some((i) => i.id === byT2[0].id));
        for (const [name, who] of [['student', w.s1], ['parent', w.p1], ['administration', w.adm]])
            forbid(await stack.get(`/v1/orgs/${w.a.id}/invitations`, { token: who.token }), `a ${name} lists invitations`);
        for (const i of [...byT1, ...byT2, ...byAdmin])
            expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${i.id}`, { token: w.a.admin.token }), 204);
    });

    it('another org\'s admin gets 404 for this org\'s invitations, units and join requests, and nothing changes', async () => {
        const inv = await invite(stack, w.a, w.a.admin, { role: 'student', unit_id: w.g1.id, max_uses: 3 });
        const asker = await signUp(stack, { fullName: 'Просящийся В Колледж' });
        const jr = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'parent' }, { token: asker.token }), 201);
        const before = await invitations(stack, w.a);
        const A = `/v1/orgs/${w.a.id}`;
        const B = `/v1/orgs/${w.b.id}`;
        const o = { token: w.b.admin.token };
        const hidden = (res, what) => assertError(res, 404, undefined, undefined, what);
        hidden(await stack.post(`${A}/invitations`, { role: 'student', unit_id: w.g1.id }, o), 'invite into this org');
        hidden(await stack.post(`${A}/invitations`, { role: 'admin' }, o), 'invite an admin into this org');
        hidden(await stack.get(`${A}/invitations`, o), 'list this org\'s invitations');
        hidden(await stack.del(`${A}/invitations/${inv.id}`, o), 'revoke this org\'s invitation');
        hidden(await stack.post(`${A}/invitations/revoke-unused`, {}, o), 'annul this org\'s links');
        hidden(await stack.get(`${A}/join-requests`, o), 'list this org\'s join requests');
        hidden(await stack.post(`${A}/join-requests/${jr.id}/approve`, undefined, o), 'approve this org\'s join request');
        hidden(await stack.post(`${A}/join-requests/${jr.id}/reject`, { reason: 'нет' }, o), 'reject this org\'s join request');
        // Their own org's path with this org's ids.
        hidden(await stack.post(`${B}/invitations`, { role: 'student', unit_id: w.g1.id }, o), 'their link into this org\'s group');
        hidden(await stack.del(`${B}/invitations/${inv.id}`, o), 'revoke this org\'s invitation by its id');
        hidden(await stack.post(`${B}/join-requests/${jr.id}/approve`, undefined, o), 'approve this org\'s request by its id');
        hidden(await stack.post(`${B}/join-requests/${jr.id}/reject`, { reason: 'нет' }, o), 'reject this org\'s request by its id');
        assertError(await stack.post(`${B}/invitations`, { role: 'parent', unit_id: w.gb.id, student_id: w.s1.user.id }, o), 400, undefined, 'student_id',
            'a parent link naming this org\'s student');
        assert.deepEqual(await invitations(stack, w.a), before, 'this org\'s invitations unchanged');
        assert.equal(expectStatus(await preview(stack, inv.token), 200).status, 'active');
        const pending = expectStatus(await stack.get(`${A}/join-requests?status=pending`, { token: w.a.admin.token }), 200);
        assert.ok(pending.items.some((r) => r.id === jr.id && r.status === 'pending'), 'the request is still pending');
        const bList = expectStatus(await stack.get(`${B}/invitations`, o), 200);
        assert.deepEqual(bList.items, [], 'nothing was made in the other org either');
        expectStatus(await stack.del(`${A}/invitations/${inv.id}`, { token: w.a.admin.token }), 204);
        expectStatus(await stack.post(`${A}/join-requests/${jr.id}/reject`, { reason: 'проверка' }, { token: w.a.admin.token }), 200);
    });

    it('a student already in a group cannot join another by a link: 409, the use given back', async () => {
        const inv = await invite(stack, w.a, w.t2, { role: 'student', unit_id: w.g2.id, max_uses: 2 });
        assertError(await accept(stack, inv.token, w.s1), 409, 'already_in_group', undefined, 'a student of ТП-21 takes a ТП-22 link');
        const row = (await invitations(stack, w.a))[inv.id];
        assert.equal(row.uses, 0, 'the use was given back');
        assert.deepEqual(membershipIn(await me(stack, w.s1), w.a.id).units.map((u) => u.id), [w.g1.id], 'still in ТП-21');
        expectStatus(await stack.del(`/v1/orgs/${w.a.id}/invitations/${inv.id}`, { token: w.t2.token }), 204);
    });

    it('join requests: create, duplicate 409, a role you hold 409, approve makes a member of the group, reject shows the reason', async () => {
        const u = await signUp(stack, { fullName: 'Желающий Учиться' });
        const found = expectStatus(await stack.get(`/v1/orgs?q=${encodeURIComponent('рыбновский')}`, { token: u.token }), 200);
        assert.deepEqual(found.items.map((o) => o.id), [w.a.id], 'the applicant finds the college by name');

        const created = await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'student', unit_id: w.g3.id, message: 'Прошу зачислить в ТП-11' },
            { token: u.token });
        assert.equal(created.status, 201, created.text);
        assert.equal(created.json.status, 'pending');
        const reqId = created.json.id;
        assertError(await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'student', unit_id: w.g3.id }, { token: u.token }),
            409, 'request_pending', undefined, 'the same request again');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'student' }, { token: u.token }),
            409, 'request_pending', undefined, 'the same role, no group');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'student', unit_id: w.g1.id }, { token: w.s1.token }),
            409, undefined, undefined, 'a student asks to be a student');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'teacher' }, { token: w.t1.token }),
            409, undefined, undefined, 'a teacher asks to be a teacher');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'admin' }, { token: u.token }), 400, 'bad_request', 'role');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'student', unit_id: w.a.staffId }, { token: u.token }),
            400, 'bad_request', 'unit_id');
        assertError(await stack.post(`/v1/orgs/${NO_SUCH_ID}/join-requests`, { role: 'student' }, { token: u.token }), 404, undefined, 'org_id');
        // A second role is a second request.
        const asParent = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'parent', message: 'Я также родитель' },
            { token: u.token }), 201);

        // What the admin sees.
        const pending = expectStatus(await stack.get(`/v1/orgs/${w.a.id}/join-requests?status=pending`, { token: w.a.admin.token }), 200);
        const row = pending.items.find((r) => r.id === reqId);
        assert.ok(row, JSON.stringify(pending));
        assert.deepEqual({ user: row.user, role: row.role, unit_id: row.unit_id, message: row.message, status: row.status },
            { user: { id: u.user.id, full_name: 'Желающий Учиться', phone: null }, role: 'student', unit_id: w.g3.id,
                message: 'Прошу зачислить в ТП-11', status: 'pending' });
        assert.ok(pending.items.some((r) => r.id === asParent.id));

        // Non-admins: 403, and the requests stay pending.
        for (const [name, who] of [['curator', w.t1], ['administration', w.adm], ['student', w.s1], ['the applicant', u]]) {
            const res = await stack.get(`/v1/orgs/${w.a.id}/join-requests`, { token: who.token });
            assert.ok(res.status === 403 || (who === u && res.status === 404), `${name} lists join requests: ${res.status} ${res.text}`);
            assertError(res, res.status, undefined);
            const ap = await stack.post(`/v1/orgs/${w.a.id}/join-requests/${reqId}/approve`, undefined, { token: who.token });
            assert.ok(ap.status === 403 || (who === u && ap.status === 404), `${name} approves: ${ap.status} ${ap.text}`);
            const rj = await stack.post(`/v1/orgs/${w.a.id}/join-requests/${reqId}/reject`, { reason: 'нет' }, { token: who.token });
            assert.ok(rj.status === 403 || (who === u && rj.status === 404), `${name} rejects: ${rj.status} ${rj.text}`);
        }
        const still = expectStatus(await stack.get(`/v1/orgs/${w.a.id}/join-requests?status=pending`, { token: w.a.admin.token }), 200);
        assert.ok(still.items.some((r) => r.id === reqId) && still.items.some((r) => r.id === asParent.id), 'both still pending');
        assert.equal(membershipIn(await me(stack, u), w.a.id), undefined, 'not a member yet');

        // Approve: the role and the group.
        const approved = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/join-requests/${reqId}/approve`, undefined, { token: w.a.admin.token }), 200);
        assert.equal(approved.status, 'approved');
        const m = membershipIn(await me(stack, u), w.a.id);
        assert.deepEqual(m.roles, ['student']);
        assert.deepEqual(m.units.map((x) => x.id), [w.g3.id]);
        assert.ok((await unitMembers(stack, w.a, w.g3)).includes(u.user.id), 'in the group\'s member list');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/join-requests/${reqId}/approve`, undefined, { token: w.a.admin.token }),
            409, 'request_decided', undefined, 'approving twice');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/join-requests/${reqId}/reject`, { reason: 'передумали' }, { token: w.a.admin.token }),
            409, 'request_decided', undefined, 'rejecting an approved one');

        // Reject with a reason: the applicant sees it.
        const rejected = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/join-requests/${asParent.id}/reject`,
            { reason: 'Не подтверждено родство с обучающимся' }, { token: w.a.admin.token }), 200);
        assert.equal(rejected.status, 'rejected');
        const mine = expectStatus(await stack.get('/v1/me/join-requests', { token: u.token }), 200);
        const byId = Object.fromEntries(mine.items.map((r) => [r.id, r]));
        assert.deepEqual(Object.keys(byId).sort(), [reqId, asParent.id].sort(), 'the applicant sees their two requests');
        assert.equal(byId[asParent.id].status, 'rejected');
        assert.equal(byId[asParent.id].reason, 'Не подтверждено родство с обучающимся');
        assert.equal(byId[reqId].status, 'approved');
        assert.deepEqual(membershipIn(await me(stack, u), w.a.id).roles, ['student'], 'the rejected role was not granted');
        // Nobody else sees them.
        const others = expectStatus(await stack.get('/v1/me/join-requests', { token: w.outsider.token }), 200);
        assert.ok(!others.items.some((r) => r.id === reqId || r.id === asParent.id), 'not in another user\'s list');
        // After a decision, asking again is allowed (no pending one).
        const again = await stack.post(`/v1/orgs/${w.a.id}/join-requests`, { role: 'parent' }, { token: u.token });
        assert.equal(again.status, 201, again.text);
        expectStatus(await stack.post(`/v1/orgs/${w.a.id}/join-requests/${again.json.id}/reject`, {}, { token: w.a.admin.token }), 200);
    });
});

describe('guessing protection (the invite service\'s default: 30 unknown tokens an hour per address)', { timeout: 300000 }, () => {
    // Behind a trusted proxy, so that two client addresses can be told apart.
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits(), PARTA_TRUSTED_PROXIES: '127.0.0.1' } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('after 30 unknown tokens from an address, every lookup from it is 429 with Retry-After, even a valid one', async () => {
        const org = await newOrg(stack, 'Колледж Угадывания', 'КУ');
        const group = await newUnit(stack, org, { kind: 'group', name: 'УГ-11', code: 'УГ-11', year: 1 });
        const inv = await invite(stack, org, org.admin, { role: 'student', unit_id: group.id, max_uses: 5 });
        const guesser = await signUp(stack, { fullName: 'Угадывающий Ссылки' });
        const from = (ip, extra = {}) => ({ ...extra, headers: { 'X-Forwarded-For': ip } });
        const bad = '10.7.7.7';
        // 29 unknown tokens, by preview and by accept.
        for (let i = 1; i <= 29; i++) {
            const res = i % 2
                ? await preview(stack, unknownToken(), from(bad))
                : await stack.post(`/v1/invitations/${unknownToken()}/accept`, undefined, from(bad, { token: guesser.token }));
            assertError(res, 404, undefined, undefined, `unknown token #${i}`);
        }
        // Not blocked yet: a valid token still works from there.
        assert.equal(expectStatus(await preview(stack, inv.token, from(bad)), 200, 'a valid token after 29 unknown').status, 'active');
        assertError(await preview(stack, unknownToken(), from(bad)), 404, undefined, undefined, 'unknown token #30');
        // Now everything from that address is refused.
        const checks = [
            ['preview of the valid token', () => preview(stack, inv.token, from(bad))],
            ['accepting the valid token', () => stack.post(`/v1/invitations/${inv.token}/accept`, undefined, from(bad, { token: guesser.token }))],
            ['another unknown token', () => preview(stack, unknownToken(), from(bad))],
        ];
        for (const [what, fn] of checks) {
            const res = await fn();
            assertError(res, 429, 'rate_limited', undefined, what);
            const retry = res.headers.get('retry-after');
            assert.match(String(retry), /^[0-9]+$/, `${what}: Retry-After ${retry}`);
            assert.ok(Number(retry) >= 1 && Number(retry) <= 3600, `${what}: Retry-After ${retry}`);
        }
        assert.equal(membershipIn(await me(stack, guesser), org.id), undefined, 'the refused accept granted nothing');
        assert.equal((await invitations(stack, org))[inv.id].uses, 0, 'and used nothing');
        // Another address is not affected.
        assert.equal(expectStatus(await preview(stack, inv.token, from('10.8.8.8')), 200, 'another address').status, 'active');
        // When the hour is over, the address may look up again.
        try {
            stack.setClockOffset(3601 * 1000);
            assert.equal(expectStatus(await preview(stack, inv.token, from(bad)), 200, 'an hour later').status, 'active');
        } finally {
            stack.setClockOffset(0);
        }
    });
});

describe('accepting is limited per user too (invite_user)', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits({ invite_user: '3/3600' }) } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('a user\'s fourth accept within the hour is 429 with Retry-After, even of a valid link, and grants nothing; others still accept', async () => {
        const org = await newOrg(stack, 'Колледж Лимитов', 'КЛ');
        const group = await newUnit(stack, org, { kind: 'group', name: 'КЛ-11', code: 'КЛ-11', year: 1 });
        const inv = await invite(stack, org, org.admin, { role: 'student', unit_id: group.id, max_uses: 5 });
        const u = await signUp(stack, { fullName: 'Торопливый Пользователь' });
        for (let i = 1; i <= 3; i++)
            assertError(await stack.post(`/v1/invitations/${unknownToken()}/accept`, undefined, { token: u.token }),
                404, undefined, undefined, `unknown token #${i}`);
        const res = await accept(stack, inv.token, u);
        assertError(res, 429, 'rate_limited', undefined, 'the fourth accept');
        const retry = Number(res.headers.get('retry-after'));
        assert.ok(retry >= 1 && retry <= 3600, `Retry-After ${res.headers.get('retry-after')}`);
        assert.equal(membershipIn(await me(stack, u), org.id), undefined, 'nothing granted');
        assert.equal((await invitations(stack, org))[inv.id].uses, 0, 'no use taken');
        const other = await signUp(stack, { fullName: 'Другой Пользователь' });
        expectStatus(await accept(stack, inv.token, other), 200, 'another user accepts');
    });
});

describe('two instances of the invite service (a write that calls other services)', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('the same keyed request sent twice at once makes one invitation, and both get it', async () => {
        const org = await newOrg(stack, 'Колледж Двух Экземпляров', 'КДЭ');
        stack.spawnLike('invite', 'invite-2');
        const two = await waitFor(async () => {
            const r = await stack.get('/readyz');
            return r.json && r.json.checks && r.json.checks.services && r.json.checks.services.invite === 2;
        }, { timeoutMs: 20000 });
        assert.ok(two, 'a second invite instance registered');
        const before = Object.keys(await invitations(stack, org)).length;
        const pairs = 12;
        const results = await Promise.all(Array.from({ length: pairs }, (_, i) => {
            const opts = { token: org.admin.token, headers: { 'Idempotency-Key': `teacher-link-${i}` } };
            const body = { role: 'teacher', note: `ссылка ${i}` };
            return Promise.all([0, 1].map(() => stack.post(`/v1/orgs/${org.id}/invitations`, body, opts)));
        }));
        for (const [i, [a, b]] of results.entries()) {
            assert.equal(a.status, 201, `pair ${i}: ${a.status} ${a.text}`);
            assert.equal(b.status, 201, `pair ${i}: ${b.status} ${b.text}`);
            assert.equal(a.json.id, b.json.id, `pair ${i}: one invitation`);
        }
        assert.equal(Object.keys(await invitations(stack, org)).length, before + pairs, 'one invitation per key');
    });
});
