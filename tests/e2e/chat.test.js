'use strict';
// Chats as a college uses them (API.md "Chats", DESIGN.md §3-§4, policy
// 3В-3Е): the automatic chats of each group and of the org with exactly the
// right people, a curator and students talking, parents kept out of the
// students' chat, chats following transfers and expulsions, direct chats
// only within the org, who may make which chat, messages (edits, deletions,
// sequence numbers, history pages, retries, read markers), search with
// Russian word forms, the post rate limit, bad input on every chat
// endpoint, and membership caught up after the chat service was down while
// the roster changed. Membership follows the roster by events (DESIGN §3:
// "derived state follows events"), so every check of it waits, bounded, for
// the chat service to have applied them. Each describe block runs its own
// stack from the built binaries.

const { describe, it, before, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { isDeepStrictEqual } = require('node:util');
const {
    stackForSuite, limits, assertError, expectStatus, signUp, newPhone, waitFor,
} = require('./lib/stack');

// A character of four bytes in UTF-8 (two UTF-16 units in JavaScript).
const SMILE = '\u{1F600}';
// A ULID nobody has.
const NO_SUCH_ID = '01J0000000000000000000ZZZZ';
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
// How long the chat service may take to follow the roster's events.
const SYNC_MS = 20000;

// --- an org as the org tests build it ---

const operators = new WeakMap();
async function operator(stack) {
    if (!operators.has(stack))
        operators.set(stack, await signUp(stack, { phone: stack.operatorPhone(), fullName: 'Оператор Платформы' }));
    return operators.get(stack);
}

// Applies, approves and signs the admin up: {id, name, admin}.
async function newOrg(stack, orgName, shortName) {
    const op = await operator(stack);
    const adminPhone = newPhone();
    const app = expectStatus(await stack.post('/v1/org-applications', {
        org_name: orgName, short_name: shortName, region: 'Рязанская область', inn: '6229000000',
        admin: { full_name: `Администратор ${shortName}`, phone: adminPhone, email: 'admin@college.example' },
        order_number: '12-к', order_date: '2026-08-25',
    }), 201, `apply ${orgName}`);
    const approved = expectStatus(await stack.post(`/v1/org-applications/${app.id}/approve`, undefined, { token: op.token }),
        200, `approve ${orgName}`);
    const admin = await signUp(stack, { phone: adminPhone, fullName: `Администратор ${shortName}` });
    return { id: approved.org_id, name: orgName, admin };
}

async function newUnit(stack, org, body) {
    return expectStatus(await stack.post(`/v1/orgs/${org.id}/units`, body, { token: org.admin.token }), 201,
        `unit ${JSON.stringify(body)}`);
}

// A new user holding `role` in the org (granted by its admin).
async function member(stack, org, role, fullName) {
    const u = await signUp(stack, { fullName });
    expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${u.user.id}/roles`, { role }, { token: org.admin.token }),
        200, `grant ${role} to ${fullName}`);
    u.name = fullName;
    return u;
}

async function teacher(stack, org, fullName, { verified = false, curatorOf } = {}) {
    const t = await member(stack, org, 'teacher', fullName);
    if (verified)
        expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${t.user.id}/verify`, { verified: true },
            { token: org.admin.token }), 200, `verify ${fullName}`);
    if (curatorOf)
        expectStatus(await stack.put(`/v1/orgs/${org.id}/units/${curatorOf.id}/curator`, { user_id: t.user.id },
            { token: org.admin.token }), 200, `${fullName} curates ${curatorOf.name}`);
    return t;
}

async function move(stack, org, body) {
    return expectStatus(await stack.post(`/v1/orgs/${org.id}/movements`, body, { token: org.admin.token }), 201,
        `movement ${JSON.stringify(body)}`);
}

async function student(stack, org, group, fullName) {
    const s = await member(stack, org, 'student', fullName);
    await move(stack, org, { kind: 'enroll', user_id: s.user.id, unit_id: group.id, order_number: '1-у' });
    return s;
}

async function parentOf(stack, org, child, fullName) {
    const p = await member(stack, org, 'parent', fullName);
    expectStatus(await stack.post(`/v1/orgs/${org.id}/guardians`, { parent_id: p.user.id, student_id: child.user.id },
        { token: org.admin.token }), 201, `${fullName} is a guardian of ${child.name}`);
    return p;
}

// --- what a chat client does ---

const tok = (who) => ({ token: who.token });

async function chatsOf(stack, who, orgId) {
    const list = expectStatus(await stack.get('/v1/chats?limit=200', tok(who)), 200, `GET /v1/chats as ${who.name}`);
    return orgId ? list.items.filter((c) => c.org_id === orgId) : list.items;
}

async function chatOf(stack, who, unitId, audience) {
    return (await chatsOf(stack, who)).find((c) => c.unit_id === unitId && c.audience === audience) || null;
}

// {name: role} of a chat's members as `who` reads them; null when `who`
// cannot read them. Names come from `names` ({user id: name}) so that a
// failure reads as people, not ids.
async function membersOf(stack, who, chatId, names = {}) {
    const res = await stack.get(`/v1/chats/${chatId}/members?limit=200`, tok(who));
    if (res.status !== 200) return null;
    const out = {};
    for (const m of res.json.items) out[names[m.user.id] || m.user.id] = m.role;
    return out;
}

async function historyOf(stack, who, chatId, query = '') {
    return expectStatus(await stack.get(`/v1/chats/${chatId}/messages${query}`, tok(who)), 200,
        `history of ${chatId}${query} as ${who.name}`);
}

async function allMessages(stack, who, chatId) {
    return (await historyOf(stack, who, chatId, '?limit=200')).items;
}

async function post(stack, who, chatId, text, extra = {}) {
    return expectStatus(await stack.post(`/v1/chats/${chatId}/messages`, { text, ...extra }, tok(who)), 201,
        `${who.name} posts «${text.slice(0, 40)}»`);
}

async function getChat(stack, who, chatId) {
    return expectStatus(await stack.get(`/v1/chats/${chatId}`, tok(who)), 200, `GET chat as ${who.name}`);
}

// Polls `get` until it returns `expected` (deep equality) or SYNC_MS
// passes, then asserts it: the chat service follows events, so what
// depends on them is right shortly, not at once.
async function settles(stack, what, get, expected) {
    let last;
    await waitFor(async () => {
        last = await get();
        return isDeepStrictEqual(last, expected);
    }, { timeoutMs: SYNC_MS, intervalMs: 100 });
    assert.deepEqual(last, expected, `${what}\n${stack.logTails(8, ['org', 'chat'])}`);
}

// A chat made by `who` through the API: 201 and the chat.
async function newChat(stack, org, who, body) {
    return expectStatus(await stack.post(`/v1/orgs/${org.id}/chats`, body, tok(who)), 201,
        `${who.name} creates ${JSON.stringify(body)}`);
}

const searchAs = async (stack, who, q, extra = '') => expectStatus(
    await stack.get(`/v1/search/messages?q=${encodeURIComponent(q)}${extra}`, tok(who)), 200, `search «${q}» as ${who.name}`);

// --- the college ---

// Two groups with verified curators, an unverified teacher, administration,
// students with their parents (one of each group to be moved later), an
// outsider, and a second college with its own people.
async function buildCollege(stack) {
    const a = await newOrg(stack, 'Рязанский политехнический колледж', 'РПК');
    a.admin.name = 'Администратор РПК';
    const dep = await newUnit(stack, a, { kind: 'department', name: 'Отделение информационных технологий' });
    const g1 = await newUnit(stack, a, { kind: 'group', name: 'Программисты', code: 'ИС-21', year: 2, parent_id: dep.id });
    const g2 = await newUnit(stack, a, { kind: 'group', name: 'Сетевики', code: 'ИС-22', year: 2, parent_id: dep.id });
    const t1 = await teacher(stack, a, 'Пётр Кураторов', { verified: true, curatorOf: g1 });
    const t2 = await teacher(stack, a, 'Ольга Кураторова', { verified: true, curatorOf: g2 });
    const t3 = await teacher(stack, a, 'Новый Преподаватель');
    const adm = await member(stack, a, 'administration', 'Завуч Иванова');
    const s1 = await student(stack, a, g1, 'Анна Студентова');
    const s2 = await student(stack, a, g1, 'Борис Студентов');
    const s5 = await student(stack, a, g1, 'Вера Переводова');
    const s3 = await student(stack, a, g2, 'Галина Сетевая');
    const s6 = await student(stack, a, g2, 'Глеб Отчисляемый');
    const p1 = await parentOf(stack, a, s1, 'Мама Анны');
    const p2 = await parentOf(stack, a, s2, 'Папа Бориса');
    const p5 = await parentOf(stack, a, s5, 'Мама Веры');
    const p3 = await parentOf(stack, a, s3, 'Папа Галины');
    const outsider = await signUp(stack, { fullName: 'Посторонний Человек' });
    outsider.name = 'Посторонний Человек';

    const b = await newOrg(stack, 'Медицинский колледж имени Павлова', 'МК');
    b.admin.name = 'Администратор МК';
    const gb = await newUnit(stack, b, { kind: 'group', name: 'Медсёстры', code: 'МС-31', year: 3 });
    const tb = await teacher(stack, b, 'Учитель Другого Колледжа', { verified: true, curatorOf: gb });
    const sb = await student(stack, b, gb, 'Студент Другого Колледжа');

    const w = { a, dep, g1, g2, t1, t2, t3, adm, s1, s2, s3, s5, s6, p1, p2, p3, p5, outsider, b, gb, tb, sb };
    w.names = {};
    for (const v of [...Object.values(w), a.admin, b.admin]) if (v && v.user) w.names[v.user.id] = v.name;
    return w;
}

// The automatic chats, once the chat service has made them: their ids.
async function findAutoChats(stack, w) {
    const find = async (who, pred, what) => {
        let found = null;
        await waitFor(async () => {
            found = (await chatsOf(stack, who, w.a.id)).find(pred) || null;
            return found;
        }, { timeoutMs: SYNC_MS, intervalMs: 100 });
        assert.ok(found, `${what} exists\n${stack.logTails(10, ['org', 'chat'])}`);
        return found.id;
    };
    return {
        g1: await find(w.t1, (c) => c.unit_id === w.g1.id && c.audience === 'students', 'the group chat of ИС-21'),
        g1p: await find(w.t1, (c) => c.unit_id === w.g1.id && c.audience === 'parents', 'the parents chat of ИС-21'),
        g2: await find(w.t2, (c) => c.unit_id === w.g2.id && c.audience === 'students', 'the group chat of ИС-22'),
        g2p: await find(w.t2, (c) => c.unit_id === w.g2.id && c.audience === 'parents', 'the parents chat of ИС-22'),
        general: await find(w.a.admin, (c) => c.audience === 'all', 'the general channel'),
        staff: await find(w.a.admin, (c) => c.audience === 'staff', 'the staff channel'),
    };
}

describe('a college\'s chats', { timeout: 900000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    let w;
    let ch;
    before(async () => {
        stack = suiteStack();
        w = await buildCollege(stack);
        ch = await findAutoChats(stack, w);
    });
    beforeEach(() => { stack = suiteStack(); });

    it('every group has a group chat (its students, the curator owning it) and a parents chat (its students\' guardians, the curator owning it)', async () => {
        const m = (who, chatId) => () => membersOf(stack, who, chatId, w.names);
        await settles(stack, 'the group chat of ИС-21: its students, the curator as owner', m(w.t1, ch.g1), {
            'Пётр Кураторов': 'owner', 'Анна Студентова': 'member', 'Борис Студентов': 'member', 'Вера Переводова': 'member',
        });
        await settles(stack, 'the parents chat of ИС-21: the guardians of its students, the curator as owner', m(w.t1, ch.g1p), {
            'Пётр Кураторов': 'owner', 'Мама Анны': 'member', 'Папа Бориса': 'member', 'Мама Веры': 'member',
        });
        await settles(stack, 'the group chat of ИС-22', m(w.t2, ch.g2), {
            'Ольга Кураторова': 'owner', 'Галина Сетевая': 'member', 'Глеб Отчисляемый': 'member',
        });
        await settles(stack, 'the parents chat of ИС-22', m(w.t2, ch.g2p), {
            'Ольга Кураторова': 'owner', 'Папа Галины': 'member',
        });
        // What the chats say of themselves, as their members see them.
        const g1 = await getChat(stack, w.s1, ch.g1);
        assert.equal(g1.kind, 'group');
        assert.equal(g1.org_id, w.a.id);
        assert.equal(g1.unit_id, w.g1.id);
        assert.equal(g1.audience, 'students');
        assert.equal(g1.who_can_post, 'all');
        assert.equal(g1.role, 'member', 'the student\'s own role');
        assert.match(g1.title, /ИС-21/);
        const g1p = await getChat(stack, w.p1, ch.g1p);
        assert.equal(g1p.audience, 'parents');
        assert.equal(g1p.unit_id, w.g1.id);
        assert.equal((await getChat(stack, w.t1, ch.g1p)).role, 'owner', 'the curator owns the parents chat');
        // Each person's list: exactly the chats they belong to.
        const audiences = async (who) => (await chatsOf(stack, who, w.a.id))
            .map((c) => `${c.audience}${c.unit_id ? ':' + (c.unit_id === w.g1.id ? 'ИС-21' : 'ИС-22') : ''}`).sort();
        assert.deepEqual(await audiences(w.s1), ['all', 'students:ИС-21']);
        assert.deepEqual(await audiences(w.p1), ['all', 'parents:ИС-21']);
        assert.deepEqual(await audiences(w.t1), ['all', 'parents:ИС-21', 'staff', 'students:ИС-21']);
        assert.deepEqual(await audiences(w.t3), ['all', 'staff']);
        assert.deepEqual(await audiences(w.outsider), []);
        assert.deepEqual(await chatsOf(stack, w.sb, w.a.id), [], 'the other college\'s student sees none of this college\'s chats');
    });

    it('the general channel: everyone of the org reads, only admins post (administration\'s, a student\'s or a teacher\'s post is 403 and not stored); the staff channel is for staff only, admins and administration post there', async () => {
        const everyone = {
            'Администратор РПК': 'moderator', 'Завуч Иванова': 'member',
            'Пётр Кураторов': 'member', 'Ольга Кураторова': 'member', 'Новый Преподаватель': 'member',
            'Анна Студентова': 'member', 'Борис Студентов': 'member', 'Вера Переводова': 'member',
            'Галина Сетевая': 'member', 'Глеб Отчисляемый': 'member',
            'Мама Анны': 'member', 'Папа Бориса': 'member', 'Мама Веры': 'member', 'Папа Галины': 'member',
        };
        await settles(stack, 'the general channel: the whole org, admins moderate',
            () => membersOf(stack, w.a.admin, ch.general, w.names), everyone);
        await settles(stack, 'the staff channel: admins, administration and teachers only',
            () => membersOf(stack, w.a.admin, ch.staff, w.names), {
                'Администратор РПК': 'moderator', 'Завуч Иванова': 'moderator',
                'Пётр Кураторов': 'member', 'Ольга Кураторова': 'member', 'Новый Преподаватель': 'member',
            });
        const general = await getChat(stack, w.s1, ch.general);
        assert.equal(general.kind, 'channel');
        assert.equal(general.audience, 'all');
        assert.equal(general.who_can_post, 'moderators');
        assert.equal(general.unit_id, null);

        const before = (await allMessages(stack, w.a.admin, ch.general)).length;
        const news = await post(stack, w.a.admin, ch.general, 'Внимание: 1 сентября линейка в 9:00 во дворе колледжа.');
        assertError(await stack.post(`/v1/chats/${ch.general}/messages`, { text: 'Расписание на первую неделю опубликовано.' }, tok(w.adm)),
            403, 'forbidden', undefined, 'administration posts in the general channel');
        assertError(await stack.post(`/v1/chats/${ch.general}/messages`, { text: 'А можно без линейки?' }, tok(w.s1)),
            403, 'forbidden', undefined, 'a student posts in the general channel');
        assertError(await stack.post(`/v1/chats/${ch.general}/messages`, { text: 'Уточните аудиторию' }, tok(w.t1)),
            403, 'forbidden', undefined, 'a teacher posts in the general channel');
        assertError(await stack.post(`/v1/chats/${ch.general}/messages`, { text: 'Я тоже приду' }, tok(w.p1)),
            403, 'forbidden', undefined, 'a parent posts in the general channel');
        // Everyone reads what the admins posted, and nothing else was stored.
        for (const who of [w.s1, w.p3, w.t3]) {
            const items = await allMessages(stack, who, ch.general);
            assert.deepEqual(items.slice(before).map((x) => x.id), [news.id], `${who.name} reads the channel`);
        }
        // The staff channel: no student or parent reads or posts there.
        for (const who of [w.s1, w.p1, w.outsider, w.sb]) {
            assertError(await stack.get(`/v1/chats/${ch.staff}/messages`, tok(who)), 404, 'not_found', 'chat_id',
                `${who.name} reads the staff channel`);
            assertError(await stack.post(`/v1/chats/${ch.staff}/messages`, { text: 'Здравствуйте' }, tok(who)), 404,
                'not_found', 'chat_id', `${who.name} posts in the staff channel`);
        }
        const staffNote = await post(stack, w.adm, ch.staff, 'Педсовет в четверг в 15:00.');
        assert.deepEqual((await allMessages(stack, w.t3, ch.staff)).map((x) => x.id), [staffNote.id],
            'a teacher reads the staff channel; the refused posts left nothing');
        // Outsiders and the other college read none of it.
        for (const who of [w.outsider, w.sb, w.tb])
            assertError(await stack.get(`/v1/chats/${ch.general}/messages`, tok(who)), 404, 'not_found', 'chat_id',
                `${who.name} reads the general channel`);
    });

    it('a curator posts in the group chat; a student reads it and replies; a reply to a message of another chat is 400', async () => {
        const announce = 'Завтра классный час в 14:00, аудитория 305.';
        const m = await post(stack, w.t1, ch.g1, announce);
        assert.equal(m.chat_id, ch.g1);
        assert.equal(m.text, announce);
        assert.deepEqual(m.author, { id: w.t1.user.id, full_name: 'Пётр Кураторов' });
        assert.equal(m.reply_to, null);
        assert.deepEqual(m.attachments, []);
        assert.match(m.created_at, RFC3339);
        assert.equal(m.edited_at, null);
        assert.equal(m.deleted, false);
        assert.ok(Number.isInteger(m.seq) && m.seq >= 1, JSON.stringify(m));

        const seen = await allMessages(stack, w.s1, ch.g1);
        assert.deepEqual(seen[seen.length - 1], m, 'the student reads the curator\'s message as posted');
        const reply = await post(stack, w.s1, ch.g1, 'Буду обязательно!', { reply_to: m.id });
        assert.equal(reply.reply_to, m.id);
        assert.equal(reply.seq, m.seq + 1);
        assert.deepEqual(reply.author, { id: w.s1.user.id, full_name: 'Анна Студентова' });

        // A reply to a message of another chat (even one the student can
        // read) or to no message is refused and stores nothing.
        const elsewhere = await post(stack, w.t2, ch.g2, 'Сетевики, завтра лабораторная.');
        const general = (await allMessages(stack, w.s1, ch.general)).pop();
        assert.ok(general, 'the general channel has a message to point at');
        for (const other of [elsewhere.id, general.id, NO_SUCH_ID, 'not-an-id'])
            assertError(await stack.post(`/v1/chats/${ch.g1}/messages`, { text: 'ответ не туда', reply_to: other }, tok(w.s1)),
                400, 'bad_request', 'reply_to', `reply_to ${other}`);
        const after = await allMessages(stack, w.t1, ch.g1);
        assert.deepEqual(after.slice(-2).map((x) => x.id), [m.id, reply.id], 'the curator reads the reply; nothing else was stored');
    });

    it('a parent is not in the students\' group chat: reading it, its members or posting there is 404, as for a chat that does not exist', async () => {
        const before = await allMessages(stack, w.t1, ch.g1);
        const missing = await stack.get(`/v1/chats/${NO_SUCH_ID}`, tok(w.p1));
        assertError(missing, 404, 'not_found', 'chat_id');
        const chat = await stack.get(`/v1/chats/${ch.g1}`, tok(w.p1));
        assertError(chat, 404, 'not_found', 'chat_id', 'a parent reads the students\' chat');
        assert.deepEqual(chat.json, missing.json, 'the same answer as for no chat: nothing tells the chat exists');
        assertError(await stack.get(`/v1/chats/${ch.g1}/messages`, tok(w.p1)), 404, 'not_found', 'chat_id');
        assertError(await stack.get(`/v1/chats/${ch.g1}/members`, tok(w.p1)), 404, 'not_found', 'chat_id');
        assertError(await stack.post(`/v1/chats/${ch.g1}/messages`, { text: 'Дети, слушайтесь куратора' }, tok(w.p1)),
            404, 'not_found', 'chat_id');
        assertError(await stack.post(`/v1/chats/${ch.g1}/read`, { seq: 1 }, tok(w.p1)), 404, 'not_found', 'chat_id');
        assert.deepEqual(await allMessages(stack, w.t1, ch.g1), before, 'the parent\'s post was not stored');
        // The parents chat is theirs; the students do not read it.
        const q = await post(stack, w.p1, ch.g1p, 'Во сколько родительское собрание?');
        const a = await post(stack, w.t1, ch.g1p, 'В пятницу в 18:00.', { reply_to: q.id });
        assert.deepEqual((await allMessages(stack, w.p2, ch.g1p)).slice(-2).map((x) => x.id), [q.id, a.id]);
        assertError(await stack.get(`/v1/chats/${ch.g1p}/messages`, tok(w.s1)), 404, 'not_found', 'chat_id',
            'a student reads the parents chat');
        assertError(await stack.get(`/v1/chats/${ch.g2p}/messages`, tok(w.p1)), 404, 'not_found', 'chat_id',
            'a parent reads the parents chat of another group');
    });

    it('a transferred student leaves the old group\'s chats and joins the new one\'s, and so does their parent', async () => {
        const oldNote = await post(stack, w.t1, ch.g1, 'Вера, не забудь сдать зачётку.');
        expectStatus(await stack.get(`/v1/chats/${ch.g1}/messages`, tok(w.s5)), 200, 'before the transfer the student reads ИС-21');
        await move(stack, w.a, { kind: 'transfer', user_id: w.s5.user.id, unit_id: w.g2.id, order_number: '45-у' });
        const m = (who, chatId) => () => membersOf(stack, who, chatId, w.names);
        await settles(stack, 'ИС-21\'s chat without the transferred student', m(w.t1, ch.g1), {
            'Пётр Кураторов': 'owner', 'Анна Студентова': 'member', 'Борис Студентов': 'member',
        });
        await settles(stack, 'ИС-22\'s chat with the transferred student', m(w.t2, ch.g2), {
            'Ольга Кураторова': 'owner', 'Галина Сетевая': 'member', 'Глеб Отчисляемый': 'member', 'Вера Переводова': 'member',
        });
        await settles(stack, 'ИС-21\'s parents chat without her mother', m(w.t1, ch.g1p), {
            'Пётр Кураторов': 'owner', 'Мама Анны': 'member', 'Папа Бориса': 'member',
        });
        await settles(stack, 'ИС-22\'s parents chat with her mother', m(w.t2, ch.g2p), {
            'Ольга Кураторова': 'owner', 'Папа Галины': 'member', 'Мама Веры': 'member',
        });
        // Out of the old chat: neither reading nor posting; in the new one: both.
        assertError(await stack.get(`/v1/chats/${ch.g1}/messages`, tok(w.s5)), 404, 'not_found', 'chat_id');
        assertError(await stack.post(`/v1/chats/${ch.g1}/messages`, { text: 'Я ещё здесь?' }, tok(w.s5)), 404, 'not_found', 'chat_id');
        assert.equal((await allMessages(stack, w.t1, ch.g1)).pop().id, oldNote.id, 'her refused post was not stored');
        assertError(await stack.get(`/v1/chats/${ch.g1p}/messages`, tok(w.p5)), 404, 'not_found', 'chat_id');
        const hello = await post(stack, w.s5, ch.g2, 'Всем привет, я теперь с вами!');
        assert.equal((await allMessages(stack, w.t2, ch.g2)).pop().id, hello.id);
        expectStatus(await stack.get(`/v1/chats/${ch.g2p}/messages`, tok(w.p5)), 200, 'her mother reads ИС-22\'s parents chat');
        const audiences = (await chatsOf(stack, w.s5, w.a.id)).map((c) => `${c.audience}:${c.unit_id}`).sort();
        assert.deepEqual(audiences, ['all:null', `students:${w.g2.id}`].sort(), 'her list: the general channel and ИС-22');
    });

    it('an expelled student loses access at once: reading and posting are refused as soon as the expulsion is recorded; the roster chats drop them', async () => {
        expectStatus(await stack.get(`/v1/chats/${ch.g2}/messages`, tok(w.s6)), 200, 'before: the student reads ИС-22');
        const last = (await allMessages(stack, w.t2, ch.g2)).pop();
        await move(stack, w.a, { kind: 'expel', user_id: w.s6.user.id, order_number: '77-у', note: 'по собственному желанию' });
        // Right after the call returns: the gateway asks identity afresh,
        // and identity revoked the role before the movement was answered.
        assertError(await stack.get(`/v1/chats/${ch.g2}/messages`, tok(w.s6)), 404, 'not_found', 'chat_id',
            'the expelled student reads the group chat');
        assertError(await stack.post(`/v1/chats/${ch.g2}/messages`, { text: 'Последнее слово' }, tok(w.s6)), 404,
            'not_found', 'chat_id', 'the expelled student posts in the group chat');
        assertError(await stack.get(`/v1/chats/${ch.general}/messages`, tok(w.s6)), 404, 'not_found', 'chat_id',
            'the expelled student reads the general channel');
        assert.deepEqual(await chatsOf(stack, w.s6, w.a.id), [], 'none of the college\'s chats is listed for them');
        assert.equal((await allMessages(stack, w.t2, ch.g2)).pop().id, last.id, 'the refused post was not stored');
        await settles(stack, 'ИС-22\'s chat without the expelled student', () => membersOf(stack, w.t2, ch.g2, w.names), {
            'Ольга Кураторова': 'owner', 'Галина Сетевая': 'member', 'Вера Переводова': 'member',
        });
        await settles(stack, 'the general channel without the expelled student',
            async () => Object.keys(await membersOf(stack, w.a.admin, ch.general, w.names)).includes('Глеб Отчисляемый'), false);
    });

    it('direct chats: within the org (get or create: 201, then 200 with the same chat from either side); never with someone outside it', async () => {
        // Outside the org: refused, nothing made.
        assertError(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: w.outsider.user.id }, tok(w.s1)), 404,
            'not_found', 'user_id', 'a student writes to someone outside the org');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: w.sb.user.id }, tok(w.s1)), 404,
            'not_found', 'user_id', 'a student writes to a student of another college');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: w.s1.user.id }, tok(w.tb)), 404,
            'not_found', 'org_id', 'a teacher of another college writes to our student through our org');
        assertError(await stack.post(`/v1/orgs/${w.b.id}/direct`, { user_id: w.s1.user.id }, tok(w.tb)), 404,
            'not_found', 'user_id', 'a teacher of another college writes to our student through their org');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: w.s6.user.id }, tok(w.s1)), 404,
            'not_found', 'user_id', 'the expelled student is no longer in the org');
        assertError(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: w.s1.user.id }, tok(w.s1)), 400,
            'bad_request', 'user_id', 'a direct chat with oneself');
        for (const who of [w.s1, w.outsider, w.sb, w.tb])
            assert.deepEqual((await chatsOf(stack, who)).filter((c) => c.kind === 'direct'), [], `${who.name} has no direct chat`);

        // Within the org: get or create.
        const first = await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: w.t2.user.id }, tok(w.s1));
        const chat = expectStatus(first, 201, 'the first time creates');
        assert.equal(chat.kind, 'direct');
        assert.equal(chat.org_id, w.a.id);
        assert.equal(chat.audience, null);
        assert.equal(chat.title, 'Ольга Кураторова', 'the student sees the teacher\'s name as the title');
        const again = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: w.t2.user.id }, tok(w.s1)), 200,
            'the second time gets');
        assert.equal(again.id, chat.id);
        const theirs = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: w.s1.user.id }, tok(w.t2)), 200,
            'the other side gets the same chat');
        assert.equal(theirs.id, chat.id);
        assert.equal(theirs.title, 'Анна Студентова', 'the teacher sees the student\'s name as the title');
        assert.deepEqual(await membersOf(stack, w.t2, chat.id, w.names), { 'Анна Студентова': 'member', 'Ольга Кураторова': 'member' });
        const q = await post(stack, w.s1, chat.id, 'Ольга Николаевна, можно пересдать контрольную?');
        const a = await post(stack, w.t2, chat.id, 'Да, в среду после пар.', { reply_to: q.id });
        assert.deepEqual((await allMessages(stack, w.s1, chat.id)).map((x) => x.id), [q.id, a.id]);
        // Nobody else reads it.
        for (const who of [w.s2, w.t1, w.a.admin])
            assertError(await stack.get(`/v1/chats/${chat.id}/messages`, tok(who)), 404, 'not_found', 'chat_id',
                `${who.name} reads someone else's direct chat`);
        const listed = (await chatsOf(stack, w.s1)).filter((c) => c.kind === 'direct');
        assert.deepEqual(listed.map((c) => [c.id, c.title]), [[chat.id, 'Ольга Кураторова']],
            'one direct chat in the student\'s list, named after the teacher');
    });

    it('a direct chat re-opened after the other person left the org and came back has both people again', async () => {
        const x = await member(stack, w.a, 'parent', 'Родитель Вернувшийся');
        const names = { ...w.names, [x.user.id]: x.name };
        const chat = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: x.user.id }, tok(w.t1)), 201);
        const before = await post(stack, w.t1, chat.id, 'Здравствуйте! Напоминаю про собрание.');
        // They lose their only role: out of every chat of the org.
        assert.equal((await stack.del(`/v1/orgs/${w.a.id}/members/${x.user.id}/roles/parent`, tok(w.a.admin))).status, 204);
        await settles(stack, 'the direct chat without the one who left', () => membersOf(stack, w.t1, chat.id, names),
            { 'Пётр Кураторов': 'member' });
        assertError(await stack.get(`/v1/chats/${chat.id}/messages`, tok(x)), 404, 'not_found', 'chat_id', 'out of the org: no reading');
        // Back in the org; the one who stayed opens the chat again.
        expectStatus(await stack.post(`/v1/orgs/${w.a.id}/members/${x.user.id}/roles`, { role: 'parent' }, tok(w.a.admin)), 200);
        const again = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: x.user.id }, tok(w.t1)), 200,
            'the direct chat is found again');
        assert.equal(again.id, chat.id);
        assert.deepEqual(await membersOf(stack, w.t1, chat.id, names), { 'Пётр Кураторов': 'member', 'Родитель Вернувшийся': 'member' },
            'both people are members again');
        const after = await post(stack, w.t1, chat.id, 'С возвращением!');
        assert.deepEqual((await allMessages(stack, x, chat.id)).map((m) => m.id), [before.id, after.id], 'the other reads it');
        await post(stack, x, chat.id, 'Спасибо, буду.');
        assert.ok((await chatsOf(stack, x, w.a.id)).some((c) => c.id === chat.id), 'it is in their list');
    });

    it('who creates chats: not students, parents or outsiders; staff do; only a verified teacher or an admin makes one with students or parents', async () => {
        const refused = [
            [w.s1, { kind: 'group', title: 'Чат студентов без куратора' }, 403, 'forbidden'],
            [w.s1, { kind: 'channel', title: 'Канал студентов' }, 403, 'forbidden'],
            [w.p1, { kind: 'group', title: 'Родительский комитет', member_ids: [w.p2.user.id] }, 403, 'forbidden'],
            [w.outsider, { kind: 'group', title: 'Чужой чат' }, 404, 'not_found'],
            [w.sb, { kind: 'group', title: 'Чат из другого колледжа' }, 404, 'not_found'],
            [w.tb, { kind: 'group', title: 'Учитель из другого колледжа', member_ids: [w.s1.user.id] }, 404, 'not_found'],
            // An unverified teacher: staff only.
            [w.t3, { kind: 'group', title: 'Информатика ИС-21', member_ids: [w.s1.user.id] }, 403, 'forbidden'],
            [w.t3, { kind: 'group', title: 'С родителями', member_ids: [w.t1.user.id, w.p1.user.id] }, 403, 'forbidden'],
            [w.t3, { kind: 'group', title: 'Информатика ИС-22', unit_id: w.g2.id, audience: 'students' }, 403, 'forbidden'],
            [w.t3, { kind: 'group', title: 'Родители ИС-22', unit_id: w.g2.id, audience: 'parents' }, 403, 'forbidden'],
            // Administration is staff, but not a verified teacher.
            [w.adm, { kind: 'group', title: 'Совет обучающихся', member_ids: [w.s1.user.id, w.s3.user.id] }, 403, 'forbidden'],
            // A teacher does not make org-wide chats.
            [w.t1, { kind: 'channel', title: 'Всем-всем', audience: 'all' }, 403, 'forbidden'],
            // Administration makes org-wide chats, but "all" includes the
            // students and parents: only an admin makes that one.
            [w.adm, { kind: 'channel', title: 'Всем от завуча', audience: 'all' }, 403, 'forbidden'],
        ];
        for (const [who, body, status, code] of refused)
            assertError(await stack.post(`/v1/orgs/${w.a.id}/chats`, body, tok(who)), status, code, undefined,
                `${who.name} creates ${JSON.stringify(body)}`);
        const titles = new Set(refused.map(([, body]) => body.title));
        for (const who of [w.s1, w.s3, w.p1, w.p2, w.t1, w.t3, w.adm, w.outsider, w.sb, w.tb])
            assert.deepEqual((await chatsOf(stack, who)).filter((c) => titles.has(c.title)).map((c) => c.title), [],
                `no refused chat was made (as ${who.name} sees)`);

        // Staff make staff chats, verified or not.
        const mo = await newChat(stack, w.a, w.t3, { kind: 'group', title: 'Методобъединение', description: 'Преподаватели ИТ',
            member_ids: [w.t1.user.id, w.t2.user.id] });
        assert.equal(mo.kind, 'group');
        assert.equal(mo.title, 'Методобъединение');
        assert.equal(mo.description, 'Преподаватели ИТ');
        assert.equal(mo.audience, null);
        assert.equal(mo.role, 'owner');
        assert.deepEqual(await membersOf(stack, w.t1, mo.id, w.names),
            { 'Новый Преподаватель': 'owner', 'Пётр Кураторов': 'member', 'Ольга Кураторова': 'member' });
        const council = await newChat(stack, w.a, w.adm, { kind: 'group', title: 'Совещание при директоре',
            member_ids: [w.t1.user.id, w.a.admin.user.id] });
        assert.deepEqual(await membersOf(stack, w.adm, council.id, w.names),
            { 'Завуч Иванова': 'owner', 'Пётр Кураторов': 'member', 'Администратор РПК': 'member' });
        // A verified teacher: with students and parents by hand, or a
        // subject chat following a group's roster.
        const trip = await newChat(stack, w.a, w.t1, { kind: 'group', title: 'Экскурсия на завод',
            member_ids: [w.s1.user.id, w.s2.user.id, w.p1.user.id] });
        assert.deepEqual(await membersOf(stack, w.s1, trip.id, w.names), {
            'Пётр Кураторов': 'owner', 'Анна Студентова': 'member', 'Борис Студентов': 'member', 'Мама Анны': 'member',
        });
        const maths = await newChat(stack, w.a, w.t1, { kind: 'group', title: 'Математика ИС-22', unit_id: w.g2.id, audience: 'students' });
        assert.equal(maths.audience, 'students');
        assert.equal(maths.unit_id, w.g2.id);
        assert.deepEqual(await membersOf(stack, w.t1, maths.id, w.names), {
            'Пётр Кураторов': 'owner', 'Галина Сетевая': 'member', 'Вера Переводова': 'member',
        }, 'the subject chat has the group\'s students now, its maker as owner');
        // The admin: a channel for a group's parents.
        const notices = await newChat(stack, w.a, w.a.admin, { kind: 'channel', title: 'Объявления для родителей ИС-22',
            unit_id: w.g2.id, audience: 'parents' });
        assert.equal(notices.who_can_post, 'moderators');
        assert.deepEqual(await membersOf(stack, w.a.admin, notices.id, w.names), {
            'Администратор РПК': 'owner', 'Папа Галины': 'member', 'Мама Веры': 'member',
        });
        // And students see the chats they were put in.
        const s1Titles = (await chatsOf(stack, w.s1, w.a.id)).map((c) => c.title);
        assert.ok(s1Titles.includes('Экскурсия на завод') && !s1Titles.includes('Математика ИС-22'), JSON.stringify(s1Titles));
    });

    it('a hand-made chat keeps an owner: its last owner cannot step down or leave (409), one of several can', async () => {
        const c = await newChat(stack, w.a, w.t1, { kind: 'group', title: 'Кружок робототехники',
            member_ids: [w.s1.user.id, w.t2.user.id] });
        const members = () => membersOf(stack, w.t1, c.id, w.names);
        assert.deepEqual(await members(), { 'Пётр Кураторов': 'owner', 'Анна Студентова': 'member', 'Ольга Кураторова': 'member' });
        const lastOwner = async (res, what) => {
            assertError(res, 409, 'last_owner', 'user_id', what);
            assert.match(res.json.error.message, /owner/, `${what}: the message says why`);
        };
        for (const role of ['member', 'moderator', 'readonly'])
            await lastOwner(await stack.patch(`/v1/chats/${c.id}/members/${w.t1.user.id}`, { role }, tok(w.t1)),
                `the last owner makes themself ${role}`);
        await lastOwner(await stack.del(`/v1/chats/${c.id}/members/${w.t1.user.id}`, tok(w.t1)), 'the last owner leaves');
        assert.deepEqual(await members(), { 'Пётр Кураторов': 'owner', 'Анна Студентова': 'member', 'Ольга Кураторова': 'member' },
            'the refusals changed nothing');
        // With a second owner, either may step down; then the other is the last.
        expectStatus(await stack.patch(`/v1/chats/${c.id}/members/${w.t2.user.id}`, { role: 'owner' }, tok(w.t1)), 200,
            'the owner names a second owner');
        expectStatus(await stack.patch(`/v1/chats/${c.id}/members/${w.t1.user.id}`, { role: 'moderator' }, tok(w.t1)), 200,
            'one of two owners steps down');
        await lastOwner(await stack.del(`/v1/chats/${c.id}/members/${w.t2.user.id}`, tok(w.t2)), 'the new last owner leaves');
        await lastOwner(await stack.patch(`/v1/chats/${c.id}/members/${w.t2.user.id}`, { role: 'member' }, tok(w.t2)),
            'the new last owner steps down');
        assert.deepEqual(await members(), { 'Пётр Кураторов': 'moderator', 'Анна Студентова': 'member', 'Ольга Кураторова': 'owner' });
        // A moderator leaves as anyone may.
        assert.equal((await stack.del(`/v1/chats/${c.id}/members/${w.t1.user.id}`, tok(w.t1))).status, 204, 'a moderator leaves');
        assert.deepEqual(await membersOf(stack, w.t2, c.id, w.names), { 'Анна Студентова': 'member', 'Ольга Кураторова': 'owner' });
    });

    it('messages: the author edits (edited_at shown, others 403); author, chat moderator or org admin delete (a tombstone stays in the history)', async () => {
        const c = await newChat(stack, w.a, w.t1, { kind: 'group', title: 'Курсовые проекты',
            member_ids: [w.s1.user.id, w.s2.user.id, w.t2.user.id, w.a.admin.user.id] });
        const m1 = await post(stack, w.s1, c.id, 'Тема курсовой: база данных библиотеки');
        const m2 = await post(stack, w.t2, c.id, 'Сдача черновиков до 15 ноября');
        const m3 = await post(stack, w.s2, c.id, 'А можно тему про сети?');
        const m4 = await post(stack, w.t1, c.id, 'Консультация в четверг');

        // Edit by the author.
        const edited = expectStatus(await stack.patch(`/v1/chats/${c.id}/messages/${m1.id}`,
            { text: 'Тема курсовой: база данных школьной библиотеки' }, tok(w.s1)), 200, 'the author edits');
        assert.equal(edited.id, m1.id);
        assert.equal(edited.seq, m1.seq);
        assert.equal(edited.text, 'Тема курсовой: база данных школьной библиотеки');
        assert.match(String(edited.edited_at), RFC3339, 'edited_at is set');
        assert.equal(edited.created_at, m1.created_at);
        // Nobody else edits: not the chat's owner, not the org's admin.
        for (const who of [w.t1, w.a.admin, w.s2])
            assertError(await stack.patch(`/v1/chats/${c.id}/messages/${m1.id}`, { text: 'Чужая правка' }, tok(who)),
                403, 'forbidden', undefined, `${who.name} edits someone else's message`);
        const seen = (await allMessages(stack, w.s2, c.id)).find((x) => x.id === m1.id);
        assert.deepEqual(seen, edited, 'the others read the author\'s edit, nothing of the refused ones');

        // Delete: a plain member may not delete another's message.
        assertError(await stack.del(`/v1/chats/${c.id}/messages/${m4.id}`, tok(w.t2)), 403, 'forbidden', undefined,
            'a member deletes the owner\'s message');
        assertError(await stack.del(`/v1/chats/${c.id}/messages/${m1.id}`, tok(w.s2)), 403, 'forbidden', undefined,
            'a student deletes another student\'s message');
        // The author, the chat's owner (a moderator), an org admin may.
        assert.equal((await stack.del(`/v1/chats/${c.id}/messages/${m1.id}`, tok(w.s1))).status, 204, 'the author deletes');
        assert.equal((await stack.del(`/v1/chats/${c.id}/messages/${m3.id}`, tok(w.t1))).status, 204, 'the chat owner deletes');
        assert.equal((await stack.del(`/v1/chats/${c.id}/messages/${m2.id}`, tok(w.a.admin))).status, 204,
            'the org admin (a plain member here) deletes');
        assertError(await stack.del(`/v1/chats/${c.id}/messages/${m1.id}`, tok(w.s1)), 404, 'not_found', 'id', 'deleting twice');
        assertError(await stack.patch(`/v1/chats/${c.id}/messages/${m1.id}`, { text: 'воскрешение' }, tok(w.s1)), 404,
            'not_found', 'id', 'editing a deleted message');
        const items = await allMessages(stack, w.s2, c.id);
        assert.deepEqual(items.map((x) => [x.seq, x.deleted]), [[m1.seq, true], [m2.seq, true], [m3.seq, true], [m4.seq, false]],
            'the deleted messages stay in place as tombstones');
        for (const t of items.slice(0, 3)) {
            assert.equal(t.text, '', `a tombstone shows no text: ${JSON.stringify(t)}`);
            assert.ok(t.id && t.author && t.author.id, `a tombstone keeps its id and author: ${JSON.stringify(t)}`);
        }
        assert.equal(items[3].text, 'Консультация в четверг');
        assert.equal((await getChat(stack, w.s2, c.id)).last_message.id, m4.id);

        // An org admin deletes in any chat of the org, even one they are not
        // in (a group chat), without being able to read it; an admin of
        // another org, or staff who are not in the chat, get 404.
        const inGroup = await post(stack, w.s2, ch.g1, 'Кто-нибудь решил пятую задачу?');
        for (const who of [w.b.admin, w.t2, w.p2])
            assertError(await stack.del(`/v1/chats/${ch.g1}/messages/${inGroup.id}`, tok(who)), 404, 'not_found', 'chat_id',
                `${who.name} deletes in a chat they do not see`);
        assert.equal((await allMessages(stack, w.t1, ch.g1)).find((x) => x.id === inGroup.id).deleted, false, 'the refusals deleted nothing');
        assert.equal((await stack.del(`/v1/chats/${ch.g1}/messages/${inGroup.id}`, tok(w.a.admin))).status, 204,
            'the org admin deletes in a group chat they are not in');
        const tomb = (await allMessages(stack, w.s1, ch.g1)).find((x) => x.id === inGroup.id);
        assert.deepEqual([tomb.deleted, tomb.text], [true, ''], 'the group reads a tombstone');
        assertError(await stack.get(`/v1/chats/${ch.g1}/messages`, tok(w.a.admin)), 404, 'not_found', 'chat_id',
            'deleting gave the admin no reading');
        assertError(await stack.del(`/v1/chats/${ch.g1}/messages/${inGroup.id}`, tok(w.a.admin)), 404, 'not_found', 'id',
            'deleting twice');
    });

    it('sequence numbers are gap-free per chat (refused posts take none, concurrent posts get distinct consecutive ones); history pages with before and after', async () => {
        const c = await newChat(stack, w.a, w.t1, { kind: 'group', title: 'Расписание консультаций',
            member_ids: [w.s1.user.id, w.s2.user.id] });
        const texts = ['пн', 'вт', 'ср'];
        const first = [];
        for (const t of texts) first.push(await post(stack, w.t1, c.id, t));
        assert.deepEqual(first.map((m) => m.seq), [1, 2, 3], 'a new chat numbers from 1');
        // Refused posts and a deletion take no number.
        assertError(await stack.post(`/v1/chats/${c.id}/messages`, { text: '' }, tok(w.s1)), 400, 'bad_request', 'text');
        assertError(await stack.post(`/v1/chats/${c.id}/messages`, { text: 'x'.repeat(4097) }, tok(w.s1)), 400, 'bad_request', 'text');
        assertError(await stack.post(`/v1/chats/${c.id}/messages`, { text: 'чужой' }, tok(w.s3)), 404, 'not_found', 'chat_id');
        assert.equal((await stack.del(`/v1/chats/${c.id}/messages/${first[2].id}`, tok(w.t1))).status, 204);
        assert.equal((await post(stack, w.s1, c.id, 'чт')).seq, 4, 'the next number after refusals and a deletion');
        // Concurrent posts by three people.
        const authors = [w.t1, w.s1, w.s2];
        const burst = await Promise.all(Array.from({ length: 12 }, (_, i) =>
            post(stack, authors[i % 3], c.id, `сообщение ${i + 1}`)));
        assert.deepEqual(burst.map((m) => m.seq).sort((x, y) => x - y), Array.from({ length: 12 }, (_, i) => 5 + i),
            'concurrent posts: distinct, consecutive');
        const all = await allMessages(stack, w.s2, c.id);
        assert.deepEqual(all.map((m) => m.seq), Array.from({ length: 16 }, (_, i) => i + 1), 'the history: 1..16, no gap, no duplicate');
        assert.equal((await getChat(stack, w.s2, c.id)).last_seq, 16);

        // Pages going back from the newest: limit, then before.
        const newest = await historyOf(stack, w.s1, c.id, '?limit=5');
        assert.deepEqual(newest.items.map((m) => m.seq), [12, 13, 14, 15, 16], 'the newest five, oldest first');
        assert.equal(newest.next, '12', 'next: pass it as before');
        const older = await historyOf(stack, w.s1, c.id, `?before=${newest.next}&limit=5`);
        assert.deepEqual(older.items.map((m) => m.seq), [7, 8, 9, 10, 11]);
        const oldest = await historyOf(stack, w.s1, c.id, '?before=4&limit=5');
        assert.deepEqual(oldest.items.map((m) => m.seq), [1, 2, 3]);
        assert.equal(oldest.next, null, 'nothing before the first');
        // Pages going forward: after.
        const fromStart = await historyOf(stack, w.s1, c.id, '?after=0&limit=4');
        assert.deepEqual(fromStart.items.map((m) => m.seq), [1, 2, 3, 4], 'after=0: from the first message');
        assert.equal(fromStart.next, '4', 'next: pass it as after');
        const forward = await historyOf(stack, w.s1, c.id, `?after=${fromStart.next}&limit=4`);
        assert.deepEqual(forward.items.map((m) => m.seq), [5, 6, 7, 8]);
        const tail = await historyOf(stack, w.s1, c.id, '?after=13&limit=10');
        assert.deepEqual(tail.items.map((m) => m.seq), [14, 15, 16]);
        assert.equal(tail.next, null, 'nothing after the last');
        assert.deepEqual((await historyOf(stack, w.s1, c.id, '?after=16')).items, [], 'after the last: empty');
        // Walking forward from 0 page by page gives every message once.
        const walked = [];
        let cursor = '0';
        for (let i = 0; i < 10 && cursor !== null; i++) {
            const page = await historyOf(stack, w.s2, c.id, `?after=${cursor}&limit=3`);
            walked.push(...page.items.map((m) => m.seq));
            cursor = page.next;
        }
        assert.deepEqual(walked, Array.from({ length: 16 }, (_, i) => i + 1), 'forward paging from the start');
        assertError(await stack.get(`/v1/chats/${c.id}/messages?before=10&after=2`, tok(w.s1)), 400, 'bad_request', 'after');
    });

    it('a retried post with the same client_id returns the first message and stores one', async () => {
        const c = await newChat(stack, w.a, w.t1, { kind: 'group', title: 'Дежурства', member_ids: [w.s1.user.id, w.s2.user.id] });
        const body = { text: 'Я дежурю в понедельник', client_id: 'android-7f3a-0001' };
        const first = expectStatus(await stack.post(`/v1/chats/${c.id}/messages`, body, tok(w.s1)), 201);
        const retry = await stack.post(`/v1/chats/${c.id}/messages`, body, tok(w.s1));
        assert.ok(retry.status === 200 || retry.status === 201, `the retry succeeds: ${retry.status} ${retry.text}`);
        assert.deepEqual(retry.json, first, 'the retry answers the first message');
        // A retry whose text differs (the client re-sent an edited draft)
        // still answers the message its client_id made.
        const changed = await stack.post(`/v1/chats/${c.id}/messages`, { ...body, text: 'Я дежурю во вторник' }, tok(w.s1));
        assert.ok(changed.status === 200 || changed.status === 201, `${changed.status} ${changed.text}`);
        assert.deepEqual(changed.json, first, 'a retry with another text answers the first message');
        // Concurrent retries of one post.
        const racing = await Promise.all(Array.from({ length: 6 }, () =>
            stack.post(`/v1/chats/${c.id}/messages`, { text: 'Я дежурю в среду', client_id: 'web-race-1' }, tok(w.s1))));
        for (const r of racing) assert.ok(r.status === 200 || r.status === 201, `${r.status} ${r.text}`);
        assert.equal(new Set(racing.map((r) => r.json.id)).size, 1, 'every racing retry answers the same message');
        // The same client_id from another author is their own message.
        const other = expectStatus(await stack.post(`/v1/chats/${c.id}/messages`,
            { text: 'А я во вторник', client_id: body.client_id }, tok(w.s2)), 201);
        assert.notEqual(other.id, first.id);
        const items = await allMessages(stack, w.t1, c.id);
        assert.deepEqual(items.map((m) => m.text), ['Я дежурю в понедельник', 'Я дежурю в среду', 'А я во вторник'],
            'one message per client_id and author');
        assert.deepEqual(items.map((m) => m.seq), [1, 2, 3], 'retries took no sequence number');
    });

    it('read markers and unread counts are per member', async () => {
        const c = await newChat(stack, w.a, w.t1, { kind: 'group', title: 'Практика', member_ids: [w.s1.user.id, w.s2.user.id] });
        const unread = async (who) => (await getChat(stack, who, c.id)).unread;
        const listed = async (who) => (await chatsOf(stack, who)).find((x) => x.id === c.id).unread;
        const m = [];
        for (const t of ['Практика начинается 1 февраля', 'Место: завод «Рязанский станкостроитель»', 'Не забудьте спецодежду'])
            m.push(await post(stack, w.t1, c.id, t));
        assert.equal(await unread(w.t1), 0, 'one\'s own messages are read');
        assert.equal(await unread(w.s1), 3);
        assert.equal(await unread(w.s2), 3);
        assert.equal(await listed(w.s1), 3, 'the list shows the same count');
        assert.equal((await stack.post(`/v1/chats/${c.id}/read`, { seq: m[1].seq }, tok(w.s1))).status, 204);
        assert.equal(await unread(w.s1), 1, 'read up to the second');
        assert.equal(await unread(w.s2), 3, 'the other student\'s marker did not move');
        assert.equal((await stack.post(`/v1/chats/${c.id}/read`, { seq: m[0].seq }, tok(w.s1))).status, 204);
        assert.equal(await unread(w.s1), 1, 'a marker does not move back');
        assertError(await stack.post(`/v1/chats/${c.id}/read`, { seq: m[2].seq + 1 }, tok(w.s1)), 400, 'bad_request', 'seq',
            'a marker beyond the last message');
        assert.equal(await unread(w.s1), 1, 'the refused marker changed nothing');
        assert.equal((await stack.post(`/v1/chats/${c.id}/read`, { seq: m[2].seq }, tok(w.s1))).status, 204);
        assert.equal(await unread(w.s1), 0);
        assert.equal(await listed(w.s1), 0);
        // A student's message: unread for the others; posting reads the
        // chat for its author up to their own message.
        const q = await post(stack, w.s2, c.id, 'А обед будет?');
        assert.equal(await unread(w.s2), 0, 'the author has read up to their own message');
        assert.equal(await unread(w.s1), 1);
        assert.equal(await unread(w.t1), 1);
        // A deleted message is not waiting to be read.
        assert.equal((await stack.del(`/v1/chats/${c.id}/messages/${q.id}`, tok(w.t1))).status, 204);
        assert.equal(await unread(w.s1), 0);
        assert.equal(await unread(w.t1), 0);
    });

    it('search finds Russian word forms («урок» finds «уроки» and «уроков») and never a message from a chat the caller cannot read', async () => {
        const c = await newChat(stack, w.a, w.t1, { kind: 'group', title: 'Подготовка к экзамену',
            member_ids: [w.s1.user.id, w.s2.user.id] });
        const m1 = await post(stack, w.s1, c.id, 'Когда начинаются уроки во втором семестре?');
        const m2 = await post(stack, w.t1, c.id, 'Уроков будет шесть в неделю, расписание пришлю.');
        const m3 = await post(stack, w.s2, c.id, 'Спасибо, ждём!');
        // The same word in chats the student does not read.
        const staff = await post(stack, w.adm, ch.staff, 'Коллеги, проверьте планы уроков на семестр.');
        const other = await post(stack, w.t2, ch.g2, 'ИС-22: после уроков — субботник.');
        const direct = expectStatus(await stack.post(`/v1/orgs/${w.a.id}/direct`, { user_id: w.t2.user.id }, tok(w.t1)), 201);
        const privateNote = await post(stack, w.t1, direct.id, 'Поменяемся уроками в пятницу?');

        const found = await searchAs(stack, w.s1, 'урок');
        const ids = found.items.map((x) => x.id);
        assert.ok(ids.includes(m1.id) && ids.includes(m2.id), `«урок» finds «уроки» and «уроков»: ${JSON.stringify(found.items.map((x) => x.text))}`);
        assert.ok(!ids.includes(m3.id), 'a message without the word is not found');
        for (const leak of [staff, other, privateNote])
            assert.ok(!ids.includes(leak.id), `the student does not find «${leak.text}»`);
        // Every result is in a chat the caller reads, newest first.
        for (const item of found.items)
            expectStatus(await stack.get(`/v1/chats/${item.chat_id}`, tok(w.s1)), 200, `the student reads the chat of «${item.text}»`);
        assert.deepEqual(ids, [...ids].sort().reverse(), 'newest first');
        assert.deepEqual((await searchAs(stack, w.s1, 'УРОКАМИ')).items.map((x) => x.id).filter((id) => [m1.id, m2.id].includes(id)).sort(),
            [m1.id, m2.id].sort(), 'another form and another case find the same');
        // The curator finds the staff and the direct message too, the
        // other group's never; a parent finds none of them.
        const cur = (await searchAs(stack, w.t1, 'урок')).items.map((x) => x.id);
        for (const id of [m1.id, m2.id, staff.id, privateNote.id]) assert.ok(cur.includes(id), `the curator finds ${id}`);
        assert.ok(!cur.includes(other.id), 'not the other group\'s message');
        const parent = (await searchAs(stack, w.p1, 'урок')).items.map((x) => x.id);
        for (const id of [m1.id, m2.id, staff.id, other.id, privateNote.id]) assert.ok(!parent.includes(id), `the parent does not find ${id}`);
        for (const who of [w.outsider, w.sb, w.s6])
            assert.deepEqual((await searchAs(stack, who, 'урок')).items, [], `${who.name} finds nothing of the college`);
        // q's limit is in characters: 300 of them, Cyrillic (550 bytes), are
        // a q like any other.
        const longQ = 'уроки '.repeat(50);
        assert.equal([...longQ].length, 300);
        assert.ok((await searchAs(stack, w.s1, longQ)).items.some((x) => x.id === m1.id), 'a q of 300 characters, mostly Cyrillic');
        // Within one chat; a chat the caller cannot read is 404, not an empty list.
        const inChat = await searchAs(stack, w.t1, 'урок', `&chat_id=${c.id}`);
        assert.deepEqual(inChat.items.map((x) => x.id), [m2.id, m1.id]);
        assertError(await stack.get(`/v1/search/messages?q=${encodeURIComponent('урок')}&chat_id=${ch.staff}`, tok(w.s1)),
            404, 'not_found', 'chat_id', 'searching the staff channel as a student');
        // A deleted message is not found any more; an edited one by its new text.
        assert.equal((await stack.del(`/v1/chats/${c.id}/messages/${m1.id}`, tok(w.s1))).status, 204);
        expectStatus(await stack.patch(`/v1/chats/${c.id}/messages/${m3.id}`, { text: 'Спасибо, ждём первого урока!' }, tok(w.s2)), 200);
        const now = (await searchAs(stack, w.s2, 'урок', `&chat_id=${c.id}`)).items.map((x) => x.id);
        assert.deepEqual(now, [m3.id, m2.id], 'the deleted one is gone, the edited one is found');
        assert.deepEqual((await searchAs(stack, w.s2, 'начинаются', `&chat_id=${c.id}`)).items, [], 'the deleted text is not searchable');
        // After a transfer, the old group's messages are out of reach.
        const oldGroup = await post(stack, w.t1, ch.g1, 'Контрольная по уроку 12 переносится.');
        expectStatus(await stack.get(`/v1/chats/${ch.g1}`, tok(w.s2)), 200);
        assert.ok((await searchAs(stack, w.s2, 'урок')).items.some((x) => x.id === oldGroup.id), 'a member finds it');
        assert.ok(!(await searchAs(stack, w.s5, 'урок')).items.some((x) => x.id === oldGroup.id), 'the transferred student does not');
    });

    it('bad input on every chat endpoint is a 4xx naming the field, and stores nothing', async () => {
        const admin = w.a.admin;
        const c = await newChat(stack, w.a, w.t1, { kind: 'group', title: 'Проверка ввода', member_ids: [w.s1.user.id, w.t2.user.id] });
        const m = await post(stack, w.s1, c.id, 'Первое сообщение');
        const chatsBefore = (await chatsOf(stack, admin)).map((x) => x.id).sort();
        const t1ChatsBefore = (await chatsOf(stack, w.t1)).map((x) => x.id).sort();
        const s1ChatsBefore = (await chatsOf(stack, w.s1)).map((x) => x.id).sort();
        const stateOf = async () => ({
            chat: await getChat(stack, w.t1, c.id),
            members: await membersOf(stack, w.t1, c.id, w.names),
            messages: await allMessages(stack, w.t1, c.id),
            unreadS1: (await getChat(stack, w.s1, c.id)).unread,
        });
        const before = await stateOf();
        // Every refusal is checked; the ones that are wrong are reported together.
        const wrong = [];
        const check = async (res, status, field, what) => {
            try {
                assertError(res, status, undefined, field, what);
            } catch (err) {
                wrong.push(err.message.split('\n')[0]);
            }
        };

        // POST /v1/orgs/{org}/chats
        const create = (body, who = admin) => stack.post(`/v1/orgs/${w.a.id}/chats`, body, tok(who));
        await check(await create({}), 400, 'kind', 'no kind');
        await check(await create({ kind: 'direct', title: 'x' }), 400, 'kind', 'a direct chat through create');
        await check(await create({ kind: 'forum', title: 'x' }), 400, 'kind', 'an unknown kind');
        await check(await create({ kind: 2, title: 'x' }), 400, 'kind', 'a kind as a number');
        await check(await create({ kind: 'group' }), 400, 'title', 'no title');
        await check(await create({ kind: 'group', title: '   ' }), 400, 'title', 'a blank title');
        await check(await create({ kind: 'group', title: 'т'.repeat(201) }), 400, 'title', 'a title of 201 characters');
        await check(await create({ kind: 'group', title: 'Чат\u0007' }), 400, 'title', 'a control character in the title');
        await check(await create({ kind: 'group', title: 'Две\nстроки' }), 400, 'title', 'a line break in the title');
        await check(await create({ kind: 'group', title: 42 }), 400, 'title', 'a title as a number');
        await check(await create({ kind: 'group', title: 'x', description: 'д'.repeat(2001) }), 400, 'description', 'a long description');
        // Lengths are in characters, and a character may take four bytes:
        // one more than the limit is refused, never cut to fit.
        await check(await create({ kind: 'group', title: SMILE.repeat(200) + 'a' }), 400, 'title', 'a title of 201 characters, 200 of four bytes');
        await check(await create({ kind: 'group', title: 'x', description: SMILE.repeat(2000) + 'a' }), 400, 'description',
            'a description of 2001 characters, 2000 of four bytes');
        await check(await create({ kind: 'group', title: 'x', colour: 'red' }), 400, 'colour', 'an unknown field');
        await check(await create({ kind: 'group', title: 'x', audience: 'everyone' }), 400, 'audience', 'an unknown audience');
        await check(await create({ kind: 'group', title: 'x', audience: 'students' }), 400, 'unit_id', 'a group audience without the group');
        await check(await create({ kind: 'group', title: 'x', audience: 'students', unit_id: 'not-an-id' }), 400, 'unit_id', 'a bad unit id');
        await check(await create({ kind: 'group', title: 'x', audience: 'students', unit_id: w.dep.id }), 400, 'unit_id', 'a department as the group');
        await check(await create({ kind: 'group', title: 'x', audience: 'students', unit_id: w.gb.id }), 404, 'unit_id', 'another college\'s group');
        // An org-wide audience follows the whole org's roster: a unit means nothing there.
        await check(await create({ kind: 'group', title: 'x', audience: 'staff', unit_id: w.g1.id }), 400, 'unit_id', 'a staff chat with a unit');
        await check(await create({ kind: 'channel', title: 'x', audience: 'all', unit_id: w.g1.id }), 400, 'unit_id', 'an all chat with a unit');
        await check(await create({ kind: 'group', title: 'x', member_ids: 'всех' }), 400, 'member_ids', 'member_ids as a string');
        await check(await create({ kind: 'group', title: 'x', member_ids: ['not-an-id'] }), 400, 'member_ids', 'a bad member id');
        await check(await create({ kind: 'group', title: 'x', member_ids: [NO_SUCH_ID] }), 400, 'member_ids', 'nobody\'s id');
        await check(await create({ kind: 'group', title: 'x', member_ids: [w.sb.user.id] }), 400, 'member_ids', 'a member of another college');
        await check(await create({ kind: 'group', title: 'x', member_ids: [7] }), 400, 'member_ids[0]', 'a member id as a number');
        await check(await stack.post('/v1/orgs/not-an-id/chats', { kind: 'group', title: 'x' }, tok(admin)), 404, 'org_id', 'a bad org id');
        assert.deepEqual((await chatsOf(stack, admin)).map((x) => x.id).sort(), chatsBefore, 'no chat was made');

        // POST /v1/orgs/{org}/direct
        const direct = (body) => stack.post(`/v1/orgs/${w.a.id}/direct`, body, tok(w.s1));
        await check(await direct({}), 400, 'user_id', 'no user_id');
        await check(await direct({ user_id: 5 }), 400, 'user_id', 'user_id as a number');
        await check(await direct({ user_id: 'not-an-id' }), 400, 'user_id', 'a bad user id');
        await check(await direct({ user_id: NO_SUCH_ID }), 404, 'user_id', 'nobody\'s id');
        await check(await direct({ user_id: w.t1.user.id, message: 'привет' }), 400, 'message', 'an unknown field');
        assert.deepEqual((await chatsOf(stack, w.s1)).map((x) => x.id).sort(), s1ChatsBefore, 'no direct chat was made');

        // GET/PATCH /v1/chats/{chat}
        await check(await stack.get('/v1/chats/not-an-id', tok(w.t1)), 400, 'chat_id', 'a bad chat id');
        await check(await stack.get(`/v1/chats/${NO_SUCH_ID}`, tok(w.t1)), 404, 'chat_id', 'no such chat');
        await check(await stack.get('/v1/chats?limit=много', tok(w.t1)), 400, 'limit', 'a limit that is not a number');
        await check(await stack.get('/v1/chats?order=new', tok(w.t1)), 400, 'order', 'an unknown query parameter');
        const patch = (body) => stack.patch(`/v1/chats/${c.id}`, body, tok(w.t1));
        await check(await patch({ title: '' }), 400, 'title', 'an empty title');
        await check(await patch({ title: 'т'.repeat(201) }), 400, 'title', 'a long title');
        await check(await patch({ title: ['x'] }), 400, 'title', 'a title as an array');
        await check(await patch({ who_can_post: 'everyone' }), 400, 'who_can_post', 'an unknown who_can_post');
        await check(await patch({ archived: 'yes' }), 400, 'archived', 'archived as a string');
        await check(await patch({ pinned: true }), 400, 'pinned', 'an unknown field');
        await check(await patch({ description: 'д'.repeat(2001) }), 400, 'description', 'a long description');
        await check(await patch({ title: SMILE.repeat(200) + 'a' }), 400, 'title', 'a title of 201 characters, 200 of four bytes');
        await check(await patch({ description: SMILE.repeat(2000) + 'a' }), 400, 'description',
            'a description of 2001 characters, 2000 of four bytes');
        await check(await stack.patch('/v1/chats/not-an-id', { title: 'x' }, tok(w.t1)), 400, 'chat_id', 'a bad chat id');

        // members
        await check(await stack.get(`/v1/chats/${c.id}/members?limit=-1`, tok(w.t1)), 400, 'limit', 'a negative limit');
        const add = (body) => stack.post(`/v1/chats/${c.id}/members`, body, tok(w.t1));
        await check(await add({}), 400, 'user_ids', 'no user_ids');
        await check(await add({ user_ids: [] }), 400, 'user_ids', 'empty user_ids');
        await check(await add({ user_ids: w.s2.user.id }), 400, 'user_ids', 'user_ids as a string');
        await check(await add({ user_ids: ['not-an-id'] }), 400, 'user_ids', 'a bad id');
        await check(await add({ user_ids: [NO_SUCH_ID] }), 400, 'user_ids', 'nobody\'s id');
        await check(await add({ user_ids: [w.s2.user.id], role: 'boss' }), 400, 'role', 'an unknown role');
        await check(await add({ user_ids: Array(1001).fill(w.s2.user.id) }), 400, 'user_ids', 'more than 1000 ids');
        const setMember = (user, body) => stack.patch(`/v1/chats/${c.id}/members/${user}`, body, tok(w.t1));
        await check(await setMember(w.s1.user.id, { role: 'boss' }), 400, 'role', 'an unknown role');
        await check(await setMember(w.s1.user.id, { muted_until: 'завтра' }), 400, 'muted_until', 'a time that is not a time');
        await check(await setMember(w.s1.user.id, { muted_until: 1893456000000 }), 400, 'muted_until', 'a time as a number');
        await check(await setMember(w.s1.user.id, { volume: 3 }), 400, 'volume', 'an unknown field');
        await check(await setMember('not-an-id', { role: 'member' }), 400, 'user_id', 'a bad user id');
        await check(await stack.del(`/v1/chats/${c.id}/members/not-an-id`, tok(w.t1)), 400, 'user_id', 'a bad user id');
        await check(await stack.del(`/v1/chats/${c.id}/members/${NO_SUCH_ID}`, tok(w.t1)), 404, 'user_id', 'not a member');

        // GET /v1/chats/{chat}/messages
        const hist = (q) => stack.get(`/v1/chats/${c.id}/messages${q}`, tok(w.s1));
        await check(await hist('?before=вчера'), 400, 'before', 'before as a word');
        await check(await hist('?after=-1'), 400, 'after', 'a negative after');
        await check(await hist('?after=1.5'), 400, 'after', 'a fraction');
        await check(await hist('?limit=x'), 400, 'limit', 'a limit as a word');
        await check(await hist('?limit=99999999999'), 400, 'limit', 'a limit out of range');
        await check(await hist('?since=1'), 400, 'since', 'an unknown query parameter');
        await check(await stack.get('/v1/chats/not-an-id/messages', tok(w.s1)), 400, 'chat_id', 'a bad chat id');

        // POST /v1/chats/{chat}/messages
        const send = (body, who = w.s1) => stack.post(`/v1/chats/${c.id}/messages`, body, tok(who));
        await check(await send({}), 400, 'text', 'no text');
        await check(await send({ text: '' }), 400, 'text', 'empty text');
        await check(await send({ text: ' \n\t ' }), 400, 'text', 'blank text');
        await check(await send({ text: 'я'.repeat(4097) }), 400, 'text', '4097 characters');
        await check(await send({ text: SMILE.repeat(4096) + 'a' }), 400, 'text', '4097 characters, 4096 of four bytes');
        await check(await send({ text: SMILE.repeat(4097) }), 400, 'text', '4097 four-byte characters');
        await check(await send({ text: 'звонок\u0007' }), 400, 'text', 'a bell character');
        await check(await send({ text: 'escape \u001b[31mred' }), 400, 'text', 'an escape sequence');
        await check(await send({ text: 'c1 \u0085 control' }), 400, 'text', 'a C1 control');
        await check(await send({ text: 12 }), 400, 'text', 'text as a number');
        await check(await send({ text: ['a'] }), 400, 'text', 'text as an array');
        await check(await send({ text: { ru: 'а' } }), 400, 'text', 'text as an object');
        await check(await send({ text: 'ok', colour: 'red' }), 400, 'colour', 'an unknown field');
        await check(await send({ text: 'ok', reply_to: 'not-an-id' }), 400, 'reply_to', 'a bad reply_to');
        await check(await send({ text: 'ok', reply_to: 5 }), 400, 'reply_to', 'reply_to as a number');
        await check(await send({ text: 'ok', attachments: 'file' }), 400, 'attachments', 'attachments as a string');
        await check(await send({ text: 'ok', attachments: [NO_SUCH_ID] }), 400, 'attachments', 'an attachment nobody uploaded');
        await check(await send({ text: 'ok', client_id: 'c'.repeat(65) }), 400, 'client_id', 'a long client_id');
        await check(await send({ text: 'ok', client_id: true }), 400, 'client_id', 'client_id as a boolean');
        await check(await send({ text: 'ok', seq: 99 }), 400, 'seq', 'a seq the client may not choose');
        await check(await send('{"text": "незакрытая'), 400, '', 'broken JSON');
        await check(await send('["text"]'), 400, '', 'an array as the body');
        await check(await send('{"text": "a", "text": "b"}'), 400, undefined, 'a duplicated field');
        await check(await stack.post(`/v1/chats/${c.id}/messages`, Buffer.from('{"text": "\xff\xfe"}', 'latin1'), tok(w.s1)),
            400, undefined, 'invalid UTF-8');
        await check(await stack.post(`/v1/chats/${c.id}/messages`, 'text=hello', { ...tok(w.s1), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }),
            415, null, 'a form instead of JSON');
        await check(await stack.post(`/v1/chats/${c.id}/messages`, JSON.stringify({ text: 'ж'.repeat(1100000) }), tok(w.s1)),
            413, undefined, 'a body over 1 MiB');
        await check(await stack.post('/v1/chats/not-an-id/messages', { text: 'ok' }, tok(w.s1)), 400, 'chat_id', 'a bad chat id');
        await check(await stack.post(`/v1/chats/${NO_SUCH_ID}/messages`, { text: 'ok' }, tok(w.s1)), 404, 'chat_id', 'no such chat');

        // PATCH/DELETE /v1/chats/{chat}/messages/{id}
        const edit = (body, id = m.id) => stack.patch(`/v1/chats/${c.id}/messages/${id}`, body, tok(w.s1));
        await check(await edit({ text: '' }), 400, 'text', 'an empty edit');
        await check(await edit({ text: 'я'.repeat(4097) }), 400, 'text', 'a long edit');
        await check(await edit({ text: SMILE.repeat(4096) + 'a' }), 400, 'text', 'an edit of 4097 characters, 4096 of four bytes');
        await check(await edit({ text: 'правка\u0008' }), 400, 'text', 'a control character');
        await check(await edit({ text: 3 }), 400, 'text', 'text as a number');
        await check(await edit({ text: 'ok', reply_to: m.id }), 400, 'reply_to', 'a field edits do not take');
        await check(await edit({ text: 'ok' }, 'not-an-id'), 400, 'id', 'a bad message id');
        await check(await edit({ text: 'ok' }, NO_SUCH_ID), 404, 'id', 'no such message');
        await check(await stack.del(`/v1/chats/${c.id}/messages/not-an-id`, tok(w.s1)), 400, 'id', 'a bad message id');
        await check(await stack.del(`/v1/chats/${c.id}/messages/${NO_SUCH_ID}`, tok(w.s1)), 404, 'id', 'no such message');

        // POST /v1/chats/{chat}/read
        const read = (body) => stack.post(`/v1/chats/${c.id}/read`, body, tok(w.s1));
        await check(await read({ seq: -1 }), 400, 'seq', 'a negative seq');
        await check(await read({ seq: 'last' }), 400, 'seq', 'seq as a word');
        await check(await read({ seq: 1.5 }), 400, 'seq', 'a fractional seq');
        await check(await read({ seq: 1000 }), 400, 'seq', 'a seq beyond the last message');
        await check(await read({ seq: 1, at: 'now' }), 400, 'at', 'an unknown field');
        await check(await read({}), 400, 'seq', 'no seq');
        await check(await read({ seq: null }), 400, 'seq', 'seq null');

        // GET /v1/search/messages
        const search = (q) => stack.get(`/v1/search/messages${q}`, tok(w.s1));
        await check(await search(''), 400, 'q', 'no q');
        await check(await search('?q='), 400, 'q', 'an empty q');
        await check(await search(`?q=${encodeURIComponent('!!! ??? ...')}`), 400, 'q', 'no word to search for');
        await check(await search(`?q=${'a'.repeat(513)}`), 400, 'q', 'a q of 513 characters');
        await check(await search(`?q=${encodeURIComponent('я'.repeat(513))}`), 400, 'q', 'a q of 513 Cyrillic characters');
        await check(await search('?q=урок&chat_id=not-an-id'), 400, 'chat_id', 'a bad chat id');
        await check(await search('?q=урок&limit=all'), 400, 'limit', 'a limit as a word');
        await check(await search('?q=урок&sort=old'), 400, 'sort', 'an unknown query parameter');

        // Huge bodies on every write.
        const huge = JSON.stringify({ text: 'ж'.repeat(1100000) });
        for (const [method, p] of [['POST', `/v1/orgs/${w.a.id}/chats`], ['POST', `/v1/orgs/${w.a.id}/direct`],
            ['PATCH', `/v1/chats/${c.id}`], ['POST', `/v1/chats/${c.id}/members`], ['PATCH', `/v1/chats/${c.id}/members/${w.s1.user.id}`],
            ['PATCH', `/v1/chats/${c.id}/messages/${m.id}`], ['POST', `/v1/chats/${c.id}/read`]])
            await check(await stack.request(method, p, { body: huge, ...tok(w.t1) }), 413, undefined, `${method} ${p} with 2 MiB`);

        assert.deepEqual(wrong, [], 'every bad request is refused with its field named');
        // Nothing changed.
        assert.deepEqual(await stateOf(), before, 'the chat, its members, messages and markers are as before');
        assert.deepEqual((await chatsOf(stack, admin)).map((x) => x.id).sort(), chatsBefore, 'the admin\'s chats are as before');
        assert.deepEqual((await chatsOf(stack, w.t1)).map((x) => x.id).sort(), t1ChatsBefore, 'the curator\'s chats are as before');
    });

    // The codec refuses a NUL in a string naming the field (common/codec.h);
    // the gateway's JSON parser lets it through to the codec for that.
    it('a NUL character in a text field is 400 naming the field, and stores nothing', {
    }, async () => {
        const c = await newChat(stack, w.a, w.t1, { kind: 'group', title: 'Нулевой символ', member_ids: [w.s1.user.id] });
        const resText = await stack.post(`/v1/chats/${c.id}/messages`, { text: 'a\u0000b' }, tok(w.s1));
        const resTitle = await stack.patch(`/v1/chats/${c.id}`, { title: 'a\u0000b' }, tok(w.t1));
        assert.deepEqual(await allMessages(stack, w.t1, c.id), [], 'nothing was posted');
        assert.equal((await getChat(stack, w.t1, c.id)).title, 'Нулевой символ', 'the title is unchanged');
        assertError(resText, 400, 'bad_request', 'text', 'a NUL in a message');
        assertError(resTitle, 400, 'bad_request', 'title', 'a NUL in a title');
    });
});

// Every kind of roster change, one after another in one college, with the
// members of the automatic chats (and of hand-made chats given an audience)
// checked after each.
describe('the automatic chats follow every roster change', { timeout: 600000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits() } });
    let stack;
    let o;      // the college and its people
    let c;      // chat ids
    const names = {};
    const is = (who) => { names[who.user.id] = who.name; return who; };
    const expectMembers = (what, who, chatId, expected) =>
        settles(stack, what, () => membersOf(stack, who, chatId, names), expected);
    const findChat = async (who, pred, what) => {
        let found = null;
        await waitFor(async () => {
            found = (await chatsOf(stack, who, o.org.id)).find(pred) || null;
            return found;
        }, { timeoutMs: SYNC_MS, intervalMs: 100 });
        assert.ok(found, `${what} exists\n${stack.logTails(10, ['org', 'chat'])}`);
        return found.id;
    };

    before(async () => {
        stack = suiteStack();
        const org = await newOrg(stack, 'Касимовский индустриальный колледж', 'КИК');
        org.admin.name = 'Администратор КИК';
        is(org.admin);
        const gA = await newUnit(stack, org, { kind: 'group', name: 'Сварщики', code: 'С-11', year: 1 });
        const gB = await newUnit(stack, org, { kind: 'group', name: 'Электрики', code: 'Э-11', year: 1 });
        const tA = is(await teacher(stack, org, 'Андрей Сварщиков', { verified: true, curatorOf: gA }));
        const tB = is(await teacher(stack, org, 'Борис Электриков', { verified: true, curatorOf: gB }));
        const tX = is(await teacher(stack, org, 'Ксения Преемница', { verified: true }));
        const adm = is(await member(stack, org, 'administration', 'Завуч Петрова'));
        const sa1 = is(await student(stack, org, gA, 'Артём Уходящий'));
        const sa2 = is(await student(stack, org, gA, 'Ирина Выпускница'));
        const sb1 = is(await student(stack, org, gB, 'Олег Электрик'));
        const pa1 = is(await parentOf(stack, org, sa1, 'Мама Артёма'));
        const pa2 = is(await parentOf(stack, org, sa2, 'Папа Ирины'));
        const pb1 = is(await parentOf(stack, org, sb1, 'Мама Олега'));
        o = { org, gA, gB, tA, tB, tX, adm, sa1, sa2, sb1, pa1, pa2, pb1 };
        c = {
            gA: await findChat(tA, (x) => x.unit_id === gA.id && x.audience === 'students', 'the group chat of С-11'),
            gAp: await findChat(tA, (x) => x.unit_id === gA.id && x.audience === 'parents', 'the parents chat of С-11'),
            gB: await findChat(tB, (x) => x.unit_id === gB.id && x.audience === 'students', 'the group chat of Э-11'),
            gBp: await findChat(tB, (x) => x.unit_id === gB.id && x.audience === 'parents', 'the parents chat of Э-11'),
            general: await findChat(org.admin, (x) => x.audience === 'all', 'the general channel'),
            staff: await findChat(org.admin, (x) => x.audience === 'staff', 'the staff channel'),
        };
        // Hand-made chats that follow a roster: a subject chat with С-11's
        // students, and a staff chat of the administration's.
        c.subject = (await newChat(stack, org, tX, { kind: 'group', title: 'Материаловедение С-11', unit_id: gA.id, audience: 'students' })).id;
        c.council = (await newChat(stack, org, adm, { kind: 'group', title: 'Педсовет', audience: 'staff' })).id;
        await expectMembers('С-11 at the start', tA, c.gA, { 'Андрей Сварщиков': 'owner', 'Артём Уходящий': 'member', 'Ирина Выпускница': 'member' });
        await expectMembers('С-11 parents at the start', tA, c.gAp, { 'Андрей Сварщиков': 'owner', 'Мама Артёма': 'member', 'Папа Ирины': 'member' });
        await expectMembers('the subject chat at the start: its maker and С-11\'s students', tX, c.subject,
            { 'Ксения Преемница': 'owner', 'Артём Уходящий': 'member', 'Ирина Выпускница': 'member' });
        await expectMembers('the staff chat at the start: its maker and the staff (admins moderating, as in the staff channel)', adm, c.council, {
            'Завуч Петрова': 'owner', 'Администратор КИК': 'moderator', 'Андрей Сварщиков': 'member', 'Борис Электриков': 'member',
            'Ксения Преемница': 'member',
        });
    });
    beforeEach(() => { stack = suiteStack(); });

    it('a role an owner set by hand in an automatic chat stays through roster changes; the curator\'s ownership is the roster\'s', async () => {
        const { org, gA, tA, sa2 } = o;
        expectStatus(await stack.patch(`/v1/chats/${c.gA}/members/${sa2.user.id}`, { role: 'readonly' }, tok(tA)), 200,
            'the curator makes a student read-only');
        const sa3 = is(await student(stack, org, gA, 'Семён Новичок'));
        await expectMembers('С-11 with the new student; the read-only one still read-only', tA, c.gA, {
            'Андрей Сварщиков': 'owner', 'Артём Уходящий': 'member', 'Ирина Выпускница': 'readonly', 'Семён Новичок': 'member',
        });
        assertError(await stack.post(`/v1/chats/${c.gA}/messages`, { text: 'А мне можно?' }, tok(sa2)), 403, 'forbidden', undefined,
            'the read-only student posts after the roster changed');
        await post(stack, sa3, c.gA, 'Здравствуйте, я новенький.');
        // The curator cannot hand the roster's ownership away.
        const self = await stack.patch(`/v1/chats/${c.gA}/members/${tA.user.id}`, { role: 'member' }, tok(tA));
        assertError(self, 409, 'roster_chat', 'role', 'the curator steps down in the group chat');
        // Back to a member; the new student leaves the way he came.
        expectStatus(await stack.patch(`/v1/chats/${c.gA}/members/${sa2.user.id}`, { role: 'member' }, tok(tA)), 200);
        await move(stack, org, { kind: 'expel', user_id: sa3.user.id, order_number: '1-о' });
        await expectMembers('С-11 as before', tA, c.gA, { 'Андрей Сварщиков': 'owner', 'Артём Уходящий': 'member', 'Ирина Выпускница': 'member' });
    });

    it('leave and return: the student and their parent leave the group\'s chats (not the college\'s channel), and come back', async () => {
        const { org, tA, sa1, pa1 } = o;
        await move(stack, org, { kind: 'leave', user_id: sa1.user.id, order_number: '2-о', note: 'академический отпуск' });
        await expectMembers('С-11 without the student on leave', tA, c.gA, { 'Андрей Сварщиков': 'owner', 'Ирина Выпускница': 'member' });
        await expectMembers('С-11 parents without his mother', tA, c.gAp, { 'Андрей Сварщиков': 'owner', 'Папа Ирины': 'member' });
        await expectMembers('the subject chat without him', o.tX, c.subject, { 'Ксения Преемница': 'owner', 'Ирина Выпускница': 'member' });
        const inGeneral = async () => Object.keys(await membersOf(stack, org.admin, c.general, names));
        assert.ok((await inGeneral()).includes('Артём Уходящий'), 'on leave he is still of the college');
        assertError(await stack.get(`/v1/chats/${c.gA}/messages`, tok(sa1)), 404, 'not_found', 'chat_id', 'on leave: no group chat');
        await move(stack, org, { kind: 'return', user_id: sa1.user.id, order_number: '3-о' });
        await expectMembers('С-11 with the student back', tA, c.gA, { 'Андрей Сварщиков': 'owner', 'Артём Уходящий': 'member', 'Ирина Выпускница': 'member' });
        await expectMembers('С-11 parents with his mother back', tA, c.gAp, { 'Андрей Сварщиков': 'owner', 'Мама Артёма': 'member', 'Папа Ирины': 'member' });
        await expectMembers('the subject chat with him back', o.tX, c.subject,
            { 'Ксения Преемница': 'owner', 'Артём Уходящий': 'member', 'Ирина Выпускница': 'member' });
        expectStatus(await stack.get(`/v1/chats/${c.gA}/messages`, tok(sa1)), 200, 'back: he reads the group chat');
    });

    it('graduate: the graduate leaves the group\'s chats and the college\'s; their parent leaves the parents chat and stays in the channel', async () => {
        const { org, tA, sa2, pa2 } = o;
        await move(stack, org, { kind: 'graduate', user_id: sa2.user.id, order_number: '4-о' });
        await expectMembers('С-11 without the graduate', tA, c.gA, { 'Андрей Сварщиков': 'owner', 'Артём Уходящий': 'member' });
        await expectMembers('С-11 parents without her father', tA, c.gAp, { 'Андрей Сварщиков': 'owner', 'Мама Артёма': 'member' });
        await expectMembers('the subject chat without her', o.tX, c.subject, { 'Ксения Преемница': 'owner', 'Артём Уходящий': 'member' });
        await settles(stack, 'the general channel: the graduate out, her father (still a parent here) in', async () => {
            const all = Object.keys(await membersOf(stack, org.admin, c.general, names));
            return [all.includes('Ирина Выпускница'), all.includes('Папа Ирины')];
        }, [false, true]);
        assert.deepEqual(await chatsOf(stack, sa2, org.id), [], 'the graduate has none of the college\'s chats');
    });

    it('guardian unlink: the parent leaves the parents chat and stays in the channel', async () => {
        const { org, tA, sa1, pa1 } = o;
        assert.equal((await stack.del(`/v1/orgs/${org.id}/guardians/${pa1.user.id}/${sa1.user.id}`, tok(org.admin))).status, 204);
        await expectMembers('С-11 parents without the unlinked mother', tA, c.gAp, { 'Андрей Сварщиков': 'owner' });
        assert.ok(Object.keys(await membersOf(stack, org.admin, c.general, names)).includes('Мама Артёма'), 'she is still in the channel');
        assertError(await stack.get(`/v1/chats/${c.gAp}/messages`, tok(pa1)), 404, 'not_found', 'chat_id');
        // Linked again: back in.
        expectStatus(await stack.post(`/v1/orgs/${org.id}/guardians`, { parent_id: pa1.user.id, student_id: sa1.user.id }, tok(org.admin)), 201);
        await expectMembers('С-11 parents with her again', tA, c.gAp, { 'Андрей Сварщиков': 'owner', 'Мама Артёма': 'member' });
    });

    it('curator change: the old curator leaves both of the group\'s chats, the new one owns them', async () => {
        const { org, gA, tA, tX } = o;
        expectStatus(await stack.put(`/v1/orgs/${org.id}/units/${gA.id}/curator`, { user_id: tX.user.id }, tok(org.admin)), 200);
        await expectMembers('С-11 with the new curator as owner', tX, c.gA, { 'Ксения Преемница': 'owner', 'Артём Уходящий': 'member' });
        await expectMembers('С-11 parents with the new curator as owner', tX, c.gAp, { 'Ксения Преемница': 'owner', 'Мама Артёма': 'member' });
        assertError(await stack.get(`/v1/chats/${c.gA}/messages`, tok(tA)), 404, 'not_found', 'chat_id', 'the old curator reads the group chat');
        assertError(await stack.get(`/v1/chats/${c.gAp}/messages`, tok(tA)), 404, 'not_found', 'chat_id', 'the old curator reads the parents chat');
        // Still a teacher of the college.
        assert.equal((await membersOf(stack, org.admin, c.staff, names))['Андрей Сварщиков'], 'member');
    });

    it('dismissing a curator: out of the group\'s chats and of the college\'s channels and staff chats', async () => {
        const { org, tB, sb1 } = o;
        await expectMembers('Э-11 before', tB, c.gB, { 'Борис Электриков': 'owner', 'Олег Электрик': 'member' });
        await expectMembers('Э-11 parents before', tB, c.gBp, { 'Борис Электриков': 'owner', 'Мама Олега': 'member' });
        await move(stack, org, { kind: 'dismiss', user_id: tB.user.id, order_number: '5-к' });
        await expectMembers('Э-11 without its curator', sb1, c.gB, { 'Олег Электрик': 'member' });
        await expectMembers('Э-11 parents without its curator', o.pb1, c.gBp, { 'Мама Олега': 'member' });
        assert.deepEqual(await chatsOf(stack, tB, org.id), [], 'the dismissed curator has none of the college\'s chats');
        await settles(stack, 'the staff channel without him', async () =>
            Object.keys(await membersOf(stack, org.admin, c.staff, names)).includes('Борис Электриков'), false);
        await settles(stack, 'the staff chat without him', async () =>
            Object.keys(await membersOf(stack, o.adm, c.council, names)).includes('Борис Электриков'), false);
        await post(stack, sb1, c.gB, 'А кто теперь наш куратор?');
    });

    it('a teacher granted admin moderates the general and staff channels; hiring a member as a teacher brings them into the staff channel', async () => {
        const { org, tX, adm, pa1 } = o;
        expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${tX.user.id}/roles`, { role: 'admin' }, tok(org.admin)), 200);
        await settles(stack, 'the new admin moderates both channels', async () => [
            (await membersOf(stack, org.admin, c.general, names))['Ксения Преемница'],
            (await membersOf(stack, org.admin, c.staff, names))['Ксения Преемница'],
        ], ['moderator', 'moderator']);
        assert.equal((await membersOf(stack, tX, c.gA, names))['Ксения Преемница'], 'owner', 'still the curator, owning the group chat');
        await post(stack, tX, c.general, 'Уважаемые студенты и родители, с понедельника новое расписание.');
        // A parent of the college hired as a teacher.
        await move(stack, org, { kind: 'hire', user_id: pa1.user.id, order_number: '6-к' });
        await settles(stack, 'the staff channel with the one hired', async () =>
            (await membersOf(stack, org.admin, c.staff, names))['Мама Артёма'], 'member');
        await settles(stack, 'the staff chat with the one hired', async () =>
            (await membersOf(stack, adm, c.council, names))['Мама Артёма'], 'member');
        expectStatus(await stack.get(`/v1/chats/${c.staff}/messages`, tok(pa1)), 200, 'the one hired reads the staff channel');
        assert.equal((await membersOf(stack, org.admin, c.general, names))['Мама Артёма'], 'member', 'one membership of the channel');
    });
});

describe('flooding a chat (the post limit: 20 per 10 s per user)', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits({ post_user: '20/10' }) } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('more posts than the limit at once: the rest are 429 with Retry-After and not stored; others still post', async () => {
        const org = await newOrg(stack, 'Сасовский колледж', 'СК');
        org.admin.name = 'Администратор СК';
        const g = await newUnit(stack, org, { kind: 'group', name: 'Бухгалтеры', code: 'Б-11', year: 1 });
        const cur = await teacher(stack, org, 'Куратор Бухгалтеров', { verified: true, curatorOf: g });
        const s = await student(stack, org, g, 'Студент Флудер');
        let chat = null;
        await waitFor(async () => {
            chat = await chatOf(stack, s, g.id, 'students');
            return chat && (await membersOf(stack, cur, chat.id)) ? chat : null;
        }, { timeoutMs: SYNC_MS });
        assert.ok(chat, `the group chat exists with the student in it\n${stack.logTails(10, ['chat'])}`);

        const N = 30;
        const results = await Promise.all(Array.from({ length: N }, (_, i) =>
            stack.post(`/v1/chats/${chat.id}/messages`, { text: `спам ${i}` }, tok(s))));
        const ok = results.filter((r) => r.status === 201);
        const limited = results.filter((r) => r.status === 429);
        assert.equal(ok.length + limited.length, N, `every post is 201 or 429: ${results.map((r) => r.status).join(',')}`);
        assert.ok(ok.length >= 20, `the first 20 pass: ${ok.length} did`);
        assert.ok(limited.length >= 1, 'more than 20 at once: some are refused');
        for (const r of limited) {
            assertError(r, 429, 'rate_limited', undefined, 'a post over the limit');
            const after = Number(r.headers.get('retry-after'));
            assert.ok(Number.isInteger(after) && after >= 1 && after <= 10, `Retry-After is whole seconds within the period: ${r.headers.get('retry-after')}`);
        }
        const stored = (await allMessages(stack, cur, chat.id)).filter((m) => m.author.id === s.user.id);
        assert.equal(stored.length, ok.length, 'only the accepted posts are stored');
        assert.deepEqual(stored.map((m) => m.id).sort(), ok.map((r) => r.json.id).sort());
        // The limit is the flooder's: the curator posts as usual.
        await post(stack, cur, chat.id, 'Прекратите флуд, пожалуйста.');
    });
});

describe('membership after the chat service was down while the roster changed', { timeout: 300000 }, () => {
    const suiteStack = stackForSuite({ env: { PARTA_RATE_LIMITS: limits(), PARTA_CALL_TIMEOUT_MS: '2000' } });
    let stack;
    beforeEach(() => { stack = suiteStack(); });

    it('enrolments, transfers, an expulsion, a new group, a guardian, and people who lost a role and got it back, recorded while chat was stopped, are all reflected once it is back', async () => {
        const org = await newOrg(stack, 'Скопинский технологический колледж', 'СТК');
        org.admin.name = 'Администратор СТК';
        const g1 = await newUnit(stack, org, { kind: 'group', name: 'Повара', code: 'П-11', year: 1 });
        const g2 = await newUnit(stack, org, { kind: 'group', name: 'Кондитеры', code: 'К-11', year: 1 });
        const t1 = await teacher(stack, org, 'Куратор Поваров', { verified: true, curatorOf: g1 });
        const t2 = await teacher(stack, org, 'Куратор Кондитеров', { verified: true, curatorOf: g2 });
        const sA = await student(stack, org, g1, 'Антон Переводимый');
        const sB = await student(stack, org, g1, 'Богдан Отчисляемый');
        const pA = await parentOf(stack, org, sA, 'Мама Антона');
        const sE = await student(stack, org, g1, 'Елена Вернувшаяся');
        const pE = await parentOf(stack, org, sE, 'Папа Елены');
        const names = {};
        for (const u of [org.admin, t1, t2, sA, sB, pA, sE, pE]) names[u.user.id] = u.name;
        const m = (who, chatId) => () => membersOf(stack, who, chatId, names);
        const find = async (who, unitId, audience) => {
            let c = null;
            await waitFor(async () => { c = await chatOf(stack, who, unitId, audience); return c; }, { timeoutMs: SYNC_MS });
            assert.ok(c, `the ${audience} chat of ${unitId} exists\n${stack.logTails(10, ['chat'])}`);
            return c.id;
        };
        const c1 = await find(t1, g1.id, 'students');
        const c1p = await find(t1, g1.id, 'parents');
        const c2 = await find(t2, g2.id, 'students');
        const c2p = await find(t2, g2.id, 'parents');
        const general = await find(org.admin, null, 'all');
        const staff = await find(org.admin, null, 'staff');
        await settles(stack, 'П-11 before', m(t1, c1), { 'Куратор Поваров': 'owner', 'Антон Переводимый': 'member',
            'Богдан Отчисляемый': 'member', 'Елена Вернувшаяся': 'member' });
        await settles(stack, 'П-11 parents before', m(t1, c1p), { 'Куратор Поваров': 'owner', 'Мама Антона': 'member', 'Папа Елены': 'member' });
        const kept = await post(stack, t1, c1, 'Завтра практика в столовой, форма обязательна.');

        const stoppedPid = await stack.stopService('chat');
        assert.ok(stoppedPid > 0);
        // While it is down its routes say so (not a 500, not a hang).
        assertError(await stack.get('/v1/chats', tok(t1)), 503, 'unavailable', undefined, 'GET /v1/chats with chat down');

        // The roster changes meanwhile.
        await move(stack, org, { kind: 'transfer', user_id: sA.user.id, unit_id: g2.id, order_number: '10-у' });
        await move(stack, org, { kind: 'expel', user_id: sB.user.id, order_number: '11-у' });
        const sC = await student(stack, org, g1, 'Валентина Новенькая');
        const pC = await parentOf(stack, org, sC, 'Папа Валентины');
        const g3 = await newUnit(stack, org, { kind: 'group', name: 'Технологи', code: 'Т-11', year: 1 });
        const t3 = await teacher(stack, org, 'Куратор Технологов', { verified: true, curatorOf: g3 });
        const sD = await student(stack, org, g3, 'Дмитрий Технолог');
        for (const u of [sC, pC, t3, sD]) names[u.user.id] = u.name;
        // People who lose their only role and get it back, which org and
        // identity announce separately (chat may read either first): a
        // student expelled, given the student role again and enrolled back
        // into the same group, her father linked again (the expulsion
        // ended the link); the curator dismissed, made a teacher again,
        // hired and set as the group's curator again; a mother whose
        // parent role was taken and given back, linked again.
        const admin = tok(org.admin);
        await move(stack, org, { kind: 'expel', user_id: sE.user.id, order_number: '12-у' });
        expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${sE.user.id}/roles`, { role: 'student' }, admin), 200);
        await move(stack, org, { kind: 'enroll', user_id: sE.user.id, unit_id: g1.id, order_number: '13-у' });
        expectStatus(await stack.post(`/v1/orgs/${org.id}/guardians`, { parent_id: pE.user.id, student_id: sE.user.id }, admin), 201);
        await move(stack, org, { kind: 'dismiss', user_id: t1.user.id, order_number: '14-к' });
        expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${t1.user.id}/roles`, { role: 'teacher' }, admin), 200);
        await move(stack, org, { kind: 'hire', user_id: t1.user.id, order_number: '15-к' });
        expectStatus(await stack.put(`/v1/orgs/${org.id}/units/${g1.id}/curator`, { user_id: t1.user.id }, admin), 200);
        assert.equal((await stack.del(`/v1/orgs/${org.id}/members/${pA.user.id}/roles/parent`, admin)).status, 204);
        expectStatus(await stack.post(`/v1/orgs/${org.id}/members/${pA.user.id}/roles`, { role: 'parent' }, admin), 200);
        expectStatus(await stack.post(`/v1/orgs/${org.id}/guardians`, { parent_id: pA.user.id, student_id: sA.user.id }, admin), 201);

        await stack.startService('chat');
        await settles(stack, 'П-11 after: the transferred and the expelled are out, the new student and the one enrolled back in, the curator back as owner',
            m(t1, c1), { 'Куратор Поваров': 'owner', 'Валентина Новенькая': 'member', 'Елена Вернувшаяся': 'member' });
        await settles(stack, 'П-11 parents after: the linked fathers in, the curator back as owner', m(t1, c1p),
            { 'Куратор Поваров': 'owner', 'Папа Валентины': 'member', 'Папа Елены': 'member' });
        await settles(stack, 'the staff channel after: the re-hired curator in', m(org.admin, staff),
            { 'Администратор СТК': 'moderator', 'Куратор Поваров': 'member', 'Куратор Кондитеров': 'member', 'Куратор Технологов': 'member' });
        await settles(stack, 'К-11 after: the transferred student in', m(t2, c2), { 'Куратор Кондитеров': 'owner', 'Антон Переводимый': 'member' });
        await settles(stack, 'К-11 parents after: the transferred student\'s mother in', m(t2, c2p),
            { 'Куратор Кондитеров': 'owner', 'Мама Антона': 'member' });
        await settles(stack, 'the new group Т-11 has its chat', async () => {
            const c = await chatOf(stack, t3, g3.id, 'students');
            return c ? membersOf(stack, t3, c.id, names) : null;
        }, { 'Куратор Технологов': 'owner', 'Дмитрий Технолог': 'member' });
        await settles(stack, 'the general channel after', async () => {
            const all = await membersOf(stack, org.admin, general, names);
            return all && Object.keys(all).sort();
        }, ['Администратор СТК', 'Антон Переводимый', 'Валентина Новенькая', 'Дмитрий Технолог', 'Елена Вернувшаяся',
            'Куратор Кондитеров', 'Куратор Поваров', 'Куратор Технологов', 'Мама Антона', 'Папа Валентины', 'Папа Елены'].sort());
        assert.deepEqual(await chatsOf(stack, sB, org.id), [], 'the expelled student has none of the college\'s chats');
        // What was acknowledged before the stop is still there.
        const history = await allMessages(stack, sC, c1);
        assert.deepEqual(history.map((x) => x.id), [kept.id], 'the new student reads the message posted before the stop');
        assert.deepEqual((await allMessages(stack, sE, c1)).map((x) => x.id), [kept.id], 'so does the one enrolled back');
        await post(stack, t1, c1, 'С возвращением, Елена!');
        expectStatus(await stack.get(`/v1/chats/${c2p}/messages`, tok(pA)), 200, 'the mother whose role came back reads К-11\'s parents chat');
        assertError(await stack.get(`/v1/chats/${c1}/messages`, tok(sA)), 404, 'not_found', 'chat_id',
            'the transferred student no longer reads П-11');
        await post(stack, sA, c2, 'Здравствуйте, я из П-11.');
    });
});
