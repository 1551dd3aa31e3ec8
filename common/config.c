/*  config: environment + flags (see config.h). */
#include "config.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const config_opt_t config_common_opts[] = {
    {"bus", "tcp://127.0.0.1:7600", "broker request endpoint (ROUTER)"},
    {"events_in", "tcp://127.0.0.1:7601", "broker event input (XSUB), where publishers connect"},
    {"events_out", "tcp://127.0.0.1:7602", "broker event output (XPUB), where subscribers connect"},
    {"data", "var", "data directory (databases, blobs, sms outbox)"},
    {"redis", "var/redis.sock", "Redis: unix socket path or redis://host:port"},
    {"http", "127.0.0.1:8080", "gateway listen address host:port"},
    {"curve", NULL, "CURVE keys directory; unset means the bus is not encrypted"},
    {"curve_cert", NULL, "this process's secret CURVE certificate (default: CURVE/client.cert_secret)"},
    {"log", "info", "log level: debug, info, warn, error"},
    {"heartbeat_ms", "1000", "bus heartbeat interval in milliseconds"},
    {"liveness", "3", "missed heartbeats before a peer is declared dead"},
    {"sync", "normal", "sqlite synchronous mode: normal or full"},
    {"worker_credit", "32", "requests a worker accepts at once from the broker"},
    {"outbox_keep_days", "30",
     "days a published event stays in its service's outbox for consumers that were away (0: forever)"},
    {NULL, NULL, NULL}};

#define MAX_OPTS 64

struct config_t {
    char *process;
    const config_opt_t *opts[MAX_OPTS];
    char *values[MAX_OPTS];
    char source[MAX_OPTS];      /* 'd' default, 'e' env, 'f' flag, 's' set */
    int count;
};

static int
s_find (const config_t *self, const char *name)
{
    for (int i = 0; i < self->count; i++)
        if (strcmp (self->opts[i]->name, name) == 0)
            return i;
    return -1;
}

static void
s_add (config_t *self, const config_opt_t *opt)
{
    if (s_find (self, opt->name) >= 0 || self->count >= MAX_OPTS)
        return;
    self->opts[self->count] = opt;
    self->values[self->count] = opt->defval ? strdup (opt->defval) : NULL;
    self->source[self->count] = 'd';
    self->count++;
}

/*  "events_in" -> "PARTA_EVENTS_IN" */
static void
s_env_name (const char *name, char *out, size_t len)
{
    size_t n = (size_t) snprintf (out, len, "PARTA_");
    for (const char *p = name; *p && n + 1 < len; p++)
        out[n++] = (char) toupper ((unsigned char) *p);
    out[n] = 0;
}

/*  "--events-in" matches "events_in" */
static int
s_flag_matches (const char *flag, size_t flag_len, const char *name)
{
    if (strlen (name) != flag_len)
        return 0;
    for (size_t i = 0; i < flag_len; i++) {
        char f = flag[i] == '-' ? '_' : flag[i];
        if (f != name[i])
            return 0;
    }
    return 1;
}

void
config_set (config_t *self, const char *name, const char *value)
{
    int i = s_find (self, name);
    if (i < 0)
        return;
    free (self->values[i]);
    self->values[i] = value ? strdup (value) : NULL;
    self->source[i] = 's';
}

config_t *
config_new (const char *process, const config_opt_t *extra, int argc, char **argv,
            char *err, size_t errlen)
{
    config_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->process = strdup (process);
    for (const config_opt_t *o = config_common_opts; o->name; o++)
        s_add (self, o);
    for (const config_opt_t *o = extra; o && o->name; o++)
        s_add (self, o);

    for (int i = 0; i < self->count; i++) {
        char env[96];
        s_env_name (self->opts[i]->name, env, sizeof env);
        const char *v = getenv (env);
        if (v && *v) {
            free (self->values[i]);
            self->values[i] = strdup (v);
            self->source[i] = 'e';
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0) {
            snprintf (err, errlen, "help");
            config_destroy (&self);
            return NULL;
        }
        if (strncmp (arg, "--", 2) != 0) {
            snprintf (err, errlen, "unexpected argument '%s'", arg);
            config_destroy (&self);
            return NULL;
        }
        const char *flag = arg + 2;
        const char *eq = strchr (flag, '=');
        size_t flag_len = eq ? (size_t) (eq - flag) : strlen (flag);
        int idx = -1;
        for (int i = 0; i < self->count; i++)
            if (s_flag_matches (flag, flag_len, self->opts[i]->name))
                idx = i;
        if (idx < 0) {
            snprintf (err, errlen, "unknown flag '%s'", arg);
            config_destroy (&self);
            return NULL;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            /*  "--data --log=debug" is a forgotten value, not data="--log=debug";
                a value that starts with "--" can still be given as --data=--x. */
            if (a + 1 >= argc || strncmp (argv[a + 1], "--", 2) == 0) {
                snprintf (err, errlen, "flag '%s' needs a value", arg);
                config_destroy (&self);
                return NULL;
            }
            value = argv[++a];
        }
        free (self->values[idx]);
        self->values[idx] = strdup (value);
        self->source[idx] = 'f';
    }
    return self;
}

void
config_destroy (config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    config_t *self = *self_p;
    for (int i = 0; i < self->count; i++)
        free (self->values[i]);
    free (self->process);
    free (self);
    *self_p = NULL;
}

const char *
config_str (const config_t *self, const char *name)
{
    int i = s_find (self, name);
    return i < 0 ? NULL : self->values[i];
}

const char *
config_process (const config_t *self)
{
    return self->process;
}

long long
config_int (const config_t *self, const char *name, long long fallback, long long min,
            long long max, int *ok)
{
    if (ok)
        *ok = 1;
    const char *v = config_str (self, name);
    if (!v || !*v)
        return fallback;
    char *end;
    errno = 0;
    long long n = strtoll (v, &end, 10);
    if (errno || *end || end == v || n < min || n > max) {
        if (ok)
            *ok = 0;
        return -1;
    }
    return n;
}

void
config_log (const config_t *self)
{
    for (int i = 0; i < self->count; i++) {
        const char *v = self->values[i];
        const char *src = self->source[i] == 'f'   ? "flag"
                          : self->source[i] == 'e' ? "env"
                          : self->source[i] == 's' ? "derived"
                                                   : "default";
        log_info (NULL, "configuration %s=%s source=%s", self->opts[i]->name,
                  v ? v : "(unset)", src);
    }
}

void
config_usage (const config_t *self)
{
    printf ("usage: parta-%s [--option=value ...]\n\n", self->process);
    for (int i = 0; i < self->count; i++) {
        char env[96];
        s_env_name (self->opts[i]->name, env, sizeof env);
        printf ("  --%-16s %-22s %s (default: %s)\n", self->opts[i]->name, env,
                self->opts[i]->help, self->opts[i]->defval ? self->opts[i]->defval : "unset");
    }
}

config_t *
config_load_or_exit (const char *process, const config_opt_t *extra, int argc, char **argv)
{
    char err[256] = "";
    config_t *cfg = config_new (process, extra, argc, argv, err, sizeof err);
    if (!cfg) {
        if (strcmp (err, "help") == 0) {
            config_t *plain = config_new (process, extra, 0, NULL, err, sizeof err);
            if (plain)
                config_usage (plain);
            config_destroy (&plain);
            exit (0);
        }
        fprintf (stderr, "parta-%s: %s (try --help)\n", process, err);
        exit (2);
    }
    log_init (process, config_str (cfg, "log"));
    log_level_t level;
    if (log_level_parse (config_str (cfg, "log"), &level) != 0) {
        fprintf (stderr, "parta-%s: log level must be debug, info, warn or error\n", process);
        exit (2);
    }
    config_log (cfg);
    return cfg;
}
