'use strict';
// Institutions and structure as a client sees them (API.md "Institutions
// and structure", policy 3А-3Г): an institution applies, the platform
// operator approves, its admin signs up with the phone from the application,
// edits the card, builds departments, groups and sees the staff group,
// appoints a teacher, verifies them, makes them a curator, records students'
// movements and links parents. Every authorization rule is tried by the
// people it keeps out, and what they tried to change is read back
// unchanged; bad input gets a clear 4xx and changes nothing.

const { describe, it, before, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const {
    stackForSuite, limits, assertError, expectStatus, signUp, newPhone, waitFor, sleep,
} = require('./lib/stack');

// A ULID nobody has.
const NO_SUCH_ID = '01J0000000000000000000ZZZZ';

let orgSeq = 0;
function application({ orgName, shortName, region = 'Рязанская область', adminName = 'Ирина Смирнова', adminPhone }) {
    orgSeq += 1;
    return {
        org_name: orgName,
        short_name: shortName,
        region,
        inn: '6229000000',
        admin: { full_name: adminName, phone: adminPhone, email: `admin${orgSeq}@college.example` },
        order_number: `${100 + orgSeq}-к`,
        order_date: '2026-08-25',
    };
}

// The platform operator of a stack, registered the first time.
const operators = new WeakMap();
async function operator(stack) {
    if (!operators.has(stack))
        operators.set(stack, await signUp(stack, { phone: stack.operatorPhone(), fullName: 'Оператор Платформы' }));
    return operators.get(stack);
}

// Applies, approves and signs the admin up: {id, name, shortName, appId, admin, staffId}.
async function newOrg(stack, { orgName, shortName, adminName = 'Администратор Колледжа' }) {
    const op = await operator(stack);
    const adminPhone = newPhone();
    const app = expectStatus(await stack.post('/v1/org-applications',
        application({ orgName, shortName, adminName, adminPhone })), 201, `apply ${orgName}`);
    const approved = expectStatus(await stack.post(`/v1/org-applications/${app.id}/approve`, undefined, { token: op.token }),
        200, `approve ${orgName}`);
    const admin = await signUp(stack, { phone: adminPhone, fullName: adminName });
    const units = expectStatus(await stack.get(`/v1/orgs/${approved.org_id}/units?kind=staff`, { token: admin.token }), 200);
    assert.equal(units.items.length, 1, `one staff group: ${JSON.stringify(units)}`);
    return { id: approved.org_id, name: orgName, shortName, appId: app.id, admin, staffId: units.items[0].id };
}

async function newUnit(stack, org, body) {
    return expectStatus(await stack.post(`/v1/orgs/${org.id}/units`, body, { token: org.admin.token }), 201,
        `create unit ${JSON.stringify(body)}`);
}

// A new user holding `role` in the org (granted by its admin).
async function member(stack, org, role, fullName) {
    const u = await signUp(stack, { fullName });
    expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${u.user.id}/roles`, { role }, { token: org.admin.token }),
        200, `grant ${role} to ${fullName}`);
    return u;
}

async function move(stack, org, body) {
    return expectStatus(await stack.post(`/v1/orgs/${org.id}/movements`, body, { token: org.admin.token }), 201,
        `movement ${JSON.stringify(body)}`);
}

async function me(stack, who) {
    return expectStatus(await stack.get('/v1/me', { token: who.token }), 200, 'GET /v1/me');
}

function membershipIn(meBody, orgId) {
    return meBody.memberships.find((m) => m.org_id === orgId);
}

const ids = (items) => items.map((x) => (x.user ? x.user.id : x.id)).sort();

// Everything of an org its admin can read, plus what its parents see of
// their children: compared before and after refused attempts.
async function snapshot(stack, org, parents = []) {
    const t = org.admin.token;
    const get = async (p) => expectStatus(await stack.get(p, { token: t }), 200, `GET ${p}`);
    const units = await get(`/v1/orgs/${org.id}/units?include_archived=true&limit=200`);
    const unitMembers = {};
    for (const u of units.items) unitMembers[u.id] = await get(`/v1/orgs/${org.id}/units/${u.id}/members?limit=200`);
    const children = {};
    for (const p of parents) {
        const m = membershipIn(await me(stack, p), org.id);
        children[p.user.id] = m ? m.students : null;
    }
    return {
        card: await get(`/v1/orgs/${org.id}`),
        units,
        unitMembers,
        members: await get(`/v1/orgs/${org.id}/members?limit=200`),
        movements: await get(`/v1/orgs/${org.id}/movements?limit=200`),
        children,
    };
}

// What a unit's members list shows: [[user id, role]], sorted.
async function unitMembers(stack, org, unit) {
    const unitId = typeof unit === 'string' ? unit : unit.id;
    return expectStatus(await stack.get(`/v1/orgs/${org.id}/units/${unitId}/members?limit=200`, { token: org.admin.token }), 200,
        `members of ${unitId}`).items.map((m) => [m.user.id, m.role]).sort();
}

// A unit as the admin's units list shows it (archived ones too).
async function unitRow(stack, org, unit) {
    const unitId = typeof unit === 'string' ? unit : unit.id;
    const list = expectStatus(await stack.get(`/v1/orgs/${org.id}/units?include_archived=true&limit=200`, { token: org.admin.token }), 200);
    const row = list.items.find((u) => u.id === unitId);
    assert.ok(row, `unit ${unitId} is listed: ${JSON.stringify(list)}`);
    return row;
}

// A user's row in GET /v1/orgs/{org}/members as the admin reads it, roles
// sorted; undefined when they are not a member.
async function memberRow(stack, org, who) {
    const list = expectStatus(await stack.get(`/v1/orgs/${org.id}/members?limit=200`, { token: org.admin.token }), 200);
    const row = list.items.find((m) => m.user.id === who.user.id);
    return row && { ...row, roles: [...row.roles].sort() };
}

// The caller's membership in the org from GET /v1/me, roles sorted;
// undefined when there is none.
async function myMembership(stack, org, who) {
    const m = membershipIn(await me(stack, who), org.id);
    return m && { ...m, roles: [...m.roles].sort() };
}

// The movements recorded for a user, as the admin lists them.
async function movementsOf(stack, org, who) {
    return expectStatus(await stack.get(`/v1/orgs/${org.id}/movements?user_id=${who.user.id}&limit=200`, { token: org.admin.token }), 200).items;
}

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

// A movement record: a ULID, a creation time, and exactly `expected` besides.
function assertMovement(m, expected) {
    assert.match(String(m.id), ULID, JSON.stringify(m));
    assert.equal(typeof m.created_at, 'string', JSON.stringify(m));
    const rest = { ...m };
    delete rest.id;
    delete rest.created_at;
    assert.deepEqual(rest, expected);
}

const unitRef = (u) => ({ id: u.id, name: u.name, kind: u.kind });
const staffRef = (org) => ({ id: org.staffId, name: org.shortName, kind: 'staff' });
const person = (who, fullName) => ({ id: who.user.id, full_name: fullName, phone: who.phone });

// The org's events cannot be read from outside; the chat service consumes
// them and its automatic chats can be (API.md "Automatic chats"). These
// wait, bounded, until the chats `who` is in satisfy `pred`.
async function orgChats(stack, org, who) {
    return expectStatus(await stack.get('/v1/chats?limit=200', { token: who.token }), 200, 'GET /v1/chats').items
        .filter((c) => c.org_id === org.id);
}
async function eventuallyChats(stack, org, who, pred, what) {
    let last = [];
    const ok = await waitFor(async () => { last = await orgChats(stack, org, who); return pred(last); }, { timeoutMs: 10000, intervalMs: 100 });
    assert.ok(ok, `${what}; the chats seen: ${JSON.stringify(last.map((c) => [c.audience, c.unit_id, c.title, c.archived]))}\n` +
        stack.logTails(10, ['org', 'chat']));
}
const inChat = (unit, audience) => (cs) => cs.some((c) => c.unit_id === unit.id && c.audience === audience);
const notInChat = (unit, audience) => (cs) => cs.length > 0 && !inChat(unit, audience)(cs);
const noUnitChat = (cs) => cs.length > 0 && !cs.some((c) => c.unit_id);

// The structure the authorization and bad-input tests run against: two
// departments, three groups with curators, students, parents,
// administration, an outsider, and a second organisation.
async function buildWorld(stack) {
    const a = await newOrg(stack, { orgName: 'Касимовский аграрный техникум', shortName: 'КАТ' });
    const d1 = await newUnit(stack, a, { kind: 'department', name: 'Механизация сельского хозяйства' });
    const d2 = await newUnit(stack, a, { kind: 'department', name: 'Экономика и бухучёт' });
    const g1 = await newUnit(stack, a, { kind: 'group', name: 'ТМ-21', code: 'ТМ-21', year: 2, parent_id: d1.id });
    const g2 = await newUnit(stack, a, { kind: 'group', name: 'ТМ-22', code: 'ТМ-22', year: 2, parent_id: d1.id });
    const g3 = await newUnit(stack, a, { kind: 'group', name: 'ЭК-11', code: 'ЭК-11', year: 1, parent_id: d2.id });
    const t1 = await member(stack, a, 'teacher', 'Пётр Куратор');
    const t2 = await member(stack, a, 'teacher', 'Ольга Куратор');
    for (const [t, g] of [[t1, g1], [t2, g2]]) {
        expectStatus(await stack.post(`/v1/orgs/${a.id}/members/${t.user.id}/verify`, { verified: true }, { token: a.admin.token }), 200);
        expectStatus(await stack.put(`/v1/orgs/${a.id}/units/${g.id}/curator`, { user_id: t.user.id }, { token: a.admin.token }), 200);
    }
    const adm = await member(stack, a, 'administration', 'Завуч Иванова');
    const s1 = await member(stack, a, 'student', 'Студент Первый');
    const s2 = await member(stack, a, 'student', 'Студент Второй');
    const s3 = await member(stack, a, 'student', 'Студентка Третья');
    await move(stack, a, { kind: 'enroll', user_id: s1.user.id, unit_id: g1.id, order_number: '1-у' });
    await move(stack, a, { kind: 'enroll', user_id: s2.user.id, unit_id: g1.id, order_number: '2-у' });
    await move(stack, a, { kind: 'enroll', user_id: s3.user.id, unit_id: g2.id, order_number: '3-у' });
    const p1 = await member(stack, a, 'parent', 'Родитель Первого');
    const p2 = await member(stack, a, 'parent', 'Родитель Без Ребёнка');
    expectStatus(await stack.post(`/v1/orgs/${a.id}/guardians`, { parent_id: p1.user.id, student_id: s1.user.id },
        { token: a.admin.token }), 201);
    const outsider = await signUp(stack, { fullName: 'Посторонний Человек' });

    const b = await newOrg(stack, { orgName: 'Медицинский колледж имени Павлова', shortName: 'МК' });
    const gb = await newUnit(stack, b, { kind: 'group', name: 'МС-31', code: 'МС-31', year: 3 });
    const tb = await member(stack, b, 'teacher', 'Учитель Другого');
    const sb = await member(stack, b, 'student', 'Студент Другого');
    await move(stack, b, { kind: 'enroll', user_id: sb.user.id, unit_id: gb.id });
    const pb = await member(stack, b, 'parent', 'Родитель Другого');
    return { a, d1, d2, g1, g2, g3, t1, t2, adm, s1, s2, s3, p1, p2, outsider, b, gb, tb, sb, pb };
}

describe('an institution joins and its admin builds it', { timeout: 600000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('apply, approve, the admin signs up as admin, edits the card, builds units, appoints a curator, records movements, links parents', async () => {
        const op = await operator(stack);
        assert.equal((await me(stack, op)).operator, true, 'the operator is an operator');

        // The application (public).
        const adminPhone = newPhone();
        const d = adminPhone.slice(2);
        const body = application({
            orgName: 'Рязанский аграрно-промышленный колледж', shortName: 'АПК', adminName: 'Ирина Петровна Смирнова',
            adminPhone: `8 (${d.slice(0, 3)}) ${d.slice(3, 6)}-${d.slice(6, 8)}-${d.slice(8)}`,
        });
        const app = await stack.post('/v1/org-applications', body);
        assert.equal(app.status, 201, app.text);
        assert.equal(app.json.status, 'pending', app.text);
        assert.equal(typeof app.json.id, 'string', app.text);

        // The operator sees it with what was sent (the phone normalised).
        const pending = expectStatus(await stack.get('/v1/org-applications?status=pending', { token: op.token }), 200);
        const mine = pending.items.find((x) => x.id === app.json.id);
        assert.ok(mine, `the application is listed as pending: ${JSON.stringify(pending)}`);
        assert.equal(mine.status, 'pending');
        assert.equal(mine.org_name, body.org_name);
        assert.equal(mine.short_name, 'АПК');
        assert.equal(mine.region, body.region);
        assert.deepEqual(mine.admin, { full_name: body.admin.full_name, phone: adminPhone, email: body.admin.email });
        assert.equal(mine.order_number, body.order_number);
        assert.equal(mine.order_date, body.order_date);
        assert.equal(mine.org_id, null);

        // Approval makes the org; approving again changes nothing and says so.
        const approved = expectStatus(await stack.post(`/v1/org-applications/${app.json.id}/approve`, undefined, { token: op.token }), 200);
        assert.match(String(approved.org_id), /^[0-9A-HJKMNP-TV-Z]{26}$/, JSON.stringify(approved));
        const again = await stack.post(`/v1/org-applications/${app.json.id}/approve`, undefined, { token: op.token });
        assertError(again, 409, 'application_approved', 'id', 'approving twice');
        assert.ok(again.json.error.message.includes(approved.org_id), 'the message names the organisation');
        const orgId = approved.org_id;
        const done = expectStatus(await stack.get('/v1/org-applications?status=approved', { token: op.token }), 200);
        const row = done.items.find((x) => x.id === app.json.id);
        assert.ok(row && row.status === 'approved' && row.org_id === orgId, JSON.stringify(done));
        const stillPending = expectStatus(await stack.get('/v1/org-applications?status=pending', { token: op.token }), 200);
        assert.ok(!stillPending.items.some((x) => x.id === app.json.id), 'no longer pending');

        // Whoever signs up with the phone of the application is the admin.
        const admin = await signUp(stack, { phone: adminPhone, fullName: 'Ирина Петровна Смирнова' });
        const adminMe = await me(stack, admin);
        assert.equal(adminMe.memberships.length, 1, JSON.stringify(adminMe));
        const ms = adminMe.memberships[0];
        assert.equal(ms.org_id, orgId);
        assert.equal(ms.org_name, body.org_name);
        assert.deepEqual(ms.roles, ['admin']);
        const t = admin.token;
        const org = { id: orgId, admin };

        // The card.
        const card0 = expectStatus(await stack.get(`/v1/orgs/${orgId}`, { token: t }), 200);
        assert.deepEqual(card0, {
            id: orgId, name: body.org_name, short_name: 'АПК', region: body.region,
            address: '', phone: '', email: '', website: '', description: '',
        });
        const patch = {
            address: 'г. Рязань, ул. Полевая, д. 1',
            phone: '8 999 555-12-34',
            email: 'priem@rapk.example',
            website: 'https://rapk.example',
            description: 'Колледж готовит механиков и агрономов.\nОчная и заочная формы обучения.',
        };
        const card = expectStatus(await stack.patch(`/v1/orgs/${orgId}`, patch, { token: t }), 200);
        assert.deepEqual(card, { ...card0, ...patch, phone: '+79995551234' }, 'the card as edited, the phone normalised');
        assertError(await stack.patch(`/v1/orgs/${orgId}`, { email: 'priem at rapk' }, { token: t }), 400, 'bad_request', 'email');
        assertError(await stack.patch(`/v1/orgs/${orgId}`, { website: 'ftp://rapk.example' }, { token: t }), 400, 'bad_request', 'website');
        assertError(await stack.patch(`/v1/orgs/${orgId}`, { email: 'x@y.example', website: 'javascript:alert(1)' }, { token: t }),
            400, 'bad_request', 'website');
        assert.deepEqual(expectStatus(await stack.get(`/v1/orgs/${orgId}`, { token: t }), 200), card,
            'the refused edits changed nothing (not even the valid e-mail sent with a bad website)');

        // Anyone signed in finds it by name, in any case.
        const other = await newOrg(stack, { orgName: 'Скопинский медицинский колледж', shortName: 'СМК' });
        const stranger = await signUp(stack, { fullName: 'Ищущий Колледж' });
        for (const q of ['АГРАРНО', 'аграрно', 'Аграрно-Промышленный']) {
            const found = expectStatus(await stack.get(`/v1/orgs?q=${encodeURIComponent(q)}`, { token: stranger.token }), 200);
            assert.deepEqual(found.items.filter((x) => x.id === orgId),
                [{ id: orgId, name: body.org_name, short_name: 'АПК', region: body.region }], `q=${q}: ${JSON.stringify(found)}`);
            assert.ok(!found.items.some((x) => x.id === other.id), `q=${q} does not find the medical college`);
        }

        // The staff group came with the org, named after the short name.
        const staffList = expectStatus(await stack.get(`/v1/orgs/${orgId}/units?kind=staff`, { token: t }), 200);
        assert.equal(staffList.items.length, 1, JSON.stringify(staffList));
        const staff = staffList.items[0];
        assert.equal(staff.kind, 'staff');
        assert.equal(staff.name, 'АПК');
        assert.equal(staff.archived, false);

        // Two departments, three groups with codes and years.
        const d1 = await newUnit(stack, org, { kind: 'department', name: 'Отделение механизации' });
        const d2 = await newUnit(stack, org, { kind: 'department', name: 'Отделение агрономии' });
        assert.equal(d1.kind, 'department');
        assert.equal(d1.parent_id, null);
        const g1 = await newUnit(stack, org, { kind: 'group', name: 'Группа ТМ-21', code: 'ТМ-21', year: 2, parent_id: d1.id });
        const g2 = await newUnit(stack, org, { kind: 'group', name: 'Группа ТМ-22', code: 'ТМ-22', year: 2, parent_id: d1.id });
        const g3 = await newUnit(stack, org, { kind: 'group', name: 'Группа АГ-11', code: 'АГ-11', year: 1, parent_id: d2.id });
        assert.deepEqual({ kind: g1.kind, code: g1.code, year: g1.year, parent_id: g1.parent_id, curator_id: g1.curator_id, member_count: g1.member_count },
            { kind: 'group', code: 'ТМ-21', year: 2, parent_id: d1.id, curator_id: null, member_count: 0 });
        const all = expectStatus(await stack.get(`/v1/orgs/${orgId}/units`, { token: t }), 200);
        assert.deepEqual(ids(all.items), [staff.id, d1.id, d2.id, g1.id, g2.id, g3.id].sort());
        const groups = expectStatus(await stack.get(`/v1/orgs/${orgId}/units?kind=group`, { token: t }), 200);
        assert.deepEqual(groups.items.map((u) => `${u.code}/${u.year}`).sort(), ['АГ-11/1', 'ТМ-21/2', 'ТМ-22/2']);
        const underD1 = expectStatus(await stack.get(`/v1/orgs/${orgId}/units?parent_id=${d1.id}`, { token: t }), 200);
        assert.deepEqual(ids(underD1.items), [g1.id, g2.id].sort());

        // A teacher: the role puts them into the staff group; verified; curator.
        const teacher = await signUp(stack, { fullName: 'Николай Васильевич Гоголев' });
        const granted = expectStatus(await stack.post(`/v1/orgs/${orgId}/members/${teacher.user.id}/roles`, { role: 'teacher' }, { token: t }), 200);
        assert.deepEqual(granted.roles, ['teacher']);
        assert.equal(granted.verified, false, 'a new teacher is unverified');
        assert.deepEqual(granted.units.map((u) => [u.id, u.kind]), [[staff.id, 'staff']], 'the teacher joined the staff group');
        const staffMembers = expectStatus(await stack.get(`/v1/orgs/${orgId}/units/${staff.id}/members`, { token: t }), 200);
        assert.deepEqual(staffMembers.items.map((m) => [m.user.id, m.role]), [[teacher.user.id, 'teacher']]);
        const verified = expectStatus(await stack.post(`/v1/orgs/${orgId}/members/${teacher.user.id}/verify`,
            { verified: true, note: 'приказ о приёме 12-к' }, { token: t }), 200);
        assert.equal(verified.verified, true);
        const curated = expectStatus(await stack.put(`/v1/orgs/${orgId}/units/${g1.id}/curator`, { user_id: teacher.user.id }, { token: t }), 200);
        assert.equal(curated.id, g1.id);
        assert.equal(curated.curator_id, teacher.user.id);
        const teacherMe = membershipIn(await me(stack, teacher), orgId);
        assert.deepEqual(teacherMe.roles, ['teacher']);
        assert.equal(teacherMe.verified, true);
        assert.ok(teacherMe.units.some((u) => u.id === staff.id && u.kind === 'staff'), JSON.stringify(teacherMe));

        // Students enrolled by movements with their orders.
        const s1 = await member(stack, org, 'student', 'Анна Студентова');
        const s2 = await member(stack, org, 'student', 'Борис Студентов');
        const s3 = await member(stack, org, 'student', 'Вера Студентова');
        for (const [s, g, order] of [[s1, g1, '45-у'], [s2, g1, '46-у'], [s3, g3, '47-у']]) {
            const m = await move(stack, org, { kind: 'enroll', user_id: s.user.id, unit_id: g.id, order_number: order, effective_date: '2026-09-01' });
            assert.equal(m.kind, 'enroll');
            assert.equal(m.user_id, s.user.id);
            assert.equal(m.unit_id, g.id);
            assert.equal(m.from_unit_id, null);
            assert.equal(m.order_number, order);
            assert.equal(m.effective_date, '2026-09-01');
            assert.equal(m.actor_id, admin.user.id);
        }
        const g1Members = expectStatus(await stack.get(`/v1/orgs/${orgId}/units/${g1.id}/members`, { token: t }), 200);
        assert.deepEqual(g1Members.items.map((m) => [m.user.id, m.role]).sort(), [[s1.user.id, 'student'], [s2.user.id, 'student']].sort());
        const s1Me = membershipIn(await me(stack, s1), orgId);
        assert.deepEqual(s1Me.units.map((u) => u.id), [g1.id], 'the student sees their group in GET /v1/me');

        // Parents: one linked by the admin, one by the curator of the student's group.
        const p1 = await member(stack, org, 'parent', 'Мать Анны');
        const p2 = await member(stack, org, 'parent', 'Отец Бориса');
        const link1 = expectStatus(await stack.post(`/v1/orgs/${orgId}/guardians`, { parent_id: p1.user.id, student_id: s1.user.id }, { token: t }), 201);
        assert.equal(link1.parent_id, p1.user.id);
        assert.equal(link1.student_id, s1.user.id);
        expectStatus(await stack.post(`/v1/orgs/${orgId}/guardians`, { parent_id: p2.user.id, student_id: s2.user.id },
            { token: teacher.token }), 201, 'the curator links a parent to a student of their group');
        assert.deepEqual(membershipIn(await me(stack, p1), orgId).students, [{ id: s1.user.id, full_name: 'Анна Студентова' }]);
        assert.deepEqual(membershipIn(await me(stack, p2), orgId).students, [{ id: s2.user.id, full_name: 'Борис Студентов' }]);

        // A transfer and an expulsion.
        const tr = await move(stack, org, { kind: 'transfer', user_id: s2.user.id, unit_id: g2.id, order_number: '51-у', effective_date: '2026-10-15', note: 'по заявлению' });
        assert.equal(tr.from_unit_id, g1.id);
        assert.equal(tr.unit_id, g2.id);
        const ex = await move(stack, org, { kind: 'expel', user_id: s3.user.id, order_number: '52-у', effective_date: '2026-10-20' });
        assert.equal(ex.kind, 'expel');
        assert.equal(ex.from_unit_id, g3.id);

        const members = async (g) => expectStatus(await stack.get(`/v1/orgs/${orgId}/units/${g.id}/members`, { token: t }), 200)
            .items.map((m) => m.user.id).sort();
        assert.deepEqual(await members(g1), [s1.user.id], 'ТМ-21 after the transfer');
        assert.deepEqual(await members(g2), [s2.user.id], 'ТМ-22 after the transfer');
        assert.deepEqual(await members(g3), [], 'АГ-11 after the expulsion');
        const counts = expectStatus(await stack.get(`/v1/orgs/${orgId}/units?kind=group`, { token: t }), 200);
        assert.deepEqual(Object.fromEntries(counts.items.map((u) => [u.code, u.member_count])), { 'ТМ-21': 1, 'ТМ-22': 1, 'АГ-11': 0 });

        const moves = expectStatus(await stack.get(`/v1/orgs/${orgId}/movements`, { token: t }), 200);
        const summary = moves.items.map((m) => `${m.kind} ${m.user_id} ${m.from_unit_id || '-'}>${m.unit_id || '-'} ${m.order_number} ${m.effective_date}`).sort();
        assert.deepEqual(summary, [
            `enroll ${s1.user.id} ->${g1.id} 45-у 2026-09-01`,
            `enroll ${s2.user.id} ->${g1.id} 46-у 2026-09-01`,
            `enroll ${s3.user.id} ->${g3.id} 47-у 2026-09-01`,
            `transfer ${s2.user.id} ${g1.id}>${g2.id} 51-у 2026-10-15`,
            `expel ${s3.user.id} ${g3.id}>- 52-у 2026-10-20`,
        ].sort());
        const s2Moves = expectStatus(await stack.get(`/v1/orgs/${orgId}/movements?user_id=${s2.user.id}`, { token: t }), 200);
        assert.deepEqual(s2Moves.items.map((m) => m.kind).sort(), ['enroll', 'transfer']);

        // What the people themselves see now.
        assert.deepEqual(membershipIn(await me(stack, s2), orgId).units.map((u) => u.id), [g2.id], 'the transferred student is in ТМ-22');
        const s3Ms = membershipIn(await me(stack, s3), orgId);
        assert.ok(!s3Ms || !s3Ms.roles.includes('student'), `the expelled student is no longer a student: ${JSON.stringify(s3Ms)}`);
        const list = expectStatus(await stack.get(`/v1/orgs/${orgId}/members?role=student`, { token: t }), 200);
        assert.deepEqual(ids(list.items), [s1.user.id, s2.user.id].sort(), 'the students of the org');
        assert.deepEqual(membershipIn(await me(stack, p2), orgId).students, [{ id: s2.user.id, full_name: 'Борис Студентов' }],
            'the parent stays linked after the transfer');
    });

    it('the org\'s events are published: their consumer (the chat service) keeps the automatic chats in step', async () => {
        // Events cannot be read from outside; the chats made from them can
        // (API.md "Automatic chats"). Each step waits, bounded, for the chat
        // service to have seen the event.
        const org = await newOrg(stack, { orgName: 'Колледж Событий', shortName: 'КС' });
        const t = org.admin.token;
        const chatsOf = async (who) => expectStatus(await stack.get('/v1/chats?limit=200', { token: who.token }), 200).items
            .filter((c) => c.org_id === org.id);
        const eventually = async (who, pred, what) => {
            let last = [];
            const ok = await waitFor(async () => { last = await chatsOf(who); return pred(last); }, { timeoutMs: 10000, intervalMs: 100 });
            assert.ok(ok, `${what}; the chats seen: ${JSON.stringify(last.map((c) => [c.kind, c.audience, c.unit_id, c.title]))}\n` +
                stack.logTails(10, ['org', 'chat']));
        };
        const groupChat = (g, audience = 'students') => (cs) => cs.some((c) => c.unit_id === g.id && c.audience === audience);
        // org.created: the general and the staff channel.
        await eventually(org.admin, (cs) => cs.some((c) => c.audience === 'all') && cs.some((c) => c.audience === 'staff'),
            'the admin sees the general and the staff channel');
        const g1 = await newUnit(stack, org, { kind: 'group', name: 'Группа СБ-11', code: 'СБ-11', year: 1 });
        const g2 = await newUnit(stack, org, { kind: 'group', name: 'Группа СБ-12', code: 'СБ-12', year: 1 });
        // org.curator.set
        const cur = await member(stack, org, 'teacher', 'Куратор Событий');
        expectStatus(await stack.put(`/v1/orgs/${org.id}/units/${g1.id}/curator`, { user_id: cur.user.id }, { token: t }), 200);
        await eventually(cur, groupChat(g1), 'the curator is in the group chat of СБ-11');
        // org.unit.member_added (enroll)
        const s = await member(stack, org, 'student', 'Студент Событий');
        const s2 = await member(stack, org, 'student', 'Второй Студент Событий');
        await move(stack, org, { kind: 'enroll', user_id: s.user.id, unit_id: g1.id, order_number: '1-с' });
        await move(stack, org, { kind: 'enroll', user_id: s2.user.id, unit_id: g1.id, order_number: '2-с' });
        await eventually(s, groupChat(g1), 'the enrolled student is in the group chat of СБ-11');
        // org.guardian.linked
        const p = await member(stack, org, 'parent', 'Родитель Событий');
        expectStatus(await stack.post(`/v1/orgs/${org.id}/guardians`, { parent_id: p.user.id, student_id: s.user.id }, { token: t }), 201);
        await eventually(p, groupChat(g1, 'parents'), 'the linked parent is in the parents chat of СБ-11');
        // org.movement.recorded (transfer): out of СБ-11, into СБ-12.
        await move(stack, org, { kind: 'transfer', user_id: s.user.id, unit_id: g2.id, order_number: '3-с' });
        await eventually(s, (cs) => groupChat(g2)(cs) && !groupChat(g1)(cs), 'the transferred student moved from the chat of СБ-11 to СБ-12');
        // expel: out of every group chat.
        await move(stack, org, { kind: 'expel', user_id: s2.user.id, order_number: '4-с' });
        await eventually(s2, (cs) => !cs.some((c) => c.unit_id), 'the expelled student left the group chat');
    });

    it('rejecting needs a reason; a rejected application cannot be approved; an approved one cannot be rejected', async () => {
        const op = await operator(stack);
        const adminPhone = newPhone();
        const app = expectStatus(await stack.post('/v1/org-applications',
            application({ orgName: 'Техникум-однодневка', shortName: 'ТО', adminPhone })), 201);
        for (const body of [undefined, {}, { reason: '' }, { reason: '   ' }])
            assertError(await stack.post(`/v1/org-applications/${app.id}/reject`, body, { token: op.token }), 400, 'bad_request', 'reason',
                `reject with ${JSON.stringify(body)}`);
        const pending = expectStatus(await stack.get('/v1/org-applications?status=pending', { token: op.token }), 200);
        assert.ok(pending.items.some((x) => x.id === app.id), 'still pending after the refused rejections');

        const rej = expectStatus(await stack.post(`/v1/org-applications/${app.id}/reject`, { reason: 'Нет лицензии на образовательную деятельность' },
            { token: op.token }), 200);
        assert.equal(rej.status, 'rejected', JSON.stringify(rej));
        assert.equal(rej.reason, 'Нет лицензии на образовательную деятельность');
        assertError(await stack.post(`/v1/org-applications/${app.id}/approve`, undefined, { token: op.token }), 409, 'application_rejected');
        const rejected = expectStatus(await stack.get('/v1/org-applications?status=rejected', { token: op.token }), 200);
        const row = rejected.items.find((x) => x.id === app.id);
        assert.ok(row && row.org_id === null, `rejected and no org: ${JSON.stringify(row)}`);
        // Its admin phone gives no role to whoever signs up with it.
        const would = await signUp(stack, { phone: adminPhone, fullName: 'Несостоявшийся Админ' });
        assert.deepEqual((await me(stack, would)).memberships, []);
        const found = expectStatus(await stack.get(`/v1/orgs?q=${encodeURIComponent('однодневка')}`, { token: would.token }), 200);
        assert.deepEqual(found.items, [], 'no org was made');

        const ok = await newOrg(stack, { orgName: 'Сасовский колледж', shortName: 'СК' });
        assertError(await stack.post(`/v1/org-applications/${ok.appId}/reject`, { reason: 'передумали' }, { token: op.token }),
            409, 'application_approved');
        assert.deepEqual(membershipIn(await me(stack, ok.admin), ok.id).roles, ['admin'], 'the org and its admin remain');
        assertError(await stack.post(`/v1/org-applications/${NO_SUCH_ID}/approve`, undefined, { token: op.token }), 404, undefined, 'id');
        assertError(await stack.post(`/v1/org-applications/not-an-id/approve`, undefined, { token: op.token }), 400, 'bad_request', 'id');
    });

    it('approving twice makes one org and one admin role: the second approval is 409 application_approved and changes nothing', async () => {
        const op = await operator(stack);
        const adminPhone = newPhone();
        const app = expectStatus(await stack.post('/v1/org-applications',
            application({ orgName: 'Шацкий уникальный лицей', shortName: 'ШУЛ', adminPhone })), 201);
        const replies = [expectStatus(await stack.post(`/v1/org-applications/${app.id}/approve`, undefined, { token: op.token }), 200)];
        for (let i = 0; i < 2; i++)
            assertError(await stack.post(`/v1/org-applications/${app.id}/approve`, undefined, { token: op.token }),
                409, 'application_approved', 'id', `approving again (#${i + 2})`);
        const admin = await signUp(stack, { phone: adminPhone, fullName: 'Единственный Админ' });
        const found = expectStatus(await stack.get(`/v1/orgs?q=${encodeURIComponent('шацкий уникальный')}`, { token: admin.token }), 200);
        assert.deepEqual(found.items.map((x) => x.id), [replies[0].org_id], 'one org by that name');
        const mine = (await me(stack, admin)).memberships;
        assert.deepEqual(mine.map((m) => [m.org_id, m.roles]), [[replies[0].org_id, ['admin']]]);
        const members = expectStatus(await stack.get(`/v1/orgs/${replies[0].org_id}/members`, { token: admin.token }), 200);
        assert.deepEqual(members.items.map((m) => [m.user.id, m.roles]), [[admin.user.id, ['admin']]]);
        const staff = expectStatus(await stack.get(`/v1/orgs/${replies[0].org_id}/units`, { token: admin.token }), 200);
        assert.deepEqual(staff.items.map((u) => u.kind), ['staff'], 'one staff group');
    });

    it('bad applications are 400 naming the field, and nothing is stored', async () => {
        const op = await operator(stack);
        const good = application({ orgName: 'Колледж Для Проверки Полей', shortName: 'КПП', adminPhone: newPhone() });
        const cases = [
            [{ ...good, org_name: '' }, 'org_name'],
            [{ ...good, admin: undefined }, 'admin'],
            [{ ...good, admin: { ...good.admin, phone: '12345' } }, 'admin.phone'],
            [{ ...good, admin: { ...good.admin, email: 'not-an-email' } }, 'admin.email'],
            [{ ...good, admin: { ...good.admin, full_name: '' } }, 'admin.full_name'],
            [{ ...good, order_number: '' }, 'order_number'],
            [{ ...good, order_date: '25.08.2026' }, 'order_date'],
            [{ ...good, inn: '12ab' }, 'inn'],
            [{ ...good, extra: 1 }, 'extra'],
            // Names are at most 200 characters (API.md, Conventions).
            [{ ...good, org_name: 'Я'.repeat(201) }, 'org_name'],
        ];
        for (const [body, field] of cases)
            assertError(await stack.post('/v1/org-applications', body), 400, 'bad_request', field, `field ${field}`);
        const all = expectStatus(await stack.get('/v1/org-applications?limit=200', { token: op.token }), 200);
        assert.ok(!all.items.some((x) => x.org_name === good.org_name || x.org_name === 'Я'.repeat(201)), 'nothing stored');

        // 200 characters are a name.
        const longest = { ...good, org_name: 'Я'.repeat(200) };
        const app = expectStatus(await stack.post('/v1/org-applications', longest), 201, 'an org_name of 200 characters');
        const after = expectStatus(await stack.get('/v1/org-applications?status=pending&limit=200', { token: op.token }), 200);
        assert.deepEqual(after.items.filter((x) => x.id === app.id).map((x) => x.org_name), ['Я'.repeat(200)],
            'stored with its name whole');
    });

    it('the card\'s name is at most 200 characters: 201 is 400 naming `name` and changes nothing, 200 is taken', async () => {
        const org = await newOrg(stack, { orgName: 'Колледж Длинных Названий', shortName: 'КДН' });
        const t = { token: org.admin.token };
        const card = expectStatus(await stack.get(`/v1/orgs/${org.id}`, t), 200);
        assertError(await stack.patch(`/v1/orgs/${org.id}`, { name: 'Я'.repeat(201) }, t), 400, 'bad_request', 'name', '201 characters');
        assertError(await stack.patch(`/v1/orgs/${org.id}`, { name: 'Я'.repeat(201), region: 'Тульская область' }, t), 400, 'bad_request', 'name',
            '201 characters with a valid region');
        assert.deepEqual(expectStatus(await stack.get(`/v1/orgs/${org.id}`, t), 200), card, 'the refused edits changed nothing');
        const edited = expectStatus(await stack.patch(`/v1/orgs/${org.id}`, { name: 'Я'.repeat(200) }, t), 200, '200 characters');
        assert.deepEqual(edited, { ...card, name: 'Я'.repeat(200) });
        assert.deepEqual(expectStatus(await stack.get(`/v1/orgs/${org.id}`, t), 200), edited);
    });
});

// The movements other than enroll, transfer and expel, un-verifying a
// teacher and taking roles away: each read back whole through the API
// (unit members, the members list, GET /v1/me, the movement records), and
// the events they publish seen through the chat service, as above.
describe('the rest of a year: hire, dismiss, leave and return, graduate; verification and roles taken away', { timeout: 600000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    const verify = async (org, who, verified, note) => expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${who.user.id}/verify`,
        note === undefined ? { verified } : { verified, note }, { token: org.admin.token }), 200, `verify ${verified}`);
    const setCurator = async (org, unit, who) => expectStatus(await stack.put(`/v1/orgs/${org.id}/units/${unit.id}/curator`,
        { user_id: who.user.id }, { token: org.admin.token }), 200, 'set the curator');
    const link = async (org, parent, student) => expectStatus(await stack.post(`/v1/orgs/${org.id}/guardians`,
        { parent_id: parent.user.id, student_id: student.user.id }, { token: org.admin.token }), 201, 'link a parent');

    it('hire: a member of the college becomes a teacher in the staff group; hiring someone who is a teacher already adds nothing; each recorded with its order', async () => {
        const org = await newOrg(stack, { orgName: 'Колледж Приёма На Работу', shortName: 'КПР' });
        const t = { token: org.admin.token };
        // A mother of a student, a parent of the college, is hired as a teacher.
        const p = await member(stack, org, 'parent', 'Мария Новикова');
        const hired = await move(stack, org, { kind: 'hire', user_id: p.user.id, order_number: '12-к', effective_date: '2026-09-01',
            note: 'учитель физики' });
        assertMovement(hired, { kind: 'hire', user_id: p.user.id, unit_id: org.staffId, from_unit_id: null, order_number: '12-к',
            effective_date: '2026-09-01', note: 'учитель физики', actor_id: org.admin.user.id });
        assert.deepEqual(await memberRow(stack, org, p), { user: person(p, 'Мария Новикова'), roles: ['parent', 'teacher'], verified: false,
            units: [staffRef(org)] }, 'a teacher now, unverified, in the staff group');
        assert.deepEqual(await myMembership(stack, org, p), { org_id: org.id, org_name: org.name, roles: ['parent', 'teacher'], verified: false,
            units: [staffRef(org)], students: [] });
        assert.deepEqual(await unitMembers(stack, org, org.staffId), [[p.user.id, 'teacher']]);
        assert.equal((await unitRow(stack, org, org.staffId)).member_count, 1);
        assert.deepEqual(await movementsOf(stack, org, p), [hired]);
        // org.unit.member_added (staff): the staff channel.
        await eventuallyChats(stack, org, p, (cs) => cs.some((c) => c.audience === 'staff' && !c.unit_id), 'the hired teacher is in the staff channel');

        // A teacher by role already: the hire is recorded, the staff group has them once.
        const t0 = await member(stack, org, 'teacher', 'Олег Физиков');
        const again = await move(stack, org, { kind: 'hire', user_id: t0.user.id, order_number: '13-к', effective_date: '2026-09-02' });
        assertMovement(again, { kind: 'hire', user_id: t0.user.id, unit_id: org.staffId, from_unit_id: null, order_number: '13-к',
            effective_date: '2026-09-02', note: '', actor_id: org.admin.user.id });
        assert.deepEqual(await unitMembers(stack, org, org.staffId), [[p.user.id, 'teacher'], [t0.user.id, 'teacher']].sort());
        assert.equal((await unitRow(stack, org, org.staffId)).member_count, 2);
        assert.deepEqual(await memberRow(stack, org, t0), { user: person(t0, 'Олег Физиков'), roles: ['teacher'], verified: false,
            units: [staffRef(org)] });
        assert.deepEqual(await movementsOf(stack, org, t0), [again]);

        // Not into a group; not someone outside the college: nothing recorded.
        const g = await newUnit(stack, org, { kind: 'group', name: 'Группа ФЗ-11', code: 'ФЗ-11', year: 1 });
        const s = await member(stack, org, 'student', 'Студент Не Учитель');
        const outsider = await signUp(stack, { fullName: 'Соискатель Со Стороны' });
        const before = await snapshot(stack, org);
        assertError(await stack.post(`/v1/orgs/${org.id}/movements`, { kind: 'hire', user_id: s.user.id, unit_id: g.id }, t), 400,
            'bad_request', 'unit_id', 'hire into a group');
        assertError(await stack.post(`/v1/orgs/${org.id}/movements`, { kind: 'hire', user_id: outsider.user.id }, t), 404,
            'not_a_member', 'user_id', 'hire of someone outside the college');
        assert.deepEqual(await snapshot(stack, org), before);
    });

    it('dismiss: the teacher loses the role, leaves the staff group and every curatorship (and their chats); recorded with its order', async () => {
        const org = await newOrg(stack, { orgName: 'Колледж Увольнений', shortName: 'КУ' });
        const t = { token: org.admin.token };
        const g1 = await newUnit(stack, org, { kind: 'group', name: 'Группа УВ-11', code: 'УВ-11', year: 1 });
        const g2 = await newUnit(stack, org, { kind: 'group', name: 'Группа УВ-12', code: 'УВ-12', year: 1 });
        const g3 = await newUnit(stack, org, { kind: 'group', name: 'Группа УВ-21', code: 'УВ-21', year: 2 });
        // t1 teaches only; t2 is also in the administration.
        const t1 = await member(stack, org, 'teacher', 'Анна Уходящая');
        const t2 = await member(stack, org, 'administration', 'Борис Завучев');
        expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${t2.user.id}/roles`, { role: 'teacher' }, t), 200);
        await verify(org, t1, true);
        await verify(org, t2, true);
        await setCurator(org, g1, t1);
        await setCurator(org, g2, t1);
        await setCurator(org, g3, t2);
        const s = await member(stack, org, 'student', 'Студент Остающийся');
        await move(stack, org, { kind: 'enroll', user_id: s.user.id, unit_id: g1.id, order_number: '1-у' });
        await eventuallyChats(stack, org, t1, (cs) => inChat(g1, 'students')(cs) && inChat(g2, 'students')(cs) && inChat(g1, 'parents')(cs)
            && cs.some((c) => c.audience === 'staff'), 'the curator is in the chats of both groups and the staff channel');
        await eventuallyChats(stack, org, t2, (cs) => inChat(g3, 'students')(cs) && cs.some((c) => c.audience === 'staff'),
            'the other curator is in the chat of УВ-21');

        const d1 = await move(stack, org, { kind: 'dismiss', user_id: t1.user.id, order_number: '30-к', effective_date: '2026-12-31',
            note: 'по собственному желанию' });
        assertMovement(d1, { kind: 'dismiss', user_id: t1.user.id, unit_id: null, from_unit_id: null, order_number: '30-к',
            effective_date: '2026-12-31', note: 'по собственному желанию', actor_id: org.admin.user.id });
        const d2 = await move(stack, org, { kind: 'dismiss', user_id: t2.user.id, order_number: '31-к', effective_date: '2027-01-15' });
        assertMovement(d2, { kind: 'dismiss', user_id: t2.user.id, unit_id: null, from_unit_id: null, order_number: '31-к',
            effective_date: '2027-01-15', note: '', actor_id: org.admin.user.id });

        for (const g of [g1, g2, g3]) assert.equal((await unitRow(stack, org, g)).curator_id, null, `${g.code} has no curator`);
        assert.deepEqual(await unitMembers(stack, org, org.staffId), [], 'nobody left in the staff group');
        assert.equal((await unitRow(stack, org, org.staffId)).member_count, 0);
        assert.deepEqual(await unitMembers(stack, org, g1), [[s.user.id, 'student']], 'the group keeps its student');
        // t1 had nothing else here: no longer a member at all.
        assert.equal(await memberRow(stack, org, t1), undefined, 'the dismissed teacher is not in the members list');
        assert.equal(await myMembership(stack, org, t1), undefined, 'nor in their own GET /v1/me');
        assertError(await stack.get(`/v1/orgs/${org.id}`, { token: t1.token }), 404, undefined, undefined, 'and reads nothing of the college');
        // t2 stays in the administration.
        assert.deepEqual(await memberRow(stack, org, t2), { user: person(t2, 'Борис Завучев'), roles: ['administration'], verified: false,
            units: [] });
        assert.deepEqual(await myMembership(stack, org, t2), { org_id: org.id, org_name: org.name, roles: ['administration'], verified: false,
            units: [], students: [] });
        assert.deepEqual(await movementsOf(stack, org, t1), [d1]);
        assert.deepEqual(await movementsOf(stack, org, t2), [d2]);
        // org.curator.unset and org.unit.member_removed reached the chats.
        await eventuallyChats(stack, org, t1, (cs) => cs.length === 0, 'the dismissed teacher left every chat of the college');
        await eventuallyChats(stack, org, t2, (cs) => noUnitChat(cs) && cs.some((c) => c.audience === 'staff'),
            'the administrator left the group chats and stays in the staff channel');
        // Not twice.
        assertError(await stack.post(`/v1/orgs/${org.id}/movements`, { kind: 'dismiss', user_id: t2.user.id }, t), 409, 'not_a_teacher', 'user_id');
        assert.deepEqual(await movementsOf(stack, org, t2), [d2]);
    });

    it('academic leave and return: the student leaves the group but stays a student (and linked to the parent), then comes back; each recorded', async () => {
        const org = await newOrg(stack, { orgName: 'Колледж Академических Отпусков', shortName: 'КАО' });
        const t = { token: org.admin.token };
        const g1 = await newUnit(stack, org, { kind: 'group', name: 'Группа АО-21', code: 'АО-21', year: 2 });
        const g2 = await newUnit(stack, org, { kind: 'group', name: 'Группа АО-22', code: 'АО-22', year: 2 });
        const s1 = await member(stack, org, 'student', 'Дарья Отпускная');
        const s2 = await member(stack, org, 'student', 'Егор Отпускной');
        const e1 = await move(stack, org, { kind: 'enroll', user_id: s1.user.id, unit_id: g1.id, order_number: '1-у', effective_date: '2026-09-01' });
        const e2 = await move(stack, org, { kind: 'enroll', user_id: s2.user.id, unit_id: g1.id, order_number: '2-у', effective_date: '2026-09-01' });
        const p = await member(stack, org, 'parent', 'Мать Дарьи');
        await link(org, p, s1);
        await eventuallyChats(stack, org, s1, inChat(g1, 'students'), 'the student is in the group chat');
        await eventuallyChats(stack, org, p, inChat(g1, 'parents'), 'the parent is in the parents chat');

        // Leave: out of the group, still a student, still their mother's child.
        const lv = await move(stack, org, { kind: 'leave', user_id: s1.user.id, order_number: '40-у', effective_date: '2027-01-10',
            note: 'по состоянию здоровья' });
        assertMovement(lv, { kind: 'leave', user_id: s1.user.id, unit_id: null, from_unit_id: g1.id, order_number: '40-у',
            effective_date: '2027-01-10', note: 'по состоянию здоровья', actor_id: org.admin.user.id });
        assert.deepEqual(await unitMembers(stack, org, g1), [[s2.user.id, 'student']]);
        assert.equal((await unitRow(stack, org, g1)).member_count, 1);
        assert.deepEqual(await memberRow(stack, org, s1), { user: person(s1, 'Дарья Отпускная'), roles: ['student'], verified: false, units: [] });
        assert.deepEqual(await myMembership(stack, org, s1), { org_id: org.id, org_name: org.name, roles: ['student'], verified: false,
            units: [], students: [] });
        assert.deepEqual((await myMembership(stack, org, p)).students, [{ id: s1.user.id, full_name: 'Дарья Отпускная' }]);
        await eventuallyChats(stack, org, s1, notInChat(g1, 'students'), 'the student on leave left the group chat');
        await eventuallyChats(stack, org, p, notInChat(g1, 'parents'), 'and the mother the parents chat');
        // On leave, no transfer and no second leave.
        assertError(await stack.post(`/v1/orgs/${org.id}/movements`, { kind: 'transfer', user_id: s1.user.id, unit_id: g2.id }, t),
            409, 'not_in_group', 'user_id', 'a transfer while on leave');
        assertError(await stack.post(`/v1/orgs/${org.id}/movements`, { kind: 'leave', user_id: s1.user.id }, t),
            409, 'not_in_group', 'user_id', 'a second leave');

        // Return, without naming the group: back into the group they left.
        const rt = await move(stack, org, { kind: 'return', user_id: s1.user.id, order_number: '41-у', effective_date: '2027-09-01' });
        assertMovement(rt, { kind: 'return', user_id: s1.user.id, unit_id: g1.id, from_unit_id: null, order_number: '41-у',
            effective_date: '2027-09-01', note: '', actor_id: org.admin.user.id });
        assert.deepEqual(await unitMembers(stack, org, g1), [[s1.user.id, 'student'], [s2.user.id, 'student']].sort());
        assert.equal((await unitRow(stack, org, g1)).member_count, 2);
        assert.deepEqual(await memberRow(stack, org, s1), { user: person(s1, 'Дарья Отпускная'), roles: ['student'], verified: false,
            units: [unitRef(g1)] });
        assert.deepEqual((await myMembership(stack, org, s1)).units, [unitRef(g1)]);
        await eventuallyChats(stack, org, s1, inChat(g1, 'students'), 'the returned student is back in the group chat');
        await eventuallyChats(stack, org, p, inChat(g1, 'parents'), 'and the mother in the parents chat');
        assertError(await stack.post(`/v1/orgs/${org.id}/movements`, { kind: 'return', user_id: s1.user.id }, t),
            409, 'already_in_group', 'user_id', 'a return of a student in a group');
        assert.deepEqual(await movementsOf(stack, org, s1), [e1, lv, rt]);

        // Another leave, and a return into another group named by the order.
        const lv2 = await move(stack, org, { kind: 'leave', user_id: s2.user.id, order_number: '42-у', effective_date: '2027-02-01' });
        assertMovement(lv2, { kind: 'leave', user_id: s2.user.id, unit_id: null, from_unit_id: g1.id, order_number: '42-у',
            effective_date: '2027-02-01', note: '', actor_id: org.admin.user.id });
        const rt2 = await move(stack, org, { kind: 'return', user_id: s2.user.id, unit_id: g2.id, order_number: '43-у',
            effective_date: '2027-09-01' });
        assertMovement(rt2, { kind: 'return', user_id: s2.user.id, unit_id: g2.id, from_unit_id: null, order_number: '43-у',
            effective_date: '2027-09-01', note: '', actor_id: org.admin.user.id });
        assert.deepEqual(await unitMembers(stack, org, g1), [[s1.user.id, 'student']]);
        assert.deepEqual(await unitMembers(stack, org, g2), [[s2.user.id, 'student']]);
        assert.deepEqual((await myMembership(stack, org, s2)).units, [unitRef(g2)]);
        assert.deepEqual(await movementsOf(stack, org, s2), [e2, lv2, rt2]);
        await eventuallyChats(stack, org, s2, (cs) => inChat(g2, 'students')(cs) && !inChat(g1, 'students')(cs),
            'the second student is in the chat of АО-22, not АО-21');
    });

    it('graduate: the student leaves the group and stops being a student, the parent is unlinked; recorded with its order', async () => {
        const org = await newOrg(stack, { orgName: 'Колледж Выпускников', shortName: 'КВ' });
        const t = { token: org.admin.token };
        const g = await newUnit(stack, org, { kind: 'group', name: 'Группа ВП-41', code: 'ВП-41', year: 4 });
        const s1 = await member(stack, org, 'student', 'Жанна Выпускница');
        const s2 = await member(stack, org, 'student', 'Зиновий Второгодник');
        const e1 = await move(stack, org, { kind: 'enroll', user_id: s1.user.id, unit_id: g.id, order_number: '1-у' });
        await move(stack, org, { kind: 'enroll', user_id: s2.user.id, unit_id: g.id, order_number: '2-у' });
        const p = await member(stack, org, 'parent', 'Отец Жанны');
        await link(org, p, s1);
        await eventuallyChats(stack, org, s1, inChat(g, 'students'), 'the student is in the group chat');
        await eventuallyChats(stack, org, p, inChat(g, 'parents'), 'the parent is in the parents chat');

        const gr = await move(stack, org, { kind: 'graduate', user_id: s1.user.id, order_number: '50-у', effective_date: '2027-06-30',
            note: 'диплом с отличием' });
        assertMovement(gr, { kind: 'graduate', user_id: s1.user.id, unit_id: null, from_unit_id: g.id, order_number: '50-у',
            effective_date: '2027-06-30', note: 'диплом с отличием', actor_id: org.admin.user.id });
        assert.deepEqual(await unitMembers(stack, org, g), [[s2.user.id, 'student']]);
        assert.equal((await unitRow(stack, org, g)).member_count, 1);
        assert.equal(await memberRow(stack, org, s1), undefined, 'the graduate is not in the members list');
        const students = expectStatus(await stack.get(`/v1/orgs/${org.id}/members?role=student`, t), 200);
        assert.deepEqual(ids(students.items), [s2.user.id]);
        assert.equal(await myMembership(stack, org, s1), undefined, 'nor in their own GET /v1/me');
        assert.deepEqual(await myMembership(stack, org, p), { org_id: org.id, org_name: org.name, roles: ['parent'], verified: false,
            units: [], students: [] }, 'the father is no longer linked');
        assert.deepEqual(await movementsOf(stack, org, s1), [e1, gr]);
        await eventuallyChats(stack, org, s1, (cs) => cs.length === 0, 'the graduate left every chat of the college');
        await eventuallyChats(stack, org, p, notInChat(g, 'parents'), 'the father left the parents chat');
        assertError(await stack.post(`/v1/orgs/${org.id}/movements`, { kind: 'graduate', user_id: s1.user.id }, t), 404, 'not_a_member',
            'user_id', 'graduating twice');
        assert.deepEqual(await movementsOf(stack, org, s1), [e1, gr]);
    });

    it('un-verifying a teacher: verified false in the reply, the members list and GET /v1/me, the rest as it was; they no longer bring students into chats', async () => {
        const org = await newOrg(stack, { orgName: 'Колледж Проверок', shortName: 'КП' });
        const t = { token: org.admin.token };
        const g = await newUnit(stack, org, { kind: 'group', name: 'Группа ПР-11', code: 'ПР-11', year: 1 });
        const teacher = await member(stack, org, 'teacher', 'Игорь Непроверенный');
        const s = await member(stack, org, 'student', 'Студент Проверок');
        await move(stack, org, { kind: 'enroll', user_id: s.user.id, unit_id: g.id });
        const verified = await verify(org, teacher, true, 'диплом проверен');
        const row = (v) => ({ user: person(teacher, 'Игорь Непроверенный'), roles: ['teacher'], verified: v, units: [staffRef(org)] });
        assert.deepEqual(verified, row(true));
        await setCurator(org, g, teacher);
        assert.deepEqual(await memberRow(stack, org, teacher), row(true));
        assert.equal((await myMembership(stack, org, teacher)).verified, true);
        // A verified teacher makes a chat with a group's students (once the gateway knows).
        const subjectChat = () => stack.post(`/v1/orgs/${org.id}/chats`, { kind: 'group', title: 'Физика ПР-11', unit_id: g.id, audience: 'students' },
            { token: teacher.token });
        let res;
        assert.ok(await waitFor(async () => { res = await subjectChat(); return res.status === 201; }),
            `a verified teacher makes a chat with students: ${res && res.status} ${res && res.text}`);

        const unverified = await verify(org, teacher, false, 'диплом не подтверждён');
        assert.deepEqual(unverified, row(false));
        assert.deepEqual(await memberRow(stack, org, teacher), row(false));
        assert.deepEqual(await myMembership(stack, org, teacher), { org_id: org.id, org_name: org.name, roles: ['teacher'], verified: false,
            units: [staffRef(org)], students: [] });
        assert.equal((await unitRow(stack, org, g)).curator_id, teacher.user.id, 'still the curator');
        assert.deepEqual(await unitMembers(stack, org, org.staffId), [[teacher.user.id, 'teacher']], 'still in the staff group');
        assert.deepEqual(await movementsOf(stack, org, teacher), [], 'verification is not a movement');
        // Policy: only a verified teacher (or an admin) brings students into a chat.
        assert.ok(await waitFor(async () => { res = await subjectChat(); return res.status === 403; }),
            `an unverified teacher is refused a chat with students: ${res && res.status} ${res && res.text}`);
        assertError(res, 403, 'forbidden');
        // Again: the same answer; a student cannot be (un)verified.
        assert.deepEqual(await verify(org, teacher, false), row(false));
        assertError(await stack.post(`/v1/orgs/${org.id}/members/${s.user.id}/verify`, { verified: false }, t), 409, 'not_a_teacher', 'user_id');
        assert.deepEqual(await memberRow(stack, org, teacher), row(false));
    });

    it('taking the teacher role away: out of the staff group, no curatorship, not a member any more; re-granted, they start unverified', async () => {
        const org = await newOrg(stack, { orgName: 'Колледж Снятых Ролей', shortName: 'КСР' });
        const t = { token: org.admin.token };
        const g = await newUnit(stack, org, { kind: 'group', name: 'Группа СР-11', code: 'СР-11', year: 1 });
        const teacher = await member(stack, org, 'teacher', 'Кира Бывшая');
        await verify(org, teacher, true);
        await setCurator(org, g, teacher);
        const s = await member(stack, org, 'student', 'Студент Ролей');
        await move(stack, org, { kind: 'enroll', user_id: s.user.id, unit_id: g.id });
        await eventuallyChats(stack, org, teacher, (cs) => inChat(g, 'students')(cs) && inChat(g, 'parents')(cs), 'the curator is in the group chats');

        const res = await stack.del(`/v1/orgs/${org.id}/members/${teacher.user.id}/roles/teacher`, t);
        assert.equal(res.status, 204, res.text);
        assert.equal((await unitRow(stack, org, g)).curator_id, null, 'the group has no curator');
        assert.deepEqual(await unitMembers(stack, org, org.staffId), []);
        assert.equal((await unitRow(stack, org, org.staffId)).member_count, 0);
        assert.equal(await memberRow(stack, org, teacher), undefined);
        assert.equal(await myMembership(stack, org, teacher), undefined);
        assert.deepEqual(await movementsOf(stack, org, teacher), [], 'taking a role is not a movement');
        await eventuallyChats(stack, org, teacher, (cs) => cs.length === 0, 'the former teacher left every chat of the college');
        assertError(await stack.del(`/v1/orgs/${org.id}/members/${teacher.user.id}/roles/teacher`, t), 404, undefined, undefined,
            'taking it twice');

        const again = expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${teacher.user.id}/roles`, { role: 'teacher' }, t), 200);
        assert.deepEqual(again, { user: person(teacher, 'Кира Бывшая'), roles: ['teacher'], verified: false, units: [staffRef(org)] },
            'the verification went with the role');
        assert.equal((await unitRow(stack, org, g)).curator_id, null, 'nor does the curatorship come back');
    });

    it('taking the student role away: out of the group, the parents unlinked, not a member any more', async () => {
        const org = await newOrg(stack, { orgName: 'Колледж Отчислений Без Приказа', shortName: 'КОБП' });
        const t = { token: org.admin.token };
        const g = await newUnit(stack, org, { kind: 'group', name: 'Группа ОБ-11', code: 'ОБ-11', year: 1 });
        const s1 = await member(stack, org, 'student', 'Лев Ушедший');
        const s2 = await member(stack, org, 'student', 'Майя Оставшаяся');
        const e1 = await move(stack, org, { kind: 'enroll', user_id: s1.user.id, unit_id: g.id });
        await move(stack, org, { kind: 'enroll', user_id: s2.user.id, unit_id: g.id });
        const p = await member(stack, org, 'parent', 'Мать Льва');
        await link(org, p, s1);
        await eventuallyChats(stack, org, s1, inChat(g, 'students'), 'the student is in the group chat');
        await eventuallyChats(stack, org, p, inChat(g, 'parents'), 'the parent is in the parents chat');

        const res = await stack.del(`/v1/orgs/${org.id}/members/${s1.user.id}/roles/student`, t);
        assert.equal(res.status, 204, res.text);
        assert.deepEqual(await unitMembers(stack, org, g), [[s2.user.id, 'student']]);
        assert.equal((await unitRow(stack, org, g)).member_count, 1);
        assert.equal(await memberRow(stack, org, s1), undefined);
        assert.equal(await myMembership(stack, org, s1), undefined);
        assert.deepEqual((await myMembership(stack, org, p)).students, [], 'the mother is no longer linked');
        assert.deepEqual(await movementsOf(stack, org, s1), [e1], 'taking a role records no movement');
        await eventuallyChats(stack, org, s1, (cs) => cs.length === 0, 'the former student left every chat of the college');
        await eventuallyChats(stack, org, p, notInChat(g, 'parents'), 'the mother left the parents chat');
    });

    // org.updated and org.application.* are published too, but nothing
    // outside shows them: the chat service keeps the card's names without
    // showing them anywhere, and nothing consumes the applications' events.
    it('org.unit.updated, org.curator.unset, org.guardian.unlinked and org.unit.archived reach the chat service', async () => {
        const org = await newOrg(stack, { orgName: 'Колледж Событий Второй', shortName: 'КСВ' });
        const t = { token: org.admin.token };
        const g = await newUnit(stack, org, { kind: 'group', name: 'Электрики', code: 'ЭВ-11', year: 1 });
        const cur = await member(stack, org, 'teacher', 'Куратор Электриков');
        await setCurator(org, g, cur);
        const s = await member(stack, org, 'student', 'Студент Электрик');
        await move(stack, org, { kind: 'enroll', user_id: s.user.id, unit_id: g.id });
        const p = await member(stack, org, 'parent', 'Родитель Электрика');
        await link(org, p, s);
        const titled = (audience, title, archived = false) => (cs) => cs.some((c) => c.unit_id === g.id && c.audience === audience
            && c.title === title && c.archived === archived);
        await eventuallyChats(stack, org, cur, (cs) => titled('students', 'ЭВ-11 Электрики')(cs) && titled('parents', 'Родители ЭВ-11')(cs),
            'the curator is in both chats of ЭВ-11');
        await eventuallyChats(stack, org, p, titled('parents', 'Родители ЭВ-11'), 'the parent is in the parents chat');

        // org.unit.updated: renamed, the chats follow.
        expectStatus(await stack.patch(`/v1/orgs/${org.id}/units/${g.id}`, { name: 'Электромонтёры', code: 'ЭМ-11' }, t), 200);
        await eventuallyChats(stack, org, s, titled('students', 'ЭМ-11 Электромонтёры'), 'the group chat is renamed');
        await eventuallyChats(stack, org, p, titled('parents', 'Родители ЭМ-11'), 'the parents chat is renamed');

        // org.curator.unset: the former curator leaves both chats; the student stays.
        const unset = await stack.del(`/v1/orgs/${org.id}/units/${g.id}/curator`, t);
        assert.equal(unset.status, 204, unset.text);
        assert.equal((await unitRow(stack, org, g)).curator_id, null);
        await eventuallyChats(stack, org, cur, (cs) => noUnitChat(cs) && cs.some((c) => c.audience === 'staff'),
            'the former curator left the chats of the group');
        assert.ok(inChat(g, 'students')(await orgChats(stack, org, s)), 'the student is still in the group chat');

        // org.guardian.unlinked: the parent leaves the parents chat.
        const unlink = await stack.del(`/v1/orgs/${org.id}/guardians/${p.user.id}/${s.user.id}`, t);
        assert.equal(unlink.status, 204, unlink.text);
        assert.deepEqual((await myMembership(stack, org, p)).students, []);
        await eventuallyChats(stack, org, p, notInChat(g, 'parents'), 'the unlinked parent left the parents chat');

        // org.unit.archived: the chats are archived with the group.
        const archived = expectStatus(await stack.patch(`/v1/orgs/${org.id}/units/${g.id}`, { archived: true }, t), 200);
        assert.equal(archived.archived, true);
        await eventuallyChats(stack, org, s, titled('students', 'ЭМ-11 Электромонтёры', true), 'the group chat is archived');
    });
});

describe('who may do what (deny by default)', { timeout: 900000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    let w;
    before(async () => {
        try {
            w = await buildWorld(suiteStack());
        } catch (err) {
            w = { error: err };
        }
    });
    beforeEach(() => {
        stack = suiteStack();
        if (w.error) throw new Error(`the organisations could not be built: ${w.error.stack}`);
    });
    const forbid = (res, what) => assertError(res, 403, 'forbidden', undefined, what);
    const hidden = (res, what) => assertError(res, 404, undefined, undefined, what);

    it('only operators handle applications: admin, administration, teacher, student, parent get 403', async () => {
        const op = await operator(stack);
        const app = expectStatus(await stack.post('/v1/org-applications',
            application({ orgName: 'Заявка На Проверку Прав', shortName: 'ЗНП', adminPhone: newPhone() })), 201);
        for (const [name, who] of [['admin', w.a.admin], ['administration', w.adm], ['teacher', w.t1], ['student', w.s1],
            ['parent', w.p1], ['outsider', w.outsider]]) {
            forbid(await stack.get('/v1/org-applications', { token: who.token }), `${name} lists applications`);
            forbid(await stack.get('/v1/org-applications?status=pending', { token: who.token }), `${name} lists pending`);
            forbid(await stack.post(`/v1/org-applications/${app.id}/approve`, undefined, { token: who.token }), `${name} approves`);
            forbid(await stack.post(`/v1/org-applications/${app.id}/reject`, { reason: 'нет' }, { token: who.token }), `${name} rejects`);
        }
        assertError(await stack.get('/v1/org-applications'), 401, 'unauthorized', undefined, 'without a token');
        assertError(await stack.post(`/v1/org-applications/${app.id}/approve`), 401, 'unauthorized', undefined, 'approve without a token');
        const pending = expectStatus(await stack.get('/v1/org-applications?status=pending', { token: op.token }), 200);
        const row = pending.items.find((x) => x.id === app.id);
        assert.ok(row && row.status === 'pending' && row.org_id === null, `still pending, no org: ${JSON.stringify(row)}`);
    });

    it('only the org\'s admins change the card', async () => {
        const before = await snapshot(stack, w.a);
        for (const [name, who] of [['administration', w.adm], ['teacher', w.t1], ['curator', w.t2], ['student', w.s1], ['parent', w.p1]])
            forbid(await stack.patch(`/v1/orgs/${w.a.id}`, { name: 'Захваченный техникум', website: 'https://evil.example' }, { token: who.token }),
                `${name} edits the card`);
        hidden(await stack.patch(`/v1/orgs/${w.a.id}`, { name: 'Захваченный техникум' }, { token: w.outsider.token }), 'an outsider edits the card');
        assertError(await stack.patch(`/v1/orgs/${w.a.id}`, { name: 'Захваченный техникум' }), 401, 'unauthorized');
        assert.deepEqual(await snapshot(stack, w.a), before);
    });

    it('only the org\'s admins create and change units', async () => {
        const before = await snapshot(stack, w.a);
        for (const [name, who] of [['administration', w.adm], ['teacher', w.t1], ['student', w.s1], ['parent', w.p1]]) {
            forbid(await stack.post(`/v1/orgs/${w.a.id}/units`, { kind: 'group', name: 'ТМ-99', code: 'ТМ-99', year: 1 }, { token: who.token }),
                `${name} creates a group`);
            forbid(await stack.patch(`/v1/orgs/${w.a.id}/units/${w.g1.id}`, { name: 'Переименована' }, { token: who.token }), `${name} renames a group`);
            forbid(await stack.patch(`/v1/orgs/${w.a.id}/units/${w.g1.id}`, { archived: true }, { token: who.token }), `${name} archives a group`);
            forbid(await stack.patch(`/v1/orgs/${w.a.id}/units/${w.g1.id}`, { parent_id: w.d2.id }, { token: who.token }), `${name} moves a group`);
        }
        hidden(await stack.post(`/v1/orgs/${w.a.id}/units`, { kind: 'group', name: 'ТМ-99' }, { token: w.outsider.token }), 'outsider');
        assert.deepEqual(await snapshot(stack, w.a), before);
    });

    it('only the org\'s admins set and remove curators', async () => {
        const before = await snapshot(stack, w.a);
        for (const [name, who] of [['administration', w.adm], ['the curator of ТМ-21', w.t1], ['the curator of ТМ-22', w.t2],
            ['student', w.s1], ['parent', w.p1]]) {
            forbid(await stack.put(`/v1/orgs/${w.a.id}/units/${w.g3.id}/curator`, { user_id: w.t1.user.id }, { token: who.token }),
                `${name} sets a curator`);
            forbid(await stack.put(`/v1/orgs/${w.a.id}/units/${w.g2.id}/curator`, { user_id: w.t1.user.id }, { token: who.token }),
                `${name} replaces a curator`);
            forbid(await stack.del(`/v1/orgs/${w.a.id}/units/${w.g1.id}/curator`, { token: who.token }), `${name} removes a curator`);
        }
        assert.deepEqual(await snapshot(stack, w.a), before);
    });

    it('only the org\'s admins grant and take roles and verify teachers', async () => {
        const before = await snapshot(stack, w.a);
        const t1Before = membershipIn(await me(stack, w.t1), w.a.id);
        for (const [name, who] of [['administration', w.adm], ['teacher', w.t1], ['student', w.s1], ['parent', w.p1]]) {
            forbid(await stack.post(`/v1/orgs/${w.a.id}/members/${who.user.id}/roles`, { role: 'admin' }, { token: who.token }),
                `${name} makes themself admin`);
            forbid(await stack.post(`/v1/orgs/${w.a.id}/members/${w.s2.user.id}/roles`, { role: 'teacher' }, { token: who.token }),
                `${name} grants a role`);
            forbid(await stack.del(`/v1/orgs/${w.a.id}/members/${w.t2.user.id}/roles/teacher`, { token: who.token }), `${name} takes a role`);
            forbid(await stack.del(`/v1/orgs/${w.a.id}/members/${w.a.admin.user.id}/roles/admin`, { token: who.token }),
                `${name} takes the admin role`);
            forbid(await stack.post(`/v1/orgs/${w.a.id}/members/${w.t2.user.id}/verify`, { verified: false }, { token: who.token }),
                `${name} un-verifies a teacher`);
            forbid(await stack.post(`/v1/orgs/${w.a.id}/members/${w.t1.user.id}/verify`, { verified: false }, { token: who.token }),
                `${name} un-verifies a teacher`);
        }
        hidden(await stack.post(`/v1/orgs/${w.a.id}/members/${w.outsider.user.id}/roles`, { role: 'admin' }, { token: w.outsider.token }),
            'an outsider makes themself admin');
        assert.deepEqual(await snapshot(stack, w.a), before);
        assert.deepEqual(membershipIn(await me(stack, w.t1), w.a.id), t1Before);
        assert.equal(membershipIn(await me(stack, w.outsider), w.a.id), undefined, 'the outsider is still outside');
    });

    it('guardians: only admins, and curators for the students of their own group', async () => {
        const before = await snapshot(stack, w.a, [w.p1, w.p2]);
        const link = (who, parent, student) => stack.post(`/v1/orgs/${w.a.id}/guardians`,
            { parent_id: parent.user.id, student_id: student.user.id }, { token: who.token });
        const unlink = (who, parent, student) => stack.del(`/v1/orgs/${w.a.id}/guardians/${parent.user.id}/${student.user.id}`,
            { token: who.token });
        for (const [name, who] of [['administration', w.adm], ['the curator of ТМ-22', w.t2], ['student', w.s1], ['parent', w.p1],
            ['parent', w.p2]]) {
            forbid(await link(who, w.p2, w.s1), `${name} links a parent to a student of ТМ-21`);
            forbid(await unlink(who, w.p1, w.s1), `${name} unlinks a parent of a student of ТМ-21`);
        }
        // The curator of ТМ-21 and a student of ТМ-22.
        forbid(await link(w.t1, w.p2, w.s3), 'the curator of ТМ-21 links a parent to a student of ТМ-22');
        forbid(await unlink(w.t1, w.p1, w.s3), 'the curator of ТМ-21 unlinks for a student of ТМ-22');
        hidden(await link(w.outsider, w.p2, w.s1), 'an outsider links');
        assert.deepEqual(await snapshot(stack, w.a, [w.p1, w.p2]), before);

        // Their own group's student: allowed, and undone.
        expectStatus(await link(w.t1, w.p2, w.s2), 201, 'the curator of ТМ-21 links a parent to a student of ТМ-21');
        assert.deepEqual(membershipIn(await me(stack, w.p2), w.a.id).students.map((s) => s.id), [w.s2.user.id]);
        expectStatus(await unlink(w.t1, w.p2, w.s2), 204, 'and unlinks them');
        assert.deepEqual(await snapshot(stack, w.a, [w.p1, w.p2]), before);
    });

    it('only the org\'s admins record movements', async () => {
        const before = await snapshot(stack, w.a);
        for (const [name, who] of [['administration', w.adm], ['the curator', w.t1], ['student', w.s1], ['parent', w.p1]]) {
            forbid(await stack.post(`/v1/orgs/${w.a.id}/movements`, { kind: 'transfer', user_id: w.s1.user.id, unit_id: w.g2.id, order_number: '9-у' },
                { token: who.token }), `${name} transfers`);
            forbid(await stack.post(`/v1/orgs/${w.a.id}/movements`, { kind: 'expel', user_id: w.s2.user.id }, { token: who.token }), `${name} expels`);
            forbid(await stack.post(`/v1/orgs/${w.a.id}/movements`, { kind: 'dismiss', user_id: w.t2.user.id }, { token: who.token }),
                `${name} dismisses a teacher`);
            forbid(await stack.post(`/v1/orgs/${w.a.id}/movements`, { kind: 'enroll', user_id: who.user.id, unit_id: w.g3.id }, { token: who.token }),
                `${name} enrolls themself`);
        }
        assert.deepEqual(await snapshot(stack, w.a), before);
    });

    it('administration and teachers read members (phones only for admins); students and parents get 403', async () => {
        const full = expectStatus(await stack.get(`/v1/orgs/${w.a.id}/members`, { token: w.a.admin.token }), 200);
        const everyone = [w.a.admin, w.t1, w.t2, w.adm, w.s1, w.s2, w.s3, w.p1, w.p2];
        assert.ok(everyone.every((u) => full.items.some((m) => m.user.id === u.user.id)), `every member listed: ${JSON.stringify(full)}`);
        assert.ok(!full.items.some((m) => [w.outsider, w.b.admin, w.sb, w.tb].some((u) => u.user.id === m.user.id)),
            'nobody from outside listed');
        assert.ok(full.items.every((m) => typeof m.user.phone === 'string' && m.user.phone.startsWith('+7')), 'admins see phones');
        for (const [name, who] of [['administration', w.adm], ['teacher', w.t1]]) {
            const res = expectStatus(await stack.get(`/v1/orgs/${w.a.id}/members`, { token: who.token }), 200, name);
            assert.deepEqual(ids(res.items), ids(full.items), `${name} sees the same members`);
            for (const m of res.items) assert.ok(m.user.phone === null || m.user.phone === undefined, `${name} sees no phone: ${JSON.stringify(m)}`);
            const texts = JSON.stringify(res);
            assert.ok(!full.items.some((m) => texts.includes(m.user.phone)), `no phone anywhere in what ${name} reads`);
            // And the members of a unit.
            const g1 = expectStatus(await stack.get(`/v1/orgs/${w.a.id}/units/${w.g1.id}/members`, { token: who.token }), 200);
            assert.deepEqual(ids(g1.items), [w.s1.user.id, w.s2.user.id].sort());
            assert.ok(g1.items.every((m) => m.user.phone == null), `${name}: no phones in unit members`);
        }
        for (const [name, who] of [['student', w.s1], ['parent', w.p1]]) {
            forbid(await stack.get(`/v1/orgs/${w.a.id}/members`, { token: who.token }), `${name} lists members`);
            forbid(await stack.get(`/v1/orgs/${w.a.id}/members?unit_id=${w.g1.id}`, { token: who.token }), `${name} lists members of a group`);
        }
        hidden(await stack.get(`/v1/orgs/${w.a.id}/members`, { token: w.outsider.token }), 'an outsider lists members');
        // Movements: admins and administration.
        expectStatus(await stack.get(`/v1/orgs/${w.a.id}/movements`, { token: w.adm.token }), 200, 'administration reads movements');
        for (const [name, who] of [['teacher', w.t1], ['student', w.s1], ['parent', w.p1]])
            forbid(await stack.get(`/v1/orgs/${w.a.id}/movements`, { token: who.token }), `${name} reads movements`);
    });

    it('students and parents read the card and only the units they (their children) belong to', async () => {
        const card = expectStatus(await stack.get(`/v1/orgs/${w.a.id}`, { token: w.a.admin.token }), 200);
        for (const [name, who] of [['student', w.s1], ['parent', w.p1], ['parent without a child', w.p2], ['teacher', w.t1]])
            assert.deepEqual(expectStatus(await stack.get(`/v1/orgs/${w.a.id}`, { token: who.token }), 200, name), card, `${name} reads the card`);
        const unitsOf = async (who, q = '') => ids(expectStatus(await stack.get(`/v1/orgs/${w.a.id}/units${q}`, { token: who.token }), 200).items);
        assert.deepEqual(await unitsOf(w.s1), [w.g1.id], 'a student of ТМ-21 sees ТМ-21 only');
        assert.deepEqual(await unitsOf(w.s3), [w.g2.id], 'a student of ТМ-22 sees ТМ-22 only');
        assert.deepEqual(await unitsOf(w.p1), [w.g1.id], 'the parent of a student of ТМ-21 sees ТМ-21 only');
        assert.deepEqual(await unitsOf(w.p2), [], 'a parent without children sees no unit');
        assert.deepEqual(await unitsOf(w.s1, '?kind=department'), [], 'not even the department above their group');
        assert.deepEqual(await unitsOf(w.s1, `?parent_id=${w.d1.id}`), [w.g1.id]);
        assert.equal((await unitsOf(w.t1)).length, 6, 'staff see the whole tree');
        assert.equal((await unitsOf(w.adm)).length, 6, 'administration sees the whole tree');
        // Members of their own group; not of another.
        const own = expectStatus(await stack.get(`/v1/orgs/${w.a.id}/units/${w.g1.id}/members`, { token: w.s1.token }), 200);
        assert.deepEqual(ids(own.items), [w.s1.user.id, w.s2.user.id].sort());
        assert.ok(own.items.every((m) => m.user.phone == null), 'no phones for a student');
        forbid(await stack.get(`/v1/orgs/${w.a.id}/units/${w.g2.id}/members`, { token: w.s1.token }), 'a student reads another group');
        forbid(await stack.get(`/v1/orgs/${w.a.id}/units/${w.a.staffId}/members`, { token: w.s1.token }), 'a student reads the staff group');
        forbid(await stack.get(`/v1/orgs/${w.a.id}/units/${w.g2.id}/members`, { token: w.p1.token }), 'a parent reads another group');
        // Outsiders: nothing at all.
        hidden(await stack.get(`/v1/orgs/${w.a.id}`, { token: w.outsider.token }), 'an outsider reads the card');
        hidden(await stack.get(`/v1/orgs/${w.a.id}/units`, { token: w.outsider.token }), 'an outsider lists units');
        hidden(await stack.get(`/v1/orgs/${w.a.id}/units/${w.g1.id}/members`, { token: w.outsider.token }), 'an outsider reads a group');
        assertError(await stack.get(`/v1/orgs/${w.a.id}`), 401, 'unauthorized');
    });

    it('another org\'s admin gets 404 for every id of this org, whatever ids they send, and nothing changes', async () => {
        const beforeA = await snapshot(stack, w.a, [w.p1]);
        const beforeB = await snapshot(stack, w.b, [w.pb]);
        const A = `/v1/orgs/${w.a.id}`;
        const B = `/v1/orgs/${w.b.id}`;
        for (const [name, who] of [['admin', w.b.admin], ['teacher', w.tb], ['student', w.sb]]) {
            const o = { token: who.token };
            const tries = [
                ['GET card', () => stack.get(A, o)],
                ['PATCH card', () => stack.patch(A, { name: 'Чужой' }, o)],
                ['GET units', () => stack.get(`${A}/units`, o)],
                ['POST unit', () => stack.post(`${A}/units`, { kind: 'group', name: 'Чужая' }, o)],
                ['PATCH unit', () => stack.patch(`${A}/units/${w.g1.id}`, { name: 'Чужая' }, o)],
                ['archive unit', () => stack.patch(`${A}/units/${w.g1.id}`, { archived: true }, o)],
                ['GET unit members', () => stack.get(`${A}/units/${w.g1.id}/members`, o)],
                ['PUT curator', () => stack.put(`${A}/units/${w.g3.id}/curator`, { user_id: w.t1.user.id }, o)],
                ['DELETE curator', () => stack.del(`${A}/units/${w.g1.id}/curator`, o)],
                ['GET members', () => stack.get(`${A}/members`, o)],
                ['grant role', () => stack.post(`${A}/members/${who.user.id}/roles`, { role: 'admin' }, o)],
                ['take role', () => stack.del(`${A}/members/${w.t1.user.id}/roles/teacher`, o)],
                ['verify', () => stack.post(`${A}/members/${w.t1.user.id}/verify`, { verified: false }, o)],
                ['link guardian', () => stack.post(`${A}/guardians`, { parent_id: w.p2.user.id, student_id: w.s2.user.id }, o)],
                ['unlink guardian', () => stack.del(`${A}/guardians/${w.p1.user.id}/${w.s1.user.id}`, o)],
                ['POST movement', () => stack.post(`${A}/movements`, { kind: 'expel', user_id: w.s1.user.id }, o)],
                ['GET movements', () => stack.get(`${A}/movements`, o)],
            ];
            for (const [what, fn] of tries) hidden(await fn(), `${name} of the other org: ${what}`);
        }
        // Their own org's path with this org's ids.
        const o = { token: w.b.admin.token };
        const own = [
            ['PATCH this org\'s unit', () => stack.patch(`${B}/units/${w.g1.id}`, { name: 'Чужая' }, o)],
            ['archive this org\'s unit', () => stack.patch(`${B}/units/${w.g1.id}`, { archived: true }, o)],
            ['members of this org\'s unit', () => stack.get(`${B}/units/${w.g1.id}/members`, o)],
            ['members filtered by this org\'s unit', () => stack.get(`${B}/members?unit_id=${w.g1.id}`, o)],
            ['curator of this org\'s group', () => stack.put(`${B}/units/${w.g1.id}/curator`, { user_id: w.tb.user.id }, o)],
            ['remove the curator of this org\'s group', () => stack.del(`${B}/units/${w.g1.id}/curator`, o)],
            ['a unit under this org\'s department', () => stack.post(`${B}/units`, { kind: 'group', name: 'Подкидыш', parent_id: w.d1.id }, o)],
            ['move their unit under this org\'s department', () => stack.patch(`${B}/units/${w.gb.id}`, { parent_id: w.d1.id }, o)],
            ['enroll their student into this org\'s group', () => stack.post(`${B}/movements`, { kind: 'transfer', user_id: w.sb.user.id, unit_id: w.g1.id }, o)],
            ['expel this org\'s student', () => stack.post(`${B}/movements`, { kind: 'expel', user_id: w.s1.user.id }, o)],
            ['dismiss this org\'s teacher', () => stack.post(`${B}/movements`, { kind: 'dismiss', user_id: w.t1.user.id }, o)],
            ['unlink this org\'s guardian', () => stack.del(`${B}/guardians/${w.p1.user.id}/${w.s1.user.id}`, o)],
            ['take this org\'s teacher\'s role', () => stack.del(`${B}/members/${w.t1.user.id}/roles/teacher`, o)],
        ];
        for (const [what, fn] of own) hidden(await fn(), `the other org's admin, own path: ${what}`);
        // Reading their movements about this org's student finds nothing.
        const mv = expectStatus(await stack.get(`${B}/movements?user_id=${w.s1.user.id}`, o), 200);
        assert.deepEqual(mv.items, [], 'no movement of this org shows up in the other');
        // A user id from this org as curator of their own group: not a teacher there.
        assertError(await stack.put(`${B}/units/${w.gb.id}/curator`, { user_id: w.t1.user.id }, o), 400, 'not_a_teacher', 'user_id');
        assert.deepEqual(await snapshot(stack, w.a, [w.p1]), beforeA, 'this org is unchanged');
        assert.deepEqual(await snapshot(stack, w.b, [w.pb]), beforeB, 'the other org is unchanged');
        assert.deepEqual((await me(stack, w.b.admin)).memberships.map((m) => m.org_id), [w.b.id], 'the other admin gained nothing here');
    });

    it('bad input: unknown unit kinds, a second staff group → 4xx, units unchanged', async () => {
        const t = { token: w.a.admin.token };
        const before = await snapshot(stack, w.a);
        for (const kind of ['class', 'Group', 'ГРУППА', '', 'UNIT_KIND_GROUP', 'unspecified'])
            assertError(await stack.post(`/v1/orgs/${w.a.id}/units`, { kind, name: 'Непонятное' }, t), 400, 'bad_request', 'kind', `kind ${kind}`);
        for (const kind of [2, true, null, ['group']])
            assertError(await stack.post(`/v1/orgs/${w.a.id}/units`, { kind, name: 'Непонятное' }, t), 400, 'bad_request', 'kind', `kind ${JSON.stringify(kind)}`);
        assertError(await stack.post(`/v1/orgs/${w.a.id}/units`, { name: 'Без вида' }, t), 400, 'bad_request', 'kind', 'no kind');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/units`, { kind: 'staff', name: 'Второй педсостав' }, t), 409, 'staff_group_exists', 'kind');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/units`, { kind: 'department', name: 'Отделение', code: 'X-1' }, t), 400, 'bad_request', 'code');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/units`, { kind: 'group', name: 'ТМ-00', year: 13 }, t), 400, 'bad_request', 'year');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/units`, { kind: 'group', name: '' }, t), 400, 'bad_request', 'name');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/units`, { kind: 'group', name: 'ТМ-00', parent_id: NO_SUCH_ID }, t), 404, undefined, 'parent_id');
        assertError(await stack.patch(`/v1/orgs/${w.a.id}/units/${w.a.staffId}`, { archived: true }, t), 409, undefined, 'archived',
            'archiving the staff group');
        assert.deepEqual(await snapshot(stack, w.a), before);
    });

    it('bad input: a unit cannot be its own ancestor (400 parent_id), the tree unchanged', async () => {
        const t = { token: w.a.admin.token };
        const before = await snapshot(stack, w.a);
        const cycle = async (unit, parent, what) => assertError(
            await stack.patch(`/v1/orgs/${w.a.id}/units/${unit.id}`, { parent_id: parent.id }, t), 400, 'bad_request', 'parent_id', what);
        await cycle(w.d1, w.d1, 'a department inside itself');
        await cycle(w.d1, w.g1, 'a department inside its own group');
        await cycle(w.g1, w.g1, 'a group inside itself');
        // A deeper chain: d3 under g3 under d2; d2 under d3 would close a loop.
        const d3 = await newUnit(stack, w.a, { kind: 'other', name: 'Кружок', parent_id: w.g3.id });
        await cycle(w.d2, d3, 'a department under its grandchild');
        await cycle(w.d2, w.g3, 'a department under its child');
        // Nothing changed but the new unit.
        const after = await snapshot(stack, w.a);
        const withoutD3 = { ...after, units: { ...after.units, items: after.units.items.filter((u) => u.id !== d3.id) } };
        delete withoutD3.unitMembers[d3.id];
        assert.deepEqual(withoutD3, before);
        const parents = Object.fromEntries(after.units.items.map((u) => [u.id, u.parent_id]));
        assert.equal(parents[w.d1.id], null);
        assert.equal(parents[w.d2.id], null);
        assert.equal(parents[w.g1.id], w.d1.id);
        assert.equal(parents[d3.id], w.g3.id);
        // Archive it so later tests see the tree as it was.
        expectStatus(await stack.patch(`/v1/orgs/${w.a.id}/units/${d3.id}`, { archived: true }, t), 200);
        const archived = expectStatus(await stack.get(`/v1/orgs/${w.a.id}/units`, t), 200);
        assert.ok(!archived.items.some((u) => u.id === d3.id), 'an archived unit is not listed by default');
    });

    it('bad input: a unit cannot be moved under an archived parent (409, as creating one there), nothing changed', async () => {
        // Units of its own, so that a failure here leaves the rest of the tree alone.
        const t = { token: w.a.admin.token };
        const closed = await newUnit(stack, w.a, { kind: 'department', name: 'Закрытое отделение' });
        expectStatus(await stack.patch(`/v1/orgs/${w.a.id}/units/${closed.id}`, { archived: true }, t), 200);
        const open = await newUnit(stack, w.a, { kind: 'department', name: 'Открытое отделение' });
        const mover = await newUnit(stack, w.a, { kind: 'group', name: 'ОО-11', code: 'ОО-11', year: 1, parent_id: open.id });
        const before = await snapshot(stack, w.a);
        // Creating a unit there is refused; moving one there is refused the same way.
        const created = await stack.post(`/v1/orgs/${w.a.id}/units`, { kind: 'group', name: 'ЗО-11', code: 'ЗО-11', year: 1, parent_id: closed.id }, t);
        assertError(created, 409, undefined, 'parent_id', 'a group created under the archived department');
        const code = created.json.error.code;
        assertError(await stack.patch(`/v1/orgs/${w.a.id}/units/${mover.id}`, { parent_id: closed.id }, t), 409, code, 'parent_id',
            'a group moved under the archived department');
        assertError(await stack.patch(`/v1/orgs/${w.a.id}/units/${open.id}`, { parent_id: closed.id, name: 'Открытое (закрыто)' }, t),
            409, code, 'parent_id', 'a department moved there, renamed in the same request');
        assert.deepEqual(await snapshot(stack, w.a), before, 'nothing changed: not the parents, not the name');
        assert.equal((await unitRow(stack, w.a, mover)).parent_id, open.id);
        assert.deepEqual(await unitRow(stack, w.a, open), open, 'the department as it was made');
        // Archive them, so that later tests see the tree as it was.
        for (const u of [mover, open])
            expectStatus(await stack.patch(`/v1/orgs/${w.a.id}/units/${u.id}`, { archived: true }, t), 200);
    });

    it('bad input: a curator who is not a teacher of the org is 400 not_a_teacher, the group unchanged', async () => {
        const t = { token: w.a.admin.token };
        const before = await snapshot(stack, w.a);
        for (const [name, who] of [['a student', w.s1], ['a parent', w.p1], ['administration', w.adm], ['the admin', w.a.admin],
            ['an outsider', w.outsider], ['a teacher of the other org', w.tb]])
            assertError(await stack.put(`/v1/orgs/${w.a.id}/units/${w.g3.id}/curator`, { user_id: who.user.id }, t), 400, 'not_a_teacher', 'user_id', name);
        assertError(await stack.put(`/v1/orgs/${w.a.id}/units/${w.g3.id}/curator`, { user_id: 'nobody' }, t), 400, 'bad_request', 'user_id');
        assertError(await stack.put(`/v1/orgs/${w.a.id}/units/${w.g3.id}/curator`, {}, t), 400, 'bad_request', 'user_id');
        assertError(await stack.put(`/v1/orgs/${w.a.id}/units/${w.d1.id}/curator`, { user_id: w.t1.user.id }, t), 400, 'bad_request', 'unit_id',
            'a department has no curator');
        assertError(await stack.put(`/v1/orgs/${w.a.id}/units/${NO_SUCH_ID}/curator`, { user_id: w.t1.user.id }, t), 404, undefined, 'unit_id');
        assertError(await stack.del(`/v1/orgs/${w.a.id}/units/${w.g3.id}/curator`, t), 404, undefined, 'unit_id', 'ЭК-11 has no curator');
        assert.deepEqual(await snapshot(stack, w.a), before);
    });

    it('bad input: guardian links across orgs or to the wrong roles are 400, nothing linked', async () => {
        const before = await snapshot(stack, w.a, [w.p1, w.p2]);
        const beforeB = await snapshot(stack, w.b, [w.pb]);
        const link = (org, parent, student) => stack.post(`/v1/orgs/${org.id}/guardians`,
            { parent_id: parent.user.id, student_id: student.user.id }, { token: org.admin.token });
        assertError(await link(w.a, w.p2, w.sb), 400, undefined, 'student_id', 'this org\'s parent, the other org\'s student');
        assertError(await link(w.a, w.pb, w.s1), 400, undefined, 'parent_id', 'the other org\'s parent, this org\'s student');
        assertError(await link(w.b, w.pb, w.s1), 400, undefined, 'student_id', 'the other admin links their parent to this org\'s student');
        assertError(await link(w.a, w.s2, w.s1), 400, 'not_a_parent', 'parent_id', 'a student as parent');
        assertError(await link(w.a, w.p2, w.p1), 400, 'not_a_student', 'student_id', 'a parent as student');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/guardians`, { parent_id: w.p2.user.id }, { token: w.a.admin.token }), 400, 'bad_request', 'student_id');
        assert.deepEqual(await snapshot(stack, w.a, [w.p1, w.p2]), before);
        assert.deepEqual(await snapshot(stack, w.b, [w.pb]), beforeB);
    });

    it('bad input: movements of a user not in the org, into a non-group, a transfer without a group → 4xx, nothing recorded', async () => {
        const t = { token: w.a.admin.token };
        const sx = await member(stack, w.a, 'student', 'Студент Без Группы');
        const before = await snapshot(stack, w.a);
        const mv = (body) => stack.post(`/v1/orgs/${w.a.id}/movements`, body, t);
        assertError(await mv({ kind: 'enroll', user_id: w.outsider.user.id, unit_id: w.g3.id }), 404, 'not_a_member', 'user_id', 'an outsider');
        assertError(await mv({ kind: 'enroll', user_id: w.sb.user.id, unit_id: w.g3.id }), 404, 'not_a_member', 'user_id', 'the other org\'s student');
        assertError(await mv({ kind: 'expel', user_id: NO_SUCH_ID }), 404, undefined, 'user_id', 'nobody');
        assertError(await mv({ kind: 'enroll', user_id: sx.user.id, unit_id: w.d1.id }), 400, 'bad_request', 'unit_id', 'enroll into a department');
        assertError(await mv({ kind: 'enroll', user_id: sx.user.id, unit_id: w.a.staffId }), 400, 'bad_request', 'unit_id', 'enroll into the staff group');
        assertError(await mv({ kind: 'enroll', user_id: sx.user.id }), 400, 'bad_request', 'unit_id', 'enroll into nothing');
        assertError(await mv({ kind: 'enroll', user_id: sx.user.id, unit_id: w.gb.id }), 404, undefined, 'unit_id', 'enroll into the other org\'s group');
        assertError(await mv({ kind: 'transfer', user_id: sx.user.id, unit_id: w.g1.id }), 409, 'not_in_group', 'user_id', 'transfer of a student in no group');
        assertError(await mv({ kind: 'transfer', user_id: w.t1.user.id, unit_id: w.g1.id }), 409, 'not_in_group', 'user_id', 'transfer of a teacher');
        assertError(await mv({ kind: 'transfer', user_id: w.s1.user.id, unit_id: w.g1.id }), 409, undefined, 'unit_id', 'transfer into the same group');
        assertError(await mv({ kind: 'enroll', user_id: w.s1.user.id, unit_id: w.g2.id }), 409, 'already_in_group', 'user_id', 'enroll of a student in a group');
        assertError(await mv({ kind: 'expel', user_id: w.t1.user.id }), 409, 'not_a_student', 'user_id', 'expel a teacher');
        assertError(await mv({ kind: 'dismiss', user_id: w.s1.user.id }), 409, 'not_a_teacher', 'user_id', 'dismiss a student');
        assertError(await mv({ kind: 'fly', user_id: w.s1.user.id }), 400, 'bad_request', 'kind');
        assertError(await mv({ kind: 'enroll', user_id: sx.user.id, unit_id: w.g3.id, effective_date: '01.09.2026' }), 400, 'bad_request', 'effective_date');
        assert.deepEqual(await snapshot(stack, w.a), before);
    });

    it('bad input: the last admin cannot be removed (409 last_admin); with a second admin the first can go', async () => {
        const before = await snapshot(stack, w.a);
        assertError(await stack.del(`/v1/orgs/${w.a.id}/members/${w.a.admin.user.id}/roles/admin`, { token: w.a.admin.token }),
            409, 'last_admin', 'role');
        assert.deepEqual(membershipIn(await me(stack, w.a.admin), w.a.id).roles, ['admin'], 'still admin');
        assert.deepEqual(await snapshot(stack, w.a), before);

        // A separate org, to change its admins.
        const c = await newOrg(stack, { orgName: 'Колледж Смены Администратора', shortName: 'КСА' });
        const second = await member(stack, c, 'admin', 'Новый Администратор');
        const gone = await stack.del(`/v1/orgs/${c.id}/members/${c.admin.user.id}/roles/admin`, { token: second.token });
        assert.equal(gone.status, 204, gone.text);
        assert.equal(membershipIn(await me(stack, c.admin), c.id), undefined, 'the first admin left');
        assertError(await stack.get(`/v1/orgs/${c.id}`, { token: c.admin.token }), 404, undefined, undefined, 'and sees nothing of it any more');
        assertError(await stack.del(`/v1/orgs/${c.id}/members/${second.user.id}/roles/admin`, { token: second.token }), 409, 'last_admin', 'role');
        assert.deepEqual(membershipIn(await me(stack, second), c.id).roles, ['admin']);
    });
});

describe('applications from one address (the default limit: 5 an hour)', { timeout: 180000 }, () => {
    const suiteStack = stackForSuite();
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('the sixth application within the hour is 429 with Retry-After, and is not stored', async () => {
        const names = [];
        for (let i = 1; i <= 5; i++) {
            const name = `Колледж номер ${i} из одного адреса`;
            names.push(name);
            const res = await stack.post('/v1/org-applications', application({ orgName: name, shortName: `К${i}`, adminPhone: newPhone() }));
            assert.equal(res.status, 201, `application #${i}: ${res.text}`);
        }
        const sixth = await stack.post('/v1/org-applications', application({ orgName: 'Шестой колледж', shortName: 'К6', adminPhone: newPhone() }));
        assertError(sixth, 429, 'rate_limited', null, 'the sixth application');
        const retry = Number(sixth.headers.get('retry-after'));
        assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 3600, `Retry-After: ${sixth.headers.get('retry-after')}`);
        const op = await operator(stack);
        const list = expectStatus(await stack.get('/v1/org-applications?limit=200', { token: op.token }), 200);
        assert.deepEqual(list.items.map((a) => a.org_name).sort(), names.sort(), 'the five, not the sixth');
    });
});

// GET /v1/me is put together by the gateway: identity's account and roles,
// then org's names, units and children for those organisations.
describe('GET /v1/me: what identity and org know of the caller, together', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    let w;
    before(async () => {
        const s = suiteStack();
        const a = await newOrg(s, { orgName: 'Рязанский железнодорожный колледж', shortName: 'РЖК' });
        const b = await newOrg(s, { orgName: 'Скопинский медицинский колледж', shortName: 'СМК' });
        const ga = await newUnit(s, a, { kind: 'group', name: 'ПС-21', code: 'ПС-21', year: 2 });
        const gb = await newUnit(s, b, { kind: 'group', name: 'ФМ-11', code: 'ФМ-11', year: 1 });
        const child = await member(s, a, 'student', 'Кирилл Сыноводов');
        await move(s, a, { kind: 'enroll', user_id: child.user.id, unit_id: ga.id, order_number: '7-у' });
        // A mother of a student of one college studies at the other.
        const mother = await member(s, a, 'parent', 'Вера Сыноводова');
        expectStatus(await s.post(`/v1/orgs/${a.id}/guardians`, { parent_id: mother.user.id, student_id: child.user.id },
            { token: a.admin.token }), 201);
        expectStatus(await s.post(`/v1/orgs/${b.id}/members/${mother.user.id}/roles`, { role: 'student' },
            { token: b.admin.token }), 200);
        await move(s, b, { kind: 'enroll', user_id: mother.user.id, unit_id: gb.id, order_number: '8-у' });
        const nobody = await signUp(s, { fullName: 'Никто Нигдеев' });
        w = { a, b, ga, gb, child, mother, nobody };
    });
    beforeEach(() => { stack = suiteStack(); });

    const byOrg = (list) => [...list].sort((x, y) => (x.org_id < y.org_id ? -1 : x.org_id > y.org_id ? 1 : 0));

    it('each organisation by name with the caller\'s units (id, name, kind) and, for a parent, the children by name', async () => {
        const body = await me(stack, w.mother);
        assert.deepEqual(body, {
            user: { id: w.mother.user.id, phone: w.mother.phone, full_name: 'Вера Сыноводова' },
            memberships: byOrg([
                { org_id: w.a.id, org_name: w.a.name, roles: ['parent'], verified: false, units: [],
                    students: [{ id: w.child.user.id, full_name: 'Кирилл Сыноводов' }] },
                { org_id: w.b.id, org_name: w.b.name, roles: ['student'], verified: false,
                    units: [{ id: w.gb.id, name: 'ФМ-11', kind: 'group' }], students: [] },
            ]),
            operator: false,
        });
        assert.deepEqual((await me(stack, w.child)).memberships, [
            { org_id: w.a.id, org_name: w.a.name, roles: ['student'], verified: false,
                units: [{ id: w.ga.id, name: 'ПС-21', kind: 'group' }], students: [] },
        ]);
        assert.deepEqual((await me(stack, w.nobody)).memberships, []);
    });

    it('with org down: 503 unavailable for a member, the account for someone in no organisation, counted like any route; all as before once org is back', async () => {
        const scrape = async () => {
            const res = await stack.get('/metrics');
            assert.equal(res.status, 200, res.text);
            return res.text.split('\n');
        };
        // A counter of `name` by its first label and its status (0 if absent).
        const counter = (lines, name, label, code) => {
            const line = lines.find((l) => l.startsWith(`${name}{`) && l.includes(`"${label}"`) && l.includes(`="${code}"}`));
            return line ? Number(line.split(' ').pop()) : 0;
        };
        const motherBefore = await me(stack, w.mother);
        const nobodyBefore = await me(stack, w.nobody);
        const before = await scrape();

        await stack.stopService('org');
        assertError(await stack.get('/v1/me', { token: w.mother.token }), 503, 'unavailable', undefined, 'a member with org down');
        assert.deepEqual(await me(stack, w.nobody), nobodyBefore, 'an account in no organisation needs nothing of org');
        const down = await scrape();
        assert.equal(counter(down, 'parta_http_requests_total', 'GET /v1/me', 503) - counter(before, 'parta_http_requests_total', 'GET /v1/me', 503), 1);
        assert.equal(counter(down, 'parta_bus_calls_total', 'org.me', 11) - counter(before, 'parta_bus_calls_total', 'org.me', 11), 1,
            'org.me failed once, unavailable');
        assert.equal(counter(down, 'parta_bus_calls_total', 'identity.me', 0) - counter(before, 'parta_bus_calls_total', 'identity.me', 0), 2,
            'identity.me answered both');

        await stack.startService('org');
        assert.deepEqual(await me(stack, w.mother), motherBefore);
        const after = await scrape();
        assert.equal(counter(after, 'parta_bus_calls_total', 'org.me', 0) - counter(down, 'parta_bus_calls_total', 'org.me', 0), 1);
        assert.equal(counter(after, 'parta_http_requests_total', 'GET /v1/me', 200) - counter(down, 'parta_http_requests_total', 'GET /v1/me', 200), 1);
    });

    // Last: it stops the gateway. The request is freed with its connection
    // and its call to org cancelled (in the sanitized build, the stack's
    // stop fails on anything the gateway leaked or touched after freeing).
    it('the gateway stopping while GET /v1/me waits for org: the connection ends and the gateway exits in time', async () => {
        await stack.stopService('org');
        const pending = stack.raw('GET', '/v1/me', { headers: { Authorization: `Bearer ${w.mother.token}` } });
        await sleep(300);
        await stack.stopService('gateway');
        const res = await pending;
        assert.ok(res.error, `no answer, the connection closed: ${JSON.stringify(res)}`);
    });
});
