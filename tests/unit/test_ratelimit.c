/*  Rate limit tests: GCRA decisions and retry delays on an injected clock,
    refusals that spend nothing, the fallback table's bound and eviction, the
    spec parser and every way a spec is rejected, keys and script calls, and
    a real redis-server running the Lua script side by side with the C
    fallback to show that both decide the same. */
#include "../../gateway/gw_ratelimit.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#define S_SEC 1000 /* ms */
#define S_REDIS_SERVER "/usr/bin/redis-server"

static gw_rl_classes_t s_classes;

static const gw_rl_class_t *
s_class (const char *spec, const char *name)
{
    char err[256] = "";
    if (gw_ratelimit_parse (spec, &s_classes, err, sizeof err))
        fail_msg ("spec \"%s\" rejected: %s", spec, err);
    const gw_rl_class_t *cls = gw_ratelimit_class (&s_classes, name);
    assert_non_null (cls);
    return cls;
}

/*  Asserts one decision of the fallback at `now_ms`: allowed (expect_retry
    -1) or refused with exactly `expect_retry` ms to wait. */
static void
s_expect (gw_fallback_t *fb, const gw_rl_class_t *cls, const char *subject, int64_t now_ms,
          int64_t expect_retry)
{
    int64_t retry = -42;
    int allowed = gw_fallback_check (fb, cls, subject, now_ms, &retry);
    if (expect_retry < 0) {
        if (!allowed)
            fail_msg ("%s at %lld ms: refused (retry %lld ms), expected allowed", subject, (long long) now_ms,
                      (long long) retry);
        assert_int_equal (retry, 0);
    }
    else {
        if (allowed)
            fail_msg ("%s at %lld ms: allowed, expected refused with retry %lld ms", subject,
                      (long long) now_ms, (long long) expect_retry);
        assert_int_equal (retry, expect_retry);
    }
}

#define ALLOWED (-1)

/*  One code per minute and five per hour: the exact sequence a phone sees. */
static void
test_gcra_otp_phone (void **state)
{
    (void) state;
    const gw_rl_class_t *otp = s_class ("otp_phone=1/60,5/3600", "otp_phone");
    assert_int_equal (otp->rules[0].interval_us, 60 * 1000000LL);
    assert_int_equal (otp->rules[1].interval_us, 720 * 1000000LL);
    gw_fallback_t *fb = gw_fallback_new (16);
    assert_non_null (fb);
    const char *phone = "+79990000001";
    int64_t t0 = 1700000000000LL;

    s_expect (fb, otp, phone, t0, ALLOWED);
    s_expect (fb, otp, phone, t0 + 1 * S_SEC, 59 * S_SEC);
    s_expect (fb, otp, phone, t0 + 59 * S_SEC + 999, 1);
    s_expect (fb, otp, phone, t0 + 60 * S_SEC, ALLOWED);
    s_expect (fb, otp, phone, t0 + 120 * S_SEC, ALLOWED);
    s_expect (fb, otp, phone, t0 + 180 * S_SEC, ALLOWED);
    s_expect (fb, otp, phone, t0 + 240 * S_SEC, ALLOWED);
    //  Five in four minutes: the hourly rule owes 5 * 720 s from t0, the
    //  minute rule would allow. Next allowed at 3600 - 4 * 720 = 720 s.
    s_expect (fb, otp, phone, t0 + 300 * S_SEC, 420 * S_SEC);
    s_expect (fb, otp, phone, t0 + 300 * S_SEC, 420 * S_SEC);
    s_expect (fb, otp, phone, t0 + 719 * S_SEC, 1 * S_SEC);
    s_expect (fb, otp, phone, t0 + 720 * S_SEC, ALLOWED);
    //  Both rules refuse: the longer wait is the one to report.
    s_expect (fb, otp, phone, t0 + 721 * S_SEC, 719 * S_SEC);
    s_expect (fb, otp, phone, t0 + 1439 * S_SEC + 999, 1);
    s_expect (fb, otp, phone, t0 + 1440 * S_SEC, ALLOWED);
    //  Another phone is not affected.
    s_expect (fb, otp, "+79990000002", t0 + 721 * S_SEC, ALLOWED);

    //  After a quiet hour the whole burst is back, one per minute.
    int64_t later = t0 + 1440 * S_SEC + 3600 * S_SEC;
    for (int i = 0; i < 4; i++) {
        s_expect (fb, otp, phone, later + i * 60 * S_SEC, ALLOWED);
        s_expect (fb, otp, phone, later + i * 60 * S_SEC + 1, 60 * S_SEC - 1);
    }
    s_expect (fb, otp, phone, later + 240 * S_SEC, ALLOWED);
    s_expect (fb, otp, phone, later + 240 * S_SEC + 1, 480 * S_SEC - 1);
    s_expect (fb, otp, phone, later + 300 * S_SEC, 420 * S_SEC);
    gw_fallback_destroy (&fb);
}

/*  600 per minute: a burst of 600 at once, then one per 100 ms. */
static void
test_gcra_burst (void **state)
{
    (void) state;
    const gw_rl_class_t *ip = s_class (GW_RL_DEFAULT_SPEC, "ip");
    assert_int_equal (ip->rules[0].burst, 600);
    assert_int_equal (ip->rules[0].interval_us, 100000);
    gw_fallback_t *fb = gw_fallback_new (16);
    assert_non_null (fb);
    const char *addr = "198.51.100.7";
    int64_t t0 = 5000000;

    for (int i = 0; i < 600; i++)
        s_expect (fb, ip, addr, t0, ALLOWED);
    s_expect (fb, ip, addr, t0, 100);
    s_expect (fb, ip, addr, t0 + 99, 1);
    s_expect (fb, ip, addr, t0 + 100, ALLOWED);
    s_expect (fb, ip, addr, t0 + 100, 100);
    //  The sustained rate is always allowed...
    for (int i = 2; i < 1000; i++)
        s_expect (fb, ip, addr, t0 + i * 100, ALLOWED);
    //  ...and nothing faster.
    s_expect (fb, ip, addr, t0 + 999 * 100 + 50, 50);

    //  A minute of silence refills all of it, and no more.
    int64_t later = t0 + 999 * 100 + 60 * S_SEC;
    for (int i = 0; i < 600; i++)
        s_expect (fb, ip, addr, later, ALLOWED);
    s_expect (fb, ip, addr, later, 100);
    s_expect (fb, ip, addr, later + 60 * S_SEC * 10, ALLOWED);
    gw_fallback_destroy (&fb);
}

/*  Refusals spend no rule's budget: not the rule that refused, and not the
    rules that would have allowed. */
static void
test_refused_spends_nothing (void **state)
{
    (void) state;
    //  Rule 1: 2 per 10 s (T = 5 s). Rule 2: 3 per hour (T = 1200 s).
    const gw_rl_class_t *cls = s_class ("pair=2/10,3/3600", "pair");
    gw_fallback_t *fb = gw_fallback_new (16);
    assert_non_null (fb);
    int64_t t0 = 1000 * S_SEC;

    s_expect (fb, cls, "u1", t0, ALLOWED);
    s_expect (fb, cls, "u1", t0, ALLOWED);
    //  Rule 1 refuses until t0 + 5 s; rule 2 would allow each of these.
    for (int i = 0; i < 1000; i++)
        s_expect (fb, cls, "u1", t0 + 1 * S_SEC + i, 4 * S_SEC - i);
    //  Had rule 2 been charged for them, it would refuse now.
    s_expect (fb, cls, "u1", t0 + 5 * S_SEC, ALLOWED);
    //  Rule 2 is spent (3 in an hour) and refuses until t0 + 1200 s; rule 1
    //  would allow every one of these.
    for (int i = 0; i < 1000; i++)
        s_expect (fb, cls, "u1", t0 + 20 * S_SEC + i * S_SEC, (1180 - i) * S_SEC);
    //  Had rule 1 been charged 1000 times, it would refuse for 5000 s more.
    s_expect (fb, cls, "u1", t0 + 1200 * S_SEC, ALLOWED);
    s_expect (fb, cls, "u1", t0 + 1200 * S_SEC, 1200 * S_SEC);
    gw_fallback_destroy (&fb);
}

/*  A clock stepping back does not lock a subject out for the size of the
    step: the state is read as at most one full period ahead. */
static void
test_clock_step_back (void **state)
{
    (void) state;
    const gw_rl_class_t *cls = s_class ("otp_phone=1/60,5/3600", "otp_phone");
    gw_fallback_t *fb = gw_fallback_new (16);
    assert_non_null (fb);
    int64_t t0 = 1700000000000LL;
    s_expect (fb, cls, "+79990000001", t0, ALLOWED);
    //  A day back: each rule reads as full, the longest wait is one interval
    //  of the hour rule, not a day, and that wait is true.
    int64_t back = t0 - 86400 * S_SEC;
    s_expect (fb, cls, "+79990000001", back, 720 * S_SEC);
    s_expect (fb, cls, "+79990000001", back + 719 * S_SEC, 1 * S_SEC);
    s_expect (fb, cls, "+79990000001", back + 720 * S_SEC, ALLOWED);
    s_expect (fb, cls, "+79990000001", back + 721 * S_SEC, 719 * S_SEC);
    gw_fallback_destroy (&fb);
}

static void
test_retry_after_seconds (void **state)
{
    (void) state;
    assert_int_equal (gw_ratelimit_retry_after_s (0), 0);
    assert_int_equal (gw_ratelimit_retry_after_s (-5), 0);
    assert_int_equal (gw_ratelimit_retry_after_s (1), 1);
    assert_int_equal (gw_ratelimit_retry_after_s (999), 1);
    assert_int_equal (gw_ratelimit_retry_after_s (1000), 1);
    assert_int_equal (gw_ratelimit_retry_after_s (1001), 2);
    assert_int_equal (gw_ratelimit_retry_after_s (59000), 59);
    assert_int_equal (gw_ratelimit_retry_after_s (719 * 1000LL), 719);
}

/*  A full table takes a new subject in the place of an expired entry, and
    if none has expired, of the one that expires soonest: the long limits
    survive a flood of short-lived keys. */
static void
test_table_bound_and_eviction (void **state)
{
    (void) state;
    s_class ("ip=1/1;otp=1/3600", "ip");
    const gw_rl_class_t *ip = gw_ratelimit_class (&s_classes, "ip");
    const gw_rl_class_t *otp = gw_ratelimit_class (&s_classes, "otp");
    gw_fallback_t *fb = gw_fallback_new (4);
    assert_non_null (fb);
    int64_t t0 = 1700000000000LL;

    s_expect (fb, otp, "victim", t0, ALLOWED);
    s_expect (fb, ip, "b", t0, ALLOWED);
    s_expect (fb, ip, "c", t0 + 1, ALLOWED);
    s_expect (fb, ip, "d", t0 + 2, ALLOWED);
    assert_int_equal (gw_fallback_size (fb), 4);

    //  Full, nothing expired: "b" expires soonest and goes.
    s_expect (fb, ip, "e", t0 + 500, ALLOWED);
    assert_int_equal (gw_fallback_size (fb), 4);
    s_expect (fb, otp, "victim", t0 + 500, 3600 * S_SEC - 500);
    s_expect (fb, ip, "c", t0 + 500, 501);
    s_expect (fb, ip, "d", t0 + 500, 502);
    s_expect (fb, ip, "b", t0 + 500, ALLOWED); /* forgotten; takes c's place */
    s_expect (fb, ip, "d", t0 + 500, 502);
    s_expect (fb, ip, "e", t0 + 500, 1000);

    //  A flood of new subjects long after: they reuse expired entries and
    //  each other's, never the hour-long one.
    for (int i = 0; i < 10000; i++) {
        char subject[32];
        snprintf (subject, sizeof subject, "flood%d", i);
        s_expect (fb, ip, subject, t0 + 10 * S_SEC + i, ALLOWED);
        assert_true (gw_fallback_size (fb) <= 4);
    }
    s_expect (fb, otp, "victim", t0 + 20 * S_SEC, 3580 * S_SEC);

    //  Only long entries: the one expiring soonest is forgotten.
    gw_fallback_destroy (&fb);
    assert_null (fb);
    gw_fallback_destroy (&fb);
    fb = gw_fallback_new (4);
    assert_non_null (fb);
    const char *phones[] = {"p0", "p1", "p2", "p3"};
    for (int i = 0; i < 4; i++)
        s_expect (fb, otp, phones[i], t0 + i * S_SEC, ALLOWED);
    s_expect (fb, otp, "p4", t0 + 4 * S_SEC, ALLOWED);
    s_expect (fb, otp, "p1", t0 + 5 * S_SEC, 3596 * S_SEC);
    s_expect (fb, otp, "p2", t0 + 5 * S_SEC, 3597 * S_SEC);
    s_expect (fb, otp, "p3", t0 + 5 * S_SEC, 3598 * S_SEC);
    s_expect (fb, otp, "p4", t0 + 5 * S_SEC, 3599 * S_SEC);
    s_expect (fb, otp, "p0", t0 + 5 * S_SEC, ALLOWED);
    assert_int_equal (gw_fallback_size (fb), 4);
    gw_fallback_destroy (&fb);

    assert_null (gw_fallback_new (0));
}

/*  The production size: many more subjects than room, the size never passes
    the bound, and the most recent subjects keep their state. */
static void
test_table_large (void **state)
{
    (void) state;
    const gw_rl_class_t *ip = s_class ("ip=1/3600", "ip");
    const size_t max_keys = 100000;
    gw_fallback_t *fb = gw_fallback_new (max_keys);
    assert_non_null (fb);
    int64_t t0 = 1700000000000LL;
    const int subjects = 250000;
    char subject[32];
    for (int i = 0; i < subjects; i++) {
        snprintf (subject, sizeof subject, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        s_expect (fb, ip, subject, t0 + i, ALLOWED);
    }
    assert_int_equal (gw_fallback_size (fb), max_keys);
    int64_t now = t0 + subjects;
    for (int i = subjects - 1000; i < subjects; i++) {
        snprintf (subject, sizeof subject, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        s_expect (fb, ip, subject, now, 3600 * S_SEC - (now - (t0 + i)));
    }
    //  The oldest kept is subject 150000; 149999 was forgotten.
    s_expect (fb, ip, "10.2.73.240", now, 3600 * S_SEC - (subjects - 150000));
    s_expect (fb, ip, "10.2.73.239", now, ALLOWED);
    s_expect (fb, ip, "10.0.0.0", now, ALLOWED);
    assert_int_equal (gw_fallback_size (fb), max_keys);
    gw_fallback_destroy (&fb);
}

static void
test_parse_default_and_lookup (void **state)
{
    (void) state;
    gw_rl_classes_t classes;
    char err[256] = "";
    assert_int_equal (gw_ratelimit_parse (GW_RL_DEFAULT_SPEC, &classes, err, sizeof err), 0);
    assert_int_equal (classes.count, 9);
    const char *names[] = {"ip",       "otp_phone", "otp_ip",      "login_phone", "login_ip",
                           "app_ip",   "invite_user", "post_user", "me_user"};
    for (size_t i = 0; i < 9; i++) {
        const gw_rl_class_t *cls = gw_ratelimit_class (&classes, names[i]);
        assert_non_null (cls);
        assert_string_equal (cls->name, names[i]);
    }
    const gw_rl_class_t *otp = gw_ratelimit_class (&classes, "otp_phone");
    assert_int_equal (otp->rule_count, 2);
    assert_int_equal (otp->rules[0].burst, 1);
    assert_int_equal (otp->rules[0].period_s, 60);
    assert_int_equal (otp->rules[1].burst, 5);
    assert_int_equal (otp->rules[1].period_s, 3600);
    /*  The issues' figures: 20 codes per hour per IP, 50 checks per hour per IP. */
    assert_int_equal (gw_ratelimit_class (&classes, "otp_ip")->rules[0].burst, 20);
    assert_int_equal (gw_ratelimit_class (&classes, "login_ip")->rules[0].burst, 50);
    assert_int_equal (gw_ratelimit_class (&classes, "login_phone")->rules[0].burst, 10);
    assert_null (gw_ratelimit_class (&classes, "nope"));
    assert_null (gw_ratelimit_class (&classes, "otp"));
    assert_null (gw_ratelimit_class (&classes, ""));

    //  The limits of the ranges are accepted; uneven intervals round up.
    assert_int_equal (gw_ratelimit_parse ("a_1=1000000/1,1/2592000,7/60;"
                                          "abcdefghijklmnopqrstuvwxyz01234=1/1",
                                          &classes, err, sizeof err),
                      0);
    assert_int_equal (classes.count, 2);
    const gw_rl_class_t *a = gw_ratelimit_class (&classes, "a_1");
    assert_int_equal (a->rule_count, 3);
    assert_int_equal (a->rules[0].interval_us, 1);
    assert_int_equal (a->rules[1].interval_us, 2592000LL * 1000000);
    assert_int_equal (a->rules[2].interval_us, 8571429);
    assert_non_null (gw_ratelimit_class (&classes, "abcdefghijklmnopqrstuvwxyz01234"));
    //  No error buffer is fine.
    assert_int_equal (gw_ratelimit_parse ("x=1/1", &classes, NULL, 0), 0);
}

static void
test_parse_rejections (void **state)
{
    (void) state;
    static const struct {
        const char *spec;
        const char *message; /* a part of the error */
    } cases[] = {
        {"", "spec is empty"},
        {"ip=1/60;", "empty class at offset 8"},
        {";ip=1/60", "empty class at offset 0"},
        {"ip=1/60;;x=1/1", "empty class at offset 8"},
        {"ip", "class \"ip\": expected name=N/P"},
        {"=1/60", "class name \"\": must be 1..31"},
        {"IP=1/60", "class name \"IP\""},
        {"ip-x=1/60", "class name \"ip-x\""},
        {"ip x=1/60", "class name \"ip x\""},
        {"abcdefghijklmnopqrstuvwxyz012345=1/1", "class name \"abcdefghijklmnopqrstuvwxyz012345\""},
        {"ip\x01=1/60", "class name \"ip?\""},
        {"ip=", "class \"ip\": rule \"\" is not N/P"},
        {"ip=60", "rule \"60\" is not N/P"},
        {"ip=1/", "rule \"1/\" is not N/P"},
        {"ip=/60", "rule \"/60\" is not N/P"},
        {"ip=1/60/2", "rule \"1/60/2\" is not N/P"},
        {"ip=-1/60", "rule \"-1/60\" is not N/P"},
        {"ip=+1/60", "rule \"+1/60\" is not N/P"},
        {"ip= 1/60", "rule \" 1/60\" is not N/P"},
        {"ip=1/60 ", "rule \"1/60 \" is not N/P"},
        {"ip=1/1m", "rule \"1/1m\" is not N/P"},
        {"ip=1.5/60", "rule \"1.5/60\" is not N/P"},
        {"ip=1/60=2", "rule \"1/60=2\" is not N/P"},
        {"ip=1/60,,2/60", "rule \"\" is not N/P"},
        {"ip=1/60,", "rule \"\" is not N/P"},
        {"ip=0/60", "class \"ip\": rule \"0/60\": N must be 1..1000000"},
        {"ip=1000001/60", "rule \"1000001/60\": N must be 1..1000000"},
        {"ip=99999999999999999999999/60", "N must be 1..1000000"},
        {"ip=1/0", "class \"ip\": rule \"1/0\": P must be 1..2592000 seconds"},
        {"ip=1/2592001", "rule \"1/2592001\": P must be 1..2592000 seconds"},
        {"ip=1/99999999999999999999999", "P must be 1..2592000 seconds"},
        {"ip=1/1,2/2,3/3,4/4,5/5", "class \"ip\": more than 4 rules"},
        {"ip=1/60,2/60,1/60", "class \"ip\": rule \"1/60\" appears twice"},
        {"ip=1/60;otp=1/60;ip=2/60", "class \"ip\" appears twice"},
        {"a=1/1;b=1/1;c=1/1;d=1/1;e=1/1;f=1/1;g=1/1;h=1/1;i=1/1;j=1/1;k=1/1;l=1/1;m=1/1;n=1/1;"
         "o=1/1;p=1/1;q=1/1",
         "more than 16 classes"},
        {"ip=1/60;otp=1/60,5/0", "class \"otp\": rule \"5/0\": P must"},
        {"ip=1/60;otp=123456789012345678901234567890123456789012345678901234567890",
         "rule \"1234567890123456789012345678901234567890...\" is not N/P"},
    };
    gw_rl_classes_t good, out;
    assert_int_equal (gw_ratelimit_parse (GW_RL_DEFAULT_SPEC, &good, NULL, 0), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        out = good;
        if (gw_ratelimit_parse (cases[i].spec, &out, err, sizeof err) != -1)
            fail_msg ("spec \"%s\" accepted", cases[i].spec);
        if (!strstr (err, cases[i].message))
            fail_msg ("spec \"%s\": error \"%s\" does not say \"%s\"", cases[i].spec, err, cases[i].message);
        //  Nothing half-parsed: the previous configuration is intact.
        assert_memory_equal (&out, &good, sizeof out);
    }
    //  A short error buffer is truncated, not overrun.
    char small[12];
    memset (small, 'x', sizeof small);
    assert_int_equal (gw_ratelimit_parse ("ip=0/60", &out, small, 8), -1);
    assert_int_equal (strlen (small), 7);
    assert_int_equal (small[8], 'x');
}

static int
s_key_char_ok (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr (".:_+@-#/", c) != NULL;
}

/*  Keys keep one shape whatever the subject: the braces of the hash tag are
    the only ones, and nothing but a small set of characters appears. */
static void
s_check_key_shape (const char *key, const char *prefix)
{
    assert_int_equal (strncmp (key, prefix, strlen (prefix)), 0);
    const char *close = strchr (key, '}');
    assert_non_null (close);
    assert_null (strchr (close + 1, '}'));
    assert_null (strchr (key + 4, '{'));
    for (const char *c = key + strlen (prefix); c < close; c++)
        assert_true (s_key_char_ok (*c));
}

static void
test_keys (void **state)
{
    (void) state;
    const gw_rl_class_t *otp = s_class ("otp_phone=1/60,5/3600", "otp_phone");
    char key[GW_RL_KEY_MAX], other[GW_RL_KEY_MAX];

    assert_int_equal (gw_ratelimit_key (otp, "+79990000001", 0, key, sizeof key), 0);
    assert_string_equal (key, "rl:{otp_phone:+79990000001}:1/60");
    assert_int_equal (gw_ratelimit_key (otp, "+79990000001", 1, key, sizeof key), 0);
    assert_string_equal (key, "rl:{otp_phone:+79990000001}:5/3600");
    assert_int_equal (gw_ratelimit_key (otp, "2001:db8::1", 1, key, sizeof key), 0);
    assert_string_equal (key, "rl:{otp_phone:2001:db8::1}:5/3600");

    //  Subjects that could break the key's shape are hashed.
    const char *odd[] = {"a}b", "a{b", "a b", "", "a\r\nPING", "\xd0\x9f\xd1\x80\xd0\xb8",
                         "0123456789012345678901234567890123456789012345678901234567890123X"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        assert_int_equal (gw_ratelimit_key (otp, odd[i], 0, key, sizeof key), 0);
        s_check_key_shape (key, "rl:{otp_phone:#");
        assert_int_equal (strlen (key), strlen ("rl:{otp_phone:#}:1/60") + 32);
        for (size_t j = 0; j < i; j++) {
            assert_int_equal (gw_ratelimit_key (otp, odd[j], 0, other, sizeof other), 0);
            assert_string_not_equal (key, other);
        }
        assert_int_equal (gw_ratelimit_key (otp, odd[i], 0, other, sizeof other), 0);
        assert_string_equal (key, other);
    }
    //  64 plain bytes stay plain; a subject cannot pose as a hashed one.
    const char *sixty_four = "0123456789012345678901234567890123456789012345678901234567890123";
    assert_int_equal (gw_ratelimit_key (otp, sixty_four, 0, key, sizeof key), 0);
    s_check_key_shape (key, "rl:{otp_phone:0123");
    assert_int_equal (gw_ratelimit_key (otp, "#00", 0, key, sizeof key), 0);
    assert_int_equal (strlen (key), strlen ("rl:{otp_phone:#}:1/60") + 32);

    //  The longest possible key fits GW_RL_KEY_MAX; a short buffer is refused.
    const gw_rl_class_t *big = s_class ("abcdefghijklmnopqrstuvwxyz01234=1000000/2592000", "abcdefghijklmnopqrstuvwxyz01234");
    assert_int_equal (gw_ratelimit_key (big, sixty_four, 0, key, sizeof key), 0);
    assert_int_equal (gw_ratelimit_key (big, sixty_four, 0, key, strlen (key)), -1);
}

static void
test_call_and_reply (void **state)
{
    (void) state;
    const gw_rl_class_t *otp = s_class ("otp_phone=1/60,5/3600", "otp_phone");
    gw_rl_call_t call;
    gw_ratelimit_call (&call, "0123456789abcdef0123456789abcdef01234567", otp, "+79990000001");
    const char *expect[] = {"EVALSHA", "0123456789abcdef0123456789abcdef01234567", "2",
                            "rl:{otp_phone:+79990000001}:1/60", "rl:{otp_phone:+79990000001}:5/3600",
                            "60000000", "1", "720000000", "5"};
    assert_int_equal (call.argc, 9);
    for (int i = 0; i < call.argc; i++) {
        assert_string_equal (call.argv[i], expect[i]);
        assert_int_equal (call.argvlen[i], strlen (expect[i]));
    }
    gw_ratelimit_call (&call, NULL, otp, "+79990000001");
    assert_string_equal (call.argv[0], "EVAL");
    assert_string_equal (call.argv[1], gw_ratelimit_script ());

    int64_t retry = -1;
    assert_int_equal (gw_ratelimit_reply (1, 0, &retry), 1);
    assert_int_equal (retry, 0);
    assert_int_equal (gw_ratelimit_reply (0, 59000, &retry), 0);
    assert_int_equal (retry, 59000);
    assert_int_equal (gw_ratelimit_reply (0, 2592000000LL, &retry), 0);
    //  What the script never answers is not trusted.
    assert_int_equal (gw_ratelimit_reply (0, 0, &retry), -1);
    assert_int_equal (gw_ratelimit_reply (0, -1, &retry), -1);
    assert_int_equal (gw_ratelimit_reply (0, 2592000002LL, &retry), -1);
    assert_int_equal (gw_ratelimit_reply (1, 5, &retry), -1);
    assert_int_equal (gw_ratelimit_reply (2, 0, &retry), -1);
    assert_int_equal (gw_ratelimit_reply (-1, 0, &retry), -1);
}

/*  --- a real Redis --- */

typedef struct {
    char dir[64];
    char sock[96];
    char log[96];
    pid_t pid;
    redisContext *redis;
} s_redis_t;

static int
s_redis_setup (void **state)
{
    s_redis_t *r = calloc (1, sizeof *r);
    if (!r)
        return -1;
    *state = r;
    return 0;
}

static void
s_redis_start (s_redis_t *r)
{
    if (access (S_REDIS_SERVER, X_OK) != 0)
        fail_msg ("%s is missing: the project's dependencies install it", S_REDIS_SERVER);
    snprintf (r->dir, sizeof r->dir, "/tmp/parta-rl-XXXXXX");
    if (!mkdtemp (r->dir))
        fail_msg ("mkdtemp: %s", strerror (errno));
    snprintf (r->sock, sizeof r->sock, "%s/r.sock", r->dir);
    snprintf (r->log, sizeof r->log, "%s/redis.log", r->dir);
    fflush (stdout);
    fflush (stderr);
    r->pid = fork ();
    assert_true (r->pid >= 0);
    if (r->pid == 0) {
        int log_fd = open (r->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (log_fd < 0 || dup2 (log_fd, 1) < 0 || dup2 (log_fd, 2) < 0)
            _exit (126);
        execl (S_REDIS_SERVER, "redis-server", "--port", "0", "--save", "", "--appendonly", "no", "--unixsocket",
               r->sock, "--daemonize", "no", "--dir", r->dir, (char *) NULL);
        _exit (127);
    }
    for (int attempt = 0; attempt < 500; attempt++) {
        int status;
        if (waitpid (r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0;
            fail_msg ("redis-server exited at start (status %d), see its log", status);
        }
        redisContext *ctx = redisConnectUnix (r->sock);
        if (ctx && !ctx->err) {
            redisReply *reply = redisCommand (ctx, "PING");
            if (reply && reply->type == REDIS_REPLY_STATUS && strcmp (reply->str, "PONG") == 0) {
                freeReplyObject (reply);
                r->redis = ctx;
                return;
            }
            if (reply)
                freeReplyObject (reply);
        }
        if (ctx)
            redisFree (ctx);
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep (&pause, NULL);
    }
    fail_msg ("redis-server did not answer on %s within 10 s", r->sock);
}

static int
s_redis_teardown (void **state)
{
    s_redis_t *r = *state;
    if (r->redis)
        redisFree (r->redis);
    if (r->pid > 0) {
        kill (r->pid, SIGTERM);
        int status;
        int exited = 0;
        for (int i = 0; i < 250 && !exited; i++) {
            exited = waitpid (r->pid, &status, WNOHANG) == r->pid;
            if (!exited) {
                struct timespec pause = {0, 20 * 1000 * 1000};
                nanosleep (&pause, NULL);
            }
        }
        if (!exited) {
            kill (r->pid, SIGKILL);
            waitpid (r->pid, &status, 0);
        }
    }
    if (r->dir[0]) {
        unlink (r->sock);
        unlink (r->log);
        rmdir (r->dir);
    }
    free (r);
    return 0;
}

static redisReply *
s_redis_command_argv (s_redis_t *r, int argc, const char **argv, const size_t *argvlen)
{
    redisReply *reply = redisCommandArgv (r->redis, argc, argv, argvlen);
    if (!reply)
        fail_msg ("redis: %s", r->redis->errstr);
    return reply;
}

/*  Runs the script for one request, through the same call builder the
    gateway uses. Returns 1 allowed / 0 refused. */
static int
s_script_check (s_redis_t *r, const char *sha, const gw_rl_class_t *cls, const char *subject,
                int64_t *retry_after_ms)
{
    gw_rl_call_t call;
    gw_ratelimit_call (&call, sha, cls, subject);
    redisReply *reply = s_redis_command_argv (r, call.argc, call.argv, call.argvlen);
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_INTEGER)
        fail_msg ("script reply of type %d: %s", reply->type, reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    int decision = gw_ratelimit_reply (reply->element[0]->integer, reply->element[1]->integer, retry_after_ms);
    freeReplyObject (reply);
    assert_true (decision == 0 || decision == 1);
    return decision;
}

/*  Moves the script's view of time forward by `delta_ms`: every TAT the keys
    hold goes back by as much, which is the same for GCRA. */
static void
s_redis_advance (s_redis_t *r, const gw_rl_classes_t *classes, const char **subjects, size_t subject_count,
                 int64_t delta_ms)
{
    static const char shift[] = "for i = 1, #KEYS do\n"
                                "  local v = redis.call('GET', KEYS[i])\n"
                                "  if v then\n"
                                "    redis.call('SET', KEYS[i], string.format('%.0f', tonumber(v) - tonumber(ARGV[1])),"
                                " 'KEEPTTL')\n"
                                "  end\n"
                                "end\n"
                                "return 0\n";
    for (size_t c = 0; c < classes->count; c++)
        for (size_t s = 0; s < subject_count; s++)
            for (size_t i = 0; i < classes->classes[c].rule_count; i++) {
                char key[GW_RL_KEY_MAX];
                assert_int_equal (gw_ratelimit_key (&classes->classes[c], subjects[s], i, key, sizeof key), 0);
                redisReply *reply = redisCommand (r->redis, "EVAL %s 1 %s %lld", shift, key,
                                                  (long long) delta_ms * 1000);
                assert_non_null (reply);
                assert_int_equal (reply->type, REDIS_REPLY_INTEGER);
                freeReplyObject (reply);
            }
}

static char *
s_redis_get (s_redis_t *r, const char *key)
{
    redisReply *reply = redisCommand (r->redis, "GET %s", key);
    assert_non_null (reply);
    char *value = reply->type == REDIS_REPLY_STRING ? strdup (reply->str) : NULL;
    freeReplyObject (reply);
    return value;
}

static long long
s_redis_pttl (s_redis_t *r, const char *key)
{
    redisReply *reply = redisCommand (r->redis, "PTTL %s", key);
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_INTEGER);
    long long pttl = reply->integer;
    freeReplyObject (reply);
    return pttl;
}

static uint32_t
s_random (uint64_t *seed)
{
    *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t) (*seed >> 33);
}

/*  The script and the fallback, fed the same requests, decide the same.

    Redis takes its time from TIME, which runs on while the test talks to it,
    so the script sees every request a little later than the fallback does
    (d ms, growing). Time moves in 10-second steps and every interval is a
    multiple of 10 s, so every moment at which a decision changes is a whole
    number of steps away from a request: a drift under 10 s cannot flip one,
    and the script's retry delay is the fallback's minus at most the drift. */
static void
test_redis_script_matches_fallback (void **state)
{
    s_redis_t *r = *state;
    s_redis_start (r);

    redisReply *reply = redisCommand (r->redis, "SCRIPT LOAD %s", gw_ratelimit_script ());
    assert_non_null (reply);
    if (reply->type != REDIS_REPLY_STRING)
        fail_msg ("SCRIPT LOAD failed: %s", reply->type == REDIS_REPLY_ERROR ? reply->str : "?");
    char sha[48];
    snprintf (sha, sizeof sha, "%s", reply->str);
    assert_int_equal (strlen (sha), 40);
    freeReplyObject (reply);

    gw_rl_classes_t classes;
    assert_int_equal (gw_ratelimit_parse ("otp_phone=1/60,5/3600;ip=3/30", &classes, NULL, 0), 0);
    const char *subjects[] = {"+79990000001", "198.51.100.7", "x}{ \xff"};
    const size_t subject_count = sizeof subjects / sizeof subjects[0];
    gw_fallback_t *fb = gw_fallback_new (64);
    assert_non_null (fb);

    int64_t now_ms = 1700000000000LL;
    uint64_t seed = 20240901;
    int allowed_count = 0, refused_count = 0;
    for (int step = 0; step < 400; step++) {
        if (s_random (&seed) % 2) {
            int64_t delta_ms = (int64_t) (1 + s_random (&seed) % 40) * 10 * S_SEC;
            now_ms += delta_ms;
            s_redis_advance (r, &classes, subjects, subject_count, delta_ms);
        }
        const gw_rl_class_t *cls = &classes.classes[s_random (&seed) % classes.count];
        const char *subject = subjects[s_random (&seed) % subject_count];

        int64_t fb_retry, script_retry;
        int fb_allowed = gw_fallback_check (fb, cls, subject, now_ms, &fb_retry);
        int script_allowed = s_script_check (r, step % 50 == 7 ? NULL : sha, cls, subject, &script_retry);
        if (fb_allowed != script_allowed)
            fail_msg ("step %d, %s for %s: fallback %s, script %s", step, cls->name, subject,
                      fb_allowed ? "allowed" : "refused", script_allowed ? "allowed" : "refused");
        if (fb_allowed)
            allowed_count++;
        else {
            refused_count++;
            if (script_retry > fb_retry || script_retry <= fb_retry - 10 * S_SEC)
                fail_msg ("step %d: script retry %lld ms, fallback %lld ms", step, (long long) script_retry,
                          (long long) fb_retry);
        }
    }
    //  Both outcomes were exercised many times.
    assert_true (allowed_count >= 50);
    assert_true (refused_count >= 50);

    //  Keys expire when their TAT is reached, so nothing lingers; a refusal
    //  writes nothing.
    const gw_rl_class_t *otp = gw_ratelimit_class (&classes, "otp_phone");
    char key0[GW_RL_KEY_MAX], key1[GW_RL_KEY_MAX];
    assert_int_equal (gw_ratelimit_key (otp, "+79990000009", 0, key0, sizeof key0), 0);
    assert_int_equal (gw_ratelimit_key (otp, "+79990000009", 1, key1, sizeof key1), 0);
    int64_t retry;
    assert_int_equal (s_script_check (r, sha, otp, "+79990000009", &retry), 1);
    long long pttl0 = s_redis_pttl (r, key0), pttl1 = s_redis_pttl (r, key1);
    assert_true (pttl0 > 50 * S_SEC && pttl0 <= 60 * S_SEC);
    assert_true (pttl1 > 710 * S_SEC && pttl1 <= 720 * S_SEC);
    char *before0 = s_redis_get (r, key0), *before1 = s_redis_get (r, key1);
    assert_non_null (before0);
    assert_non_null (before1);
    for (int i = 0; i < 20; i++) {
        assert_int_equal (s_script_check (r, sha, otp, "+79990000009", &retry), 0);
        assert_true (retry > 50 * S_SEC && retry <= 60 * S_SEC);
    }
    char *after0 = s_redis_get (r, key0), *after1 = s_redis_get (r, key1);
    assert_string_equal (before0, after0);
    assert_string_equal (before1, after1);
    free (before0);
    free (before1);
    free (after0);
    free (after1);

    //  A TAT a day ahead (Redis's clock stepped back) costs one interval of
    //  waiting, not a day, and is repaired by the refusal.
    reply = redisCommand (r->redis, "TIME");
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_ARRAY);
    long long redis_now_us = atoll (reply->element[0]->str) * 1000000 + atoll (reply->element[1]->str);
    freeReplyObject (reply);
    const gw_rl_class_t *ip = gw_ratelimit_class (&classes, "ip");
    char ip_key[GW_RL_KEY_MAX];
    assert_int_equal (gw_ratelimit_key (ip, "203.0.113.1", 0, ip_key, sizeof ip_key), 0);
    reply = redisCommand (r->redis, "SET %s %lld PX 86400000", ip_key, redis_now_us + 86400LL * 1000000);
    freeReplyObject (reply);
    assert_int_equal (s_script_check (r, sha, ip, "203.0.113.1", &retry), 0);
    assert_true (retry > 9 * S_SEC && retry <= 10 * S_SEC);
    char *repaired = s_redis_get (r, ip_key);
    assert_non_null (repaired);
    assert_true (atoll (repaired) <= redis_now_us + 40LL * 1000000);
    free (repaired);
    assert_true (s_redis_pttl (r, ip_key) <= 30 * S_SEC);

    //  A malformed call is an error reply, never a silent "allowed".
    reply = redisCommand (r->redis, "EVALSHA %s 1 %s 60000000", sha, key0);
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_ERROR);
    freeReplyObject (reply);
    reply = redisCommand (r->redis, "EVALSHA %s 1 %s 60000000 0", sha, key0);
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_ERROR);
    freeReplyObject (reply);
    reply = redisCommand (r->redis, "EVALSHA %s 1 %s abc 1", sha, key0);
    assert_non_null (reply);
    assert_int_equal (reply->type, REDIS_REPLY_ERROR);
    freeReplyObject (reply);
    //  A damaged value reads as no state.
    reply = redisCommand (r->redis, "SET %s garbage", key0);
    freeReplyObject (reply);
    reply = redisCommand (r->redis, "SET %s garbage", key1);
    freeReplyObject (reply);
    assert_int_equal (s_script_check (r, sha, otp, "+79990000009", &retry), 1);

    gw_fallback_destroy (&fb);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_gcra_otp_phone),
        cmocka_unit_test (test_gcra_burst),
        cmocka_unit_test (test_refused_spends_nothing),
        cmocka_unit_test (test_clock_step_back),
        cmocka_unit_test (test_retry_after_seconds),
        cmocka_unit_test (test_table_bound_and_eviction),
        cmocka_unit_test (test_table_large),
        cmocka_unit_test (test_parse_default_and_lookup),
        cmocka_unit_test (test_parse_rejections),
        cmocka_unit_test (test_keys),
        cmocka_unit_test (test_call_and_reply),
        cmocka_unit_test_setup_teardown (test_redis_script_matches_fallback, s_redis_setup, s_redis_teardown),
    };
    return cmocka_run_group_tests_name ("ratelimit", tests, NULL, NULL);
}
