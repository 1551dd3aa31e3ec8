/*  Unit tests of config: defaults, environment over defaults, flags over
    the environment, both flag forms, dashes for underscores, refusal of
    unknown flags and missing values, integer range checks, and the exit
    status a process gets from config_load_or_exit. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

static const config_opt_t s_extra[] = {
    {"max_upload_mb", "25", "largest upload"},
    {"sms_dir", NULL, "where texts are written"},
    {NULL, NULL, NULL}};

static void
s_clear_env (void)
{
    char env[128];
    for (int pass = 0; pass < 2; pass++) {
        const config_opt_t *opts = pass == 0 ? config_common_opts : s_extra;
        for (const config_opt_t *o = opts; o->name; o++) {
            snprintf (env, sizeof env, "PARTA_");
            size_t n = strlen (env);
            for (const char *p = o->name; *p; p++)
                env[n++] = (char) (*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
            env[n] = 0;
            unsetenv (env);
        }
    }
}

static int
s_setup (void **state)
{
    (void) state;
    s_clear_env ();
    return 0;
}

/*  config_new over a NULL-terminated argument list (argv[0] is "parta-test"). */
static config_t *
s_config (char *err, size_t errlen, const char *const *args)
{
    char *argv[32] = {"parta-test"};
    int argc = 1;
    for (; args[argc - 1] && argc < 31; argc++)
        argv[argc] = (char *) args[argc - 1];
    err[0] = 0;
    return config_new ("test", s_extra, argc, argv, err, errlen);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_ARGS ((const char *const[]){NULL})

static void
test_defaults (void **state)
{
    (void) state;
    char err[256];
    config_t *cfg = s_config (err, sizeof err, NO_ARGS);
    assert_non_null (cfg);
    assert_string_equal (config_process (cfg), "test");
    assert_string_equal (config_str (cfg, "bus"), "tcp://127.0.0.1:7600");
    assert_string_equal (config_str (cfg, "events_in"), "tcp://127.0.0.1:7601");
    assert_string_equal (config_str (cfg, "log"), "info");
    assert_string_equal (config_str (cfg, "sync"), "normal");
    assert_null (config_str (cfg, "curve"));
    /*  extra options of the process */
    assert_string_equal (config_str (cfg, "max_upload_mb"), "25");
    assert_null (config_str (cfg, "sms_dir"));
    /*  options nobody declared do not exist */
    assert_null (config_str (cfg, "nonexistent"));
    config_destroy (&cfg);
    assert_null (cfg);
    config_destroy (&cfg);      /* safe twice */

    /*  without extra options */
    cfg = config_new ("broker", NULL, 0, NULL, err, sizeof err);
    assert_non_null (cfg);
    assert_string_equal (config_str (cfg, "heartbeat_ms"), "1000");
    assert_null (config_str (cfg, "max_upload_mb"));
    config_destroy (&cfg);
}

static void
test_env_overrides_default (void **state)
{
    (void) state;
    setenv ("PARTA_EVENTS_IN", "ipc://events-in", 1);
    setenv ("PARTA_MAX_UPLOAD_MB", "100", 1);
    setenv ("PARTA_SMS_DIR", "texts", 1);
    char err[256];
    config_t *cfg = s_config (err, sizeof err, NO_ARGS);
    assert_non_null (cfg);
    assert_string_equal (config_str (cfg, "events_in"), "ipc://events-in");
    assert_string_equal (config_str (cfg, "max_upload_mb"), "100");
    assert_string_equal (config_str (cfg, "sms_dir"), "texts");
    assert_string_equal (config_str (cfg, "bus"), "tcp://127.0.0.1:7600");
    config_destroy (&cfg);

    /*  an empty variable counts as unset */
    setenv ("PARTA_EVENTS_IN", "", 1);
    cfg = s_config (err, sizeof err, NO_ARGS);
    assert_non_null (cfg);
    assert_string_equal (config_str (cfg, "events_in"), "tcp://127.0.0.1:7601");
    config_destroy (&cfg);
    s_clear_env ();
}

static void
test_flags_override_env (void **state)
{
    (void) state;
    setenv ("PARTA_BUS", "tcp://from-env:1", 1);
    setenv ("PARTA_LOG", "warn", 1);
    char err[256];
    config_t *cfg = s_config (err, sizeof err, ARGS ("--bus=tcp://from-flag:2", "--log", "debug"));
    assert_non_null (cfg);
    assert_string_equal (config_str (cfg, "bus"), "tcp://from-flag:2");
    assert_string_equal (config_str (cfg, "log"), "debug");
    config_destroy (&cfg);

    /*  the environment still applies to what no flag names */
    cfg = s_config (err, sizeof err, ARGS ("--bus", "tcp://from-flag:3"));
    assert_non_null (cfg);
    assert_string_equal (config_str (cfg, "bus"), "tcp://from-flag:3");
    assert_string_equal (config_str (cfg, "log"), "warn");
    config_destroy (&cfg);
    s_clear_env ();
}

static void
test_flag_forms (void **state)
{
    (void) state;
    char err[256];
    /*  --name=value keeps everything after the first '=' */
    config_t *cfg = s_config (err, sizeof err,
                              ARGS ("--redis=redis://h:6379/?a=b", "--data", "-x", "--http=",
                                    "--curve=--keys"));
    assert_non_null (cfg);
    assert_string_equal (config_str (cfg, "redis"), "redis://h:6379/?a=b");
    /*  the separate form takes the next argument, even one with a dash */
    assert_string_equal (config_str (cfg, "data"), "-x");
    /*  a value that starts with "--" needs the '=' form */
    assert_string_equal (config_str (cfg, "curve"), "--keys");
    /*  an explicitly empty value is a value */
    assert_string_equal (config_str (cfg, "http"), "");
    config_destroy (&cfg);

    /*  the last of repeated flags wins */
    cfg = s_config (err, sizeof err, ARGS ("--log=debug", "--log=error"));
    assert_non_null (cfg);
    assert_string_equal (config_str (cfg, "log"), "error");
    config_destroy (&cfg);
}

static void
test_dashes_match_underscores (void **state)
{
    (void) state;
    char err[256];
    config_t *cfg = s_config (err, sizeof err,
                              ARGS ("--events-in=ipc://in", "--events-out", "ipc://out",
                                    "--max-upload-mb=7", "--heartbeat-ms", "250"));
    assert_non_null (cfg);
    assert_string_equal (config_str (cfg, "events_in"), "ipc://in");
    assert_string_equal (config_str (cfg, "events_out"), "ipc://out");
    assert_string_equal (config_str (cfg, "max_upload_mb"), "7");
    assert_string_equal (config_str (cfg, "heartbeat_ms"), "250");
    config_destroy (&cfg);

    /*  a prefix of a name is not the name */
    cfg = s_config (err, sizeof err, ARGS ("--events=ipc://in"));
    assert_null (cfg);
    assert_non_null (strstr (err, "--events=ipc://in"));
}

static void
test_unknown_flag_refused (void **state)
{
    (void) state;
    char err[256];
    config_t *cfg = s_config (err, sizeof err, ARGS ("--bus=tcp://a:1", "--colour=blue"));
    assert_null (cfg);
    assert_non_null (strstr (err, "unknown flag"));
    assert_non_null (strstr (err, "--colour=blue"));

    cfg = s_config (err, sizeof err, ARGS ("--colour", "blue"));
    assert_null (cfg);
    assert_non_null (strstr (err, "--colour"));

    /*  a positional argument or a single-dash flag is refused too */
    cfg = s_config (err, sizeof err, ARGS ("extra"));
    assert_null (cfg);
    assert_non_null (strstr (err, "extra"));
    cfg = s_config (err, sizeof err, ARGS ("-v"));
    assert_null (cfg);
    assert_non_null (strstr (err, "-v"));
    cfg = s_config (err, sizeof err, ARGS ("--"));
    assert_null (cfg);
    assert_true (err[0] != 0);

    /*  the message is cut to the buffer, never overruns it */
    char small[12];
    memset (small, 'x', sizeof small);
    cfg = s_config (small, sizeof small, ARGS ("--a-very-long-unknown-flag-name"));
    assert_null (cfg);
    assert_int_equal (strlen (small), sizeof small - 1);
}

static void
test_missing_value_refused (void **state)
{
    (void) state;
    char err[256];
    config_t *cfg = s_config (err, sizeof err, ARGS ("--log=debug", "--bus"));
    assert_null (cfg);
    assert_non_null (strstr (err, "--bus"));
    assert_non_null (strstr (err, "value"));

    /*  a forgotten value is not filled with the next flag */
    cfg = s_config (err, sizeof err, ARGS ("--data", "--log=debug"));
    assert_null (cfg);
    assert_non_null (strstr (err, "--data"));
    assert_non_null (strstr (err, "value"));
    cfg = s_config (err, sizeof err, ARGS ("--bus", "--log", "debug"));
    assert_null (cfg);
    assert_non_null (strstr (err, "--bus"));
    assert_non_null (strstr (err, "value"));
}

static void
test_help (void **state)
{
    (void) state;
    char err[256];
    assert_null (s_config (err, sizeof err, ARGS ("--help")));
    assert_string_equal (err, "help");
    assert_null (s_config (err, sizeof err, ARGS ("--log=debug", "-h")));
    assert_string_equal (err, "help");
}

static void
test_int_ranges (void **state)
{
    (void) state;
    char err[256];
    config_t *cfg = s_config (err, sizeof err,
                              ARGS ("--heartbeat-ms=250", "--liveness=-3", "--max-upload-mb=12x",
                                    "--worker-credit=99999999999999999999", "--http="));
    assert_non_null (cfg);
    int ok = -1;
    assert_int_equal (config_int (cfg, "heartbeat_ms", 1000, 1, 60000, &ok), 250);
    assert_int_equal (ok, 1);
    /*  the bounds are inclusive */
    assert_int_equal (config_int (cfg, "heartbeat_ms", 1000, 250, 250, &ok), 250);
    assert_int_equal (ok, 1);
    assert_int_equal (config_int (cfg, "heartbeat_ms", 1000, 251, 60000, &ok), -1);
    assert_int_equal (ok, 0);
    assert_int_equal (config_int (cfg, "heartbeat_ms", 1000, 1, 249, &ok), -1);
    assert_int_equal (ok, 0);
    /*  negative numbers */
    assert_int_equal (config_int (cfg, "liveness", 3, -10, 10, &ok), -3);
    assert_int_equal (ok, 1);
    assert_int_equal (config_int (cfg, "liveness", 3, 1, 10, &ok), -1);
    assert_int_equal (ok, 0);
    /*  not a number, trailing garbage, overflow */
    assert_int_equal (config_int (cfg, "max_upload_mb", 25, 1, 1000, &ok), -1);
    assert_int_equal (ok, 0);
    assert_int_equal (config_int (cfg, "worker_credit", 8, 0, 1LL << 62, &ok), -1);
    assert_int_equal (ok, 0);
    /*  unset or empty: the fallback, and ok */
    ok = -1;
    assert_int_equal (config_int (cfg, "sms_dir", 42, 1, 10, &ok), 42);
    assert_int_equal (ok, 1);
    assert_int_equal (config_int (cfg, "http", 7, 1, 10, &ok), 7);
    assert_int_equal (ok, 1);
    assert_int_equal (config_int (cfg, "nonexistent", 5, 1, 10, &ok), 5);
    assert_int_equal (ok, 1);
    /*  ok may be NULL */
    assert_int_equal (config_int (cfg, "heartbeat_ms", 1000, 1, 60000, NULL), 250);
    assert_int_equal (config_int (cfg, "max_upload_mb", 25, 1, 1000, NULL), -1);
    config_destroy (&cfg);

    /*  a default is range-checked like any value */
    cfg = s_config (err, sizeof err, NO_ARGS);
    assert_int_equal (config_int (cfg, "worker_credit", 1, 1, 100, &ok), 32);
    assert_int_equal (ok, 1);
    assert_int_equal (config_int (cfg, "worker_credit", 1, 33, 100, &ok), -1);
    assert_int_equal (ok, 0);
    config_destroy (&cfg);
}

static void
test_set (void **state)
{
    (void) state;
    char err[256];
    config_t *cfg = s_config (err, sizeof err, ARGS ("--data=from-flag"));
    assert_non_null (cfg);
    config_set (cfg, "data", "derived");
    assert_string_equal (config_str (cfg, "data"), "derived");
    config_set (cfg, "curve", "keys");
    assert_string_equal (config_str (cfg, "curve"), "keys");
    config_set (cfg, "curve", NULL);
    assert_null (config_str (cfg, "curve"));
    /*  an option nobody declared is not created */
    config_set (cfg, "nonexistent", "x");
    assert_null (config_str (cfg, "nonexistent"));
    config_destroy (&cfg);
}

/*  Runs config_load_or_exit in a child with stdout and stderr captured;
    returns the exit status and fills `out` with what it wrote. */
static int
s_load_in_child (char *const *argv, int argc, char *out, size_t outlen)
{
    int fds[2];
    assert_int_equal (pipe (fds), 0);
    fflush (NULL);
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        close (fds[0]);
        dup2 (fds[1], 1);
        dup2 (fds[1], 2);
        close (fds[1]);
        config_t *cfg = config_load_or_exit ("test", s_extra, argc, (char **) argv);
        config_destroy (&cfg);
        fflush (NULL);
        _exit (100);
    }
    close (fds[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read (fds[0], out + n, outlen - 1 - n)) > 0 && n + 1 < outlen)
        n += (size_t) r;
    out[n] = 0;
    close (fds[0]);
    int status = 0;
    assert_int_equal (waitpid (pid, &status, 0), pid);
    assert_true (WIFEXITED (status));
    return WEXITSTATUS (status);
}

static void
test_load_or_exit (void **state)
{
    (void) state;
    char out[8192];
    char *bad[] = {"parta-test", "--colour=blue", NULL};
    assert_int_equal (s_load_in_child (bad, 2, out, sizeof out), 2);
    assert_non_null (strstr (out, "unknown flag"));
    assert_non_null (strstr (out, "--colour=blue"));

    char *missing[] = {"parta-test", "--bus", NULL};
    assert_int_equal (s_load_in_child (missing, 2, out, sizeof out), 2);
    assert_non_null (strstr (out, "--bus"));

    /*  --help prints every option with its variable, and succeeds */
    char *help[] = {"parta-test", "--help", NULL};
    assert_int_equal (s_load_in_child (help, 2, out, sizeof out), 0);
    assert_non_null (strstr (out, "PARTA_EVENTS_IN"));
    assert_non_null (strstr (out, "PARTA_MAX_UPLOAD_MB"));

    /*  a good configuration returns to the caller and is logged */
    char *good[] = {"parta-test", "--log=info", "--data=somewhere", NULL};
    assert_int_equal (s_load_in_child (good, 3, out, sizeof out), 100);
    assert_non_null (strstr (out, "data=somewhere"));
    assert_non_null (strstr (out, "source=flag"));
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup (test_defaults, s_setup),
        cmocka_unit_test_setup (test_env_overrides_default, s_setup),
        cmocka_unit_test_setup (test_flags_override_env, s_setup),
        cmocka_unit_test_setup (test_flag_forms, s_setup),
        cmocka_unit_test_setup (test_dashes_match_underscores, s_setup),
        cmocka_unit_test_setup (test_unknown_flag_refused, s_setup),
        cmocka_unit_test_setup (test_missing_value_refused, s_setup),
        cmocka_unit_test_setup (test_help, s_setup),
        cmocka_unit_test_setup (test_int_ranges, s_setup),
        cmocka_unit_test_setup (test_set, s_setup),
        cmocka_unit_test_setup (test_load_or_exit, s_setup),
    };
    return cmocka_run_group_tests_name ("config", tests, NULL, NULL);
}
