/*  gw_ratelimit: see gw_ratelimit.h. The spec parser, the GCRA decision
    shared by the Lua script and the C fallback, and the fallback's table. */
#include "gw_ratelimit.h"

#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SUBJECT_PLAIN_MAX 64
#define S_ID_BYTES 16

/*  --- GCRA ---

    Each rule keeps a theoretical arrival time (TAT): when the rule's budget
    is full again. For a request at `now`, tat = max (stored, now) and the
    request would move it to new_tat = tat + T; it is allowed when
    new_tat - T * N <= now, i.e. when at most N intervals are still owed.

    A class has several rules and a request must not spend any budget unless
    every rule allows it, so all rules are checked first and the new TATs are
    written only when all pass. The retry delay is the largest of the refusing
    rules' delays: before then some rule still refuses.

    A stored TAT further ahead than now + T * N cannot come from this
    algorithm; it means the clock went back (or the state is damaged). It is
    clamped to that bound, the most restrictive state the rule can be in, and
    the clamped value is kept even when the request is refused: that gives
    budget back, never takes it, and without it every request would see the
    same impossible TAT and a user would be locked out for as long as the
    clock step. The Lua script does exactly the same.

    `tats` is in/out: on return it holds the new TATs if allowed, else the
    stored ones after clamping. Returns 1 allowed, 0 refused; *repaired says
    whether a refusal changed `tats`. */

static int
s_gcra (const gw_rl_class_t *cls, int64_t tats[], int64_t now_us, int64_t *retry_after_us, int *repaired)
{
    int64_t new_tats[GW_RL_MAX_RULES];
    int64_t wait_us = 0;
    *repaired = 0;
    for (size_t i = 0; i < cls->rule_count; i++) {
        const gw_rl_rule_t *rule = &cls->rules[i];
        int64_t tolerance = rule->interval_us * rule->burst;
        if (tats[i] > now_us + tolerance) {
            tats[i] = now_us + tolerance;
            *repaired = 1;
        }
        int64_t tat = tats[i] > now_us ? tats[i] : now_us;
        new_tats[i] = tat + rule->interval_us;
        int64_t allow_at = new_tats[i] - tolerance;
        if (now_us < allow_at && allow_at - now_us > wait_us)
            wait_us = allow_at - now_us;
    }
    *retry_after_us = wait_us;
    if (wait_us > 0)
        return 0;
    for (size_t i = 0; i < cls->rule_count; i++)
        tats[i] = new_tats[i];
    return 1;
}

static int64_t
s_ceil_div (int64_t value, int64_t unit)
{
    return value <= 0 ? 0 : (value + unit - 1) / unit;
}

int64_t
gw_ratelimit_retry_after_s (int64_t retry_after_ms)
{
    return s_ceil_div (retry_after_ms, 1000);
}

/*  --- configuration --- */

static void
s_err (char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err, errlen, fmt, args);
    va_end (args);
}

/*  A piece of the spec, fit to quote in an error message: at most 40 bytes,
    anything but printable ASCII shown as '?'. */
static const char *
s_quote (const char *text, size_t len, char *buf, size_t buflen)
{
    size_t n = 0;
    for (; n < len && n + 4 < buflen && n < 40; n++)
        buf[n] = text[n] >= 0x20 && text[n] < 0x7f ? text[n] : '?';
    if (n < len && n + 4 <= buflen) {
        memcpy (buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/*  A decimal number, digits only. Values past 999999999 saturate there: they
    are out of every range, and the caller's range check says so. */
static int
s_parse_count (const char *text, size_t len, int64_t *value)
{
    if (len == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (text[i] - '0');
        if (v > 999999999)
            v = 999999999;
    }
    *value = v;
    return 0;
}

static int
s_parse_rule (const char *text, size_t len, const char *class_name, gw_rl_rule_t *rule, char *err,
              size_t errlen)
{
    char quoted[48];
    const char *slash = memchr (text, '/', len);
    int64_t burst, period;
    if (!slash || s_parse_count (text, (size_t) (slash - text), &burst)
        || s_parse_count (slash + 1, len - (size_t) (slash - text) - 1, &period)) {
        s_err (err, errlen, "rate limit class \"%s\": rule \"%s\" is not N/P (N requests per P seconds)",
               class_name, s_quote (text, len, quoted, sizeof quoted));
        return -1;
    }
    if (burst < 1 || burst > GW_RL_MAX_BURST) {
        s_err (err, errlen, "rate limit class \"%s\": rule \"%s\": N must be 1..%d", class_name,
               s_quote (text, len, quoted, sizeof quoted), GW_RL_MAX_BURST);
        return -1;
    }
    if (period < 1 || period > GW_RL_MAX_PERIOD_S) {
        s_err (err, errlen, "rate limit class \"%s\": rule \"%s\": P must be 1..%d seconds", class_name,
               s_quote (text, len, quoted, sizeof quoted), GW_RL_MAX_PERIOD_S);
        return -1;
    }
    rule->burst = burst;
    rule->period_s = period;
    rule->interval_us = s_ceil_div (period * 1000000, burst);
    return 0;
}

static int
s_parse_class (const char *text, size_t len, gw_rl_class_t *cls, char *err, size_t errlen)
{
    char quoted[48];
    const char *eq = memchr (text, '=', len);
    if (!eq) {
        s_err (err, errlen, "rate limit class \"%s\": expected name=N/P[,N/P...]",
               s_quote (text, len, quoted, sizeof quoted));
        return -1;
    }
    size_t name_len = (size_t) (eq - text);
    int name_ok = name_len >= 1 && name_len <= GW_RL_NAME_MAX;
    for (size_t i = 0; name_ok && i < name_len; i++)
        name_ok = (text[i] >= 'a' && text[i] <= 'z') || (text[i] >= '0' && text[i] <= '9') || text[i] == '_';
    if (!name_ok) {
        s_err (err, errlen, "rate limit class name \"%s\": must be 1..%d characters of a-z, 0-9, _",
               s_quote (text, name_len, quoted, sizeof quoted), GW_RL_NAME_MAX);
        return -1;
    }
    memset (cls, 0, sizeof *cls);
    memcpy (cls->name, text, name_len);

    const char *rule = eq + 1;
    const char *end = text + len;
    while (1) {
        const char *comma = memchr (rule, ',', (size_t) (end - rule));
        const char *rule_end = comma ? comma : end;
        if (cls->rule_count == GW_RL_MAX_RULES) {
            s_err (err, errlen, "rate limit class \"%s\": more than %d rules", cls->name, GW_RL_MAX_RULES);
            return -1;
        }
        gw_rl_rule_t *parsed = &cls->rules[cls->rule_count];
        if (s_parse_rule (rule, (size_t) (rule_end - rule), cls->name, parsed, err, errlen))
            return -1;
        for (size_t i = 0; i < cls->rule_count; i++)
            if (cls->rules[i].burst == parsed->burst && cls->rules[i].period_s == parsed->period_s) {
                s_err (err, errlen, "rate limit class \"%s\": rule \"%s\" appears twice", cls->name,
                       s_quote (rule, (size_t) (rule_end - rule), quoted, sizeof quoted));
                return -1;
            }
        cls->rule_count++;
        if (!comma)
            return 0;
        rule = comma + 1;
    }
}

int
gw_ratelimit_parse (const char *spec, gw_rl_classes_t *out, char *err, size_t errlen)
{
    assert (spec && out);
    if (*spec == '\0') {
        s_err (err, errlen, "rate limit spec is empty");
        return -1;
    }
    //  Parsed aside and copied at the end, so a failure leaves *out as it was.
    gw_rl_classes_t *parsed = calloc (1, sizeof *parsed);
    if (!parsed) {
        s_err (err, errlen, "rate limit spec: out of memory");
        return -1;
    }
    int rc = -1;
    const char *part = spec;
    while (1) {
        const char *semi = strchr (part, ';');
        size_t len = semi ? (size_t) (semi - part) : strlen (part);
        if (len == 0) {
            s_err (err, errlen, "rate limit spec: empty class at offset %zu (stray ';')", (size_t) (part - spec));
            goto out;
        }
        if (parsed->count == GW_RL_MAX_CLASSES) {
            s_err (err, errlen, "rate limit spec: more than %d classes", GW_RL_MAX_CLASSES);
            goto out;
        }
        gw_rl_class_t *cls = &parsed->classes[parsed->count];
        if (s_parse_class (part, len, cls, err, errlen))
            goto out;
        if (gw_ratelimit_class (parsed, cls->name)) {
            s_err (err, errlen, "rate limit class \"%s\" appears twice", cls->name);
            goto out;
        }
        parsed->count++;
        if (!semi)
            break;
        part = semi + 1;
    }
    *out = *parsed;
    rc = 0;
out:
    free (parsed);
    return rc;
}

const gw_rl_class_t *
gw_ratelimit_class (const gw_rl_classes_t *classes, const char *name)
{
    for (size_t i = 0; i < classes->count; i++)
        if (strcmp (classes->classes[i].name, name) == 0)
            return &classes->classes[i];
    return NULL;
}

/*  --- Redis side --- */

/*  Numbers in Redis's Lua are doubles: exact up to 2^53, which holds unix
    time in microseconds for another 250 years. TATs are written with %.0f
    because tostring() would give 14 significant digits. Arguments are checked
    because a bad call must be an error reply, not a limit that lets
    everything through. */
static const char s_script[] =
    "local n = #KEYS\n"
    "if n < 1 or #ARGV ~= 2 * n then\n"
    "  return redis.error_reply('ERR ratelimit: need one key per rule and 2 args per key')\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local new_tats = {}\n"
    "local wait = 0\n"
    "for i = 1, n do\n"
    "  local interval = tonumber(ARGV[2 * i - 1])\n"
    "  local burst = tonumber(ARGV[2 * i])\n"
    "  if not interval or not burst or interval < 1 or burst < 1\n"
    "     or interval % 1 ~= 0 or burst % 1 ~= 0 then\n"
    "    return redis.error_reply('ERR ratelimit: interval and burst must be positive integers')\n"
    "  end\n"
    "  local tolerance = interval * burst\n"
    "  local tat = tonumber(redis.call('GET', KEYS[i]))\n"
    "  if tat and tat > now + tolerance then\n"
    "    tat = now + tolerance\n"
    "    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil(tolerance / 1000))\n"
    "  end\n"
    "  if not tat or tat < now then tat = now end\n"
    "  new_tats[i] = tat + interval\n"
    "  local allow_at = new_tats[i] - tolerance\n"
    "  if now < allow_at and allow_at - now > wait then wait = allow_at - now end\n"
    "end\n"
    "if wait > 0 then\n"
    "  return {0, math.ceil(wait / 1000)}\n"
    "end\n"
    "for i = 1, n do\n"
    "  redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]),\n"
    "             'PX', math.ceil((new_tats[i] - now) / 1000))\n"
    "end\n"
    "return {1, 0}\n";

const char *
gw_ratelimit_script (void)
{
    return s_script;
}

static int
s_subject_is_plain (const char *subject, size_t len)
{
    if (len == 0 || len > S_SUBJECT_PLAIN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = subject[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == ':'
              || c == '_' || c == '+' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

int
gw_ratelimit_key (const gw_rl_class_t *cls, const char *subject, size_t rule_index, char *out, size_t outlen)
{
    assert (cls && subject && out && rule_index < cls->rule_count);
    size_t len = strlen (subject);
    char hashed[1 + 2 * S_ID_BYTES + 1];
    if (!s_subject_is_plain (subject, len)) {
        unsigned char digest[S_ID_BYTES];
        if (sodium_init () < 0)
            return -1;
        crypto_generichash (digest, sizeof digest, (const unsigned char *) subject, len, NULL, 0);
        hashed[0] = '#';
        sodium_bin2hex (hashed + 1, sizeof hashed - 1, digest, sizeof digest);
        subject = hashed;
    }
    const gw_rl_rule_t *rule = &cls->rules[rule_index];
    int n = snprintf (out, outlen, "rl:{%s:%s}:%" PRId64 "/%" PRId64, cls->name, subject, rule->burst,
                      rule->period_s);
    return n < 0 || (size_t) n >= outlen ? -1 : 0;
}

void
gw_ratelimit_call (gw_rl_call_t *call, const char *script_sha, const gw_rl_class_t *cls, const char *subject)
{
    assert (call && cls && subject && cls->rule_count >= 1 && cls->rule_count <= GW_RL_MAX_RULES);
    memset (call, 0, sizeof *call);
    size_t rules = cls->rule_count;
    call->argv[0] = script_sha ? "EVALSHA" : "EVAL";
    call->argv[1] = script_sha ? script_sha : s_script;
    snprintf (call->numbers[0], sizeof call->numbers[0], "%zu", rules);
    call->argv[2] = call->numbers[0];
    for (size_t i = 0; i < rules; i++) {
        //  GW_RL_KEY_MAX holds the longest key: name, hashed or plain subject
        //  and the largest N/P are all bounded.
        int rc = gw_ratelimit_key (cls, subject, i, call->keys[i], sizeof call->keys[i]);
        assert (rc == 0);
        (void) rc;
        call->argv[3 + i] = call->keys[i];
        char *interval = call->numbers[1 + 2 * i];
        char *burst = call->numbers[2 + 2 * i];
        snprintf (interval, sizeof call->numbers[0], "%" PRId64, cls->rules[i].interval_us);
        snprintf (burst, sizeof call->numbers[0], "%" PRId64, cls->rules[i].burst);
        call->argv[3 + rules + 2 * i] = interval;
        call->argv[4 + rules + 2 * i] = burst;
    }
    call->argc = (int) (3 + 3 * rules);
    for (int i = 0; i < call->argc; i++)
        call->argvlen[i] = strlen (call->argv[i]);
}

int
gw_ratelimit_reply (long long allowed, long long retry_after_ms, int64_t *retry_after_ms_out)
{
    //  A rule delays at most one interval, and an interval at most one period.
    const long long max_retry_ms = (long long) GW_RL_MAX_PERIOD_S * 1000 + 1;
    *retry_after_ms_out = 0;
    if (allowed == 1 && retry_after_ms == 0)
        return 1;
    if (allowed == 0 && retry_after_ms >= 1 && retry_after_ms <= max_retry_ms) {
        *retry_after_ms_out = retry_after_ms;
        return 0;
    }
    return -1;
}

/*  --- fallback table ---

    Entries live in one array allocated up front. They are found through a
    chained hash table whose bucket is SipHash (crypto_shorthash) with a key
    drawn at start, so a client choosing subjects cannot pile them into one
    chain. An entry is identified by a BLAKE2b-128 digest of class and
    subject, which keeps entries small and the same size whatever the subject.
    A binary min-heap on expiry (the largest TAT: after it the entry says
    nothing a fresh one would not) finds the entry to reuse when full. Indexes
    are 32-bit and 1-based, 0 meaning none. */

typedef struct {
    unsigned char id[S_ID_BYTES];
    int64_t tats_us[GW_RL_MAX_RULES];
    int64_t expires_us;
    uint32_t next; /* in the bucket's chain, or in the free list */
    uint32_t bucket;
    uint32_t heap_pos; /* 0-based position in heap */
} s_entry_t;

struct gw_fallback_t {
    s_entry_t *entries;
    uint32_t *buckets;
    uint32_t *heap; /* entry indexes, min expires_us first */
    size_t max_keys;
    size_t size;
    size_t bucket_mask;
    uint32_t free_list;
    unsigned char hash_key[crypto_shorthash_KEYBYTES];
};

gw_fallback_t *
gw_fallback_new (size_t max_keys)
{
    if (max_keys == 0 || max_keys >= UINT32_MAX / 2 || sodium_init () < 0)
        return NULL;
    gw_fallback_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    size_t buckets = 16;
    while (buckets < max_keys)
        buckets *= 2;
    self->entries = calloc (max_keys, sizeof *self->entries);
    self->buckets = calloc (buckets, sizeof *self->buckets);
    self->heap = calloc (max_keys, sizeof *self->heap);
    if (!self->entries || !self->buckets || !self->heap) {
        gw_fallback_destroy (&self);
        return NULL;
    }
    self->max_keys = max_keys;
    self->bucket_mask = buckets - 1;
    for (size_t i = 0; i < max_keys; i++)
        self->entries[i].next = i + 1 < max_keys ? (uint32_t) (i + 2) : 0;
    self->free_list = 1;
    randombytes_buf (self->hash_key, sizeof self->hash_key);
    return self;
}

void
gw_fallback_destroy (gw_fallback_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gw_fallback_t *self = *self_p;
    free (self->entries);
    free (self->buckets);
    free (self->heap);
    sodium_memzero (self->hash_key, sizeof self->hash_key);
    free (self);
    *self_p = NULL;
}

size_t
gw_fallback_size (const gw_fallback_t *self)
{
    return self->size;
}

static s_entry_t *
s_entry (gw_fallback_t *self, uint32_t index)
{
    return &self->entries[index - 1];
}

static void
s_heap_swap (gw_fallback_t *self, size_t a, size_t b)
{
    uint32_t tmp = self->heap[a];
    self->heap[a] = self->heap[b];
    self->heap[b] = tmp;
    s_entry (self, self->heap[a])->heap_pos = (uint32_t) a;
    s_entry (self, self->heap[b])->heap_pos = (uint32_t) b;
}

static int64_t
s_heap_key (gw_fallback_t *self, size_t pos)
{
    return s_entry (self, self->heap[pos])->expires_us;
}

static void
s_heap_fix (gw_fallback_t *self, size_t pos)
{
    while (pos > 0 && s_heap_key (self, (pos - 1) / 2) > s_heap_key (self, pos)) {
        s_heap_swap (self, pos, (pos - 1) / 2);
        pos = (pos - 1) / 2;
    }
    while (1) {
        size_t least = pos;
        size_t left = 2 * pos + 1, right = 2 * pos + 2;
        if (left < self->size && s_heap_key (self, left) < s_heap_key (self, least))
            least = left;
        if (right < self->size && s_heap_key (self, right) < s_heap_key (self, least))
            least = right;
        if (least == pos)
            return;
        s_heap_swap (self, pos, least);
        pos = least;
    }
}

/*  Unlinks the entry that expires soonest (expired or not) and returns its
    index, for reuse. */
static uint32_t
s_evict_soonest (gw_fallback_t *self)
{
    assert (self->size > 0);
    uint32_t index = self->heap[0];
    s_entry_t *entry = s_entry (self, index);
    uint32_t *link = &self->buckets[entry->bucket];
    while (*link != index)
        link = &s_entry (self, *link)->next;
    *link = entry->next;
    self->size--;
    if (self->size > 0) {
        self->heap[0] = self->heap[self->size];
        s_entry (self, self->heap[0])->heap_pos = 0;
        s_heap_fix (self, 0);
    }
    return index;
}

static void
s_entry_store (gw_fallback_t *self, uint32_t index, const gw_rl_class_t *cls, const int64_t tats[])
{
    s_entry_t *entry = s_entry (self, index);
    memcpy (entry->tats_us, tats, sizeof entry->tats_us);
    entry->expires_us = tats[0];
    for (size_t i = 1; i < cls->rule_count; i++)
        if (tats[i] > entry->expires_us)
            entry->expires_us = tats[i];
    s_heap_fix (self, entry->heap_pos);
}

int
gw_fallback_check (gw_fallback_t *self, const gw_rl_class_t *cls, const char *subject, int64_t now_ms,
                   int64_t *retry_after_ms)
{
    assert (self && cls && subject && retry_after_ms);
    assert (cls->rule_count >= 1 && cls->rule_count <= GW_RL_MAX_RULES);
    assert (now_ms >= 0 && now_ms <= INT64_MAX / 4000);
    int64_t now_us = now_ms * 1000;

    unsigned char id[S_ID_BYTES];
    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, sizeof id);
    crypto_generichash_update (&state, (const unsigned char *) cls->name, strlen (cls->name) + 1);
    crypto_generichash_update (&state, (const unsigned char *) subject, strlen (subject));
    crypto_generichash_final (&state, id, sizeof id);
    unsigned char hash[crypto_shorthash_BYTES];
    crypto_shorthash (hash, id, sizeof id, self->hash_key);
    uint64_t hash64;
    memcpy (&hash64, hash, sizeof hash64);
    uint32_t bucket = (uint32_t) (hash64 & self->bucket_mask);

    uint32_t index = self->buckets[bucket];
    while (index && memcmp (s_entry (self, index)->id, id, sizeof id) != 0)
        index = s_entry (self, index)->next;

    int64_t tats[GW_RL_MAX_RULES] = {0};
    if (index)
        memcpy (tats, s_entry (self, index)->tats_us, sizeof tats);
    int64_t wait_us;
    int repaired;
    int allowed = s_gcra (cls, tats, now_us, &wait_us, &repaired);
    *retry_after_ms = s_ceil_div (wait_us, 1000);
    if (!allowed) {
        if (repaired && index)
            s_entry_store (self, index, cls, tats);
        return 0;
    }

    if (!index) {
        if (self->free_list) {
            index = self->free_list;
            self->free_list = s_entry (self, index)->next;
        }
        else
            index = s_evict_soonest (self);
        s_entry_t *entry = s_entry (self, index);
        memcpy (entry->id, id, sizeof id);
        entry->bucket = bucket;
        entry->next = self->buckets[bucket];
        self->buckets[bucket] = index;
        entry->heap_pos = (uint32_t) self->size;
        entry->expires_us = INT64_MIN;
        self->heap[self->size++] = index;
    }
    s_entry_store (self, index, cls, tats);
    return 1;
}
