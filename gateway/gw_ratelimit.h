/*  gw_ratelimit: the gateway's rate limits as pure logic, no I/O. Limits are
    configuration ("ip=600/60;otp_phone=1/60,5/3600"), enforced with GCRA in
    one Redis Lua script (EVALSHA) and, while Redis is down, by a bounded
    in-process table that runs the same algorithm in C. */
#ifndef PARTA_GW_RATELIMIT_H
#define PARTA_GW_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define GW_RL_MAX_RULES 4               /* rules per class */
#define GW_RL_MAX_CLASSES 16
#define GW_RL_NAME_MAX 31               /* class name length, [a-z0-9_] */
#define GW_RL_MAX_BURST 1000000         /* N */
#define GW_RL_MAX_PERIOD_S (86400 * 30) /* P */
#define GW_RL_KEY_MAX 128               /* a Redis key with its NUL */

/*  Defaults. Per-IP limits are generous on purpose: a whole school often
    reaches us from one NAT address, and the per-phone limits are the ones that
    stop code flooding and password guessing against a person. */
#define GW_RL_DEFAULT_SPEC                                                    \
    "ip=600/60;otp_phone=1/60,5/3600;otp_ip=20/3600;login_phone=10/3600;"     \
    "login_ip=50/3600;app_ip=5/3600;invite_user=60/3600;post_user=20/10;me_user=20/3600"

/*  "N per P seconds". GCRA spaces requests by the emission interval T = P/N
    and tolerates a burst of N. T is kept in microseconds, rounded up (so a
    rule is never looser than written), because whole milliseconds cannot
    express e.g. 1000000 per second. */
typedef struct {
    int64_t burst;       /* N, 1..GW_RL_MAX_BURST */
    int64_t period_s;    /* P, 1..GW_RL_MAX_PERIOD_S */
    int64_t interval_us; /* T = ceil (P * 1e6 / N) */
} gw_rl_rule_t;

/*  A request of a class is allowed only if every rule allows it. */
typedef struct {
    char name[GW_RL_NAME_MAX + 1];
    size_t rule_count; /* 1..GW_RL_MAX_RULES */
    gw_rl_rule_t rules[GW_RL_MAX_RULES];
} gw_rl_class_t;

typedef struct {
    size_t count;
    gw_rl_class_t classes[GW_RL_MAX_CLASSES];
} gw_rl_classes_t;

/*  Parses a spec: classes separated by ';', each "name=rule[,rule...]" with
    rule "N/P" (N requests per P seconds). No blanks, no empty parts, no
    duplicate class or rule. 0 on success; on failure -1, `*out` is left
    untouched and `err` (if not NULL) says which part is wrong. */
int gw_ratelimit_parse (const char *spec, gw_rl_classes_t *out, char *err, size_t errlen);

/*  The class named `name`, or NULL. */
const gw_rl_class_t *gw_ratelimit_class (const gw_rl_classes_t *classes, const char *name);

/*  Seconds for a Retry-After header: the delay rounded up to whole seconds
    (0 for no delay). */
int64_t gw_ratelimit_retry_after_s (int64_t retry_after_ms);

/*  --- Redis side --- */

/*  The Lua script. KEYS: one per rule of the class (build them with
    gw_ratelimit_key). ARGV: for each rule, its interval_us then its burst.
    Takes the time from Redis TIME, checks every rule before it writes
    anything, and on success stores each new TAT (microseconds) with an
    expiry at that TAT. Replies {1, 0} allowed or {0, retry_after_ms}; a bad
    call gets an error reply. A TAT further ahead than a rule can leave it
    (Redis's clock stepped back) is clamped and rewritten, even on refusal. */
const char *gw_ratelimit_script (void);

/*  Writes the key of rule `rule_index` of `cls` for `subject` into `out`:
    "rl:{<class>:<subject>}:<N>/<P>". The hash tag puts a class's keys for one
    subject in one Redis Cluster slot; naming the rule rather than its
    position means an edited limit starts afresh instead of misreading an old
    state. A subject of other bytes than [A-Za-z0-9.:_+@-], empty, or longer
    than 64 bytes, is replaced by '#' and the hex of its BLAKE2b-128 hash.
    0 on success, -1 if `outlen` is too small (GW_RL_KEY_MAX always does). */
int gw_ratelimit_key (const gw_rl_class_t *cls, const char *subject, size_t rule_index, char *out,
                      size_t outlen);

/*  A whole script call, ready for redisCommandArgv / redisAsyncCommandArgv
    (hiredis copies the arguments, so the struct may die right after):
    EVALSHA <sha> <rules> <keys...> <interval_us burst ...>, or EVAL with the
    script text when `script_sha` is NULL (after NOSCRIPT: Redis restarted and
    lost its script cache). argv points into the struct: do not copy it. */
typedef struct {
    int argc;
    const char *argv[3 + 3 * GW_RL_MAX_RULES];
    size_t argvlen[3 + 3 * GW_RL_MAX_RULES];
    char keys[GW_RL_MAX_RULES][GW_RL_KEY_MAX];
    char numbers[1 + 2 * GW_RL_MAX_RULES][24];
} gw_rl_call_t;

void gw_ratelimit_call (gw_rl_call_t *call, const char *script_sha, const gw_rl_class_t *cls,
                        const char *subject);

/*  Reads the script's reply, the two integers of its array. Returns 1
    allowed, 0 refused (with *retry_after_ms > 0), -1 if the reply is not one
    the script can give (treat as a Redis failure). */
int gw_ratelimit_reply (long long allowed, long long retry_after_ms, int64_t *retry_after_ms_out);

/*  --- Fallback while Redis is down --- */

/*  Per-process GCRA state for at most `max_keys` (class, subject) pairs,
    allocated once: a check never allocates and never fails. When the table is
    full, a new pair takes the place of an expired one, or else of the one
    that expires soonest (it holds the least state, and a flood of cheap
    one-off keys cannot push out the long one-time-code limits). Not
    thread-safe: one per event loop. */
typedef struct gw_fallback_t gw_fallback_t;

/*  NULL if max_keys is 0 or too large, or out of memory. */
gw_fallback_t *gw_fallback_new (size_t max_keys);
void gw_fallback_destroy (gw_fallback_t **self_p);

/*  One request of class `cls` from `subject` at `now_ms` (any clock, the same
    for every call). 1 allowed (the budget is spent), 0 refused
    (*retry_after_ms > 0 says when it would be allowed; nothing spent). */
int gw_fallback_check (gw_fallback_t *self, const gw_rl_class_t *cls, const char *subject, int64_t now_ms,
                       int64_t *retry_after_ms);

/*  Pairs currently held. */
size_t gw_fallback_size (const gw_fallback_t *self);

#endif
