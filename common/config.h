/*  config: settings from environment variables, overridable by flags
    (DESIGN §7). An option named "events_in" is read from PARTA_EVENTS_IN and
    from --events-in=VALUE (or --events-in VALUE); flags win. Every process
    declares the options it reads, so unknown flags are refused and the
    effective configuration can be logged at start. */
#ifndef PARTA_CONFIG_H
#define PARTA_CONFIG_H

#include <stddef.h>

typedef struct {
    const char *name;       /* "events_in" */
    const char *defval;     /* may be NULL: unset */
    const char *help;
} config_opt_t;

typedef struct config_t config_t;

/*  Options every process understands (bus, events, data, log...). */
extern const config_opt_t config_common_opts[];

/*  Builds the configuration of `process` from the common options plus
    `extra` (terminated by a row with name NULL, may be NULL). Returns NULL
    and writes a message to `err` (size errlen) on an unknown flag or a
    missing flag value; "--help" yields NULL with err "help". */
config_t *config_new (const char *process, const config_opt_t *extra, int argc,
                      char **argv, char *err, size_t errlen);
void config_destroy (config_t **self_p);

/*  Values are borrowed; NULL when unset. */
const char *config_str (const config_t *self, const char *name);
/*  Integer value, or `fallback` when unset. Returns -1 with *ok = 0 when set
    but not an integer in [min, max]. */
long long config_int (const config_t *self, const char *name, long long fallback,
                      long long min, long long max, int *ok);
/*  Sets a value (tests, derived defaults). */
void config_set (config_t *self, const char *name, const char *value);
const char *config_process (const config_t *self);

/*  Logs "configuration key=value ..." (one line per option). */
void config_log (const config_t *self);
/*  Prints usage to stdout. */
void config_usage (const config_t *self);

/*  Standard start of every process: builds the configuration, initialises
    the logger from PARTA_LOG, logs the configuration. Exits the process
    with status 2 (usage error) or 0 (--help). */
config_t *config_load_or_exit (const char *process, const config_opt_t *extra,
                               int argc, char **argv);

#endif
