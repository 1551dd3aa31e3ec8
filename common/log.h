/*  log: one line per event on stderr, "level service trace_id message key=value".
    The service name and level are process-wide, set once at start. Lines are
    written with a single write(2), so threads do not interleave them. */
#ifndef PARTA_LOG_H
#define PARTA_LOG_H

#include <stdarg.h>

typedef enum { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level_t;

void log_init (const char *service, const char *level);
int log_level_parse (const char *text, log_level_t *level);
int log_enabled (log_level_t level);

/*  `trace` may be NULL ("-"). `fmt` is the message, usually a fixed phrase
    followed by key=value pairs. */
void log_msg (log_level_t level, const char *trace, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#define log_debug(trace, ...) \
    do { if (log_enabled (LOG_LEVEL_DEBUG)) log_msg (LOG_LEVEL_DEBUG, trace, __VA_ARGS__); } while (0)
#define log_info(trace, ...) log_msg (LOG_LEVEL_INFO, trace, __VA_ARGS__)
#define log_warn(trace, ...) log_msg (LOG_LEVEL_WARN, trace, __VA_ARGS__)
#define log_error(trace, ...) log_msg (LOG_LEVEL_ERROR, trace, __VA_ARGS__)

/*  A limiter for lines that bad input can cause at any rate: allows `burst`
    lines per second and counts the rest, which the next allowed line reports
    as suppressed=N. Not thread-safe: one per thread or per component. */
typedef struct {
    long long window_start_ms;
    int in_window;
    int burst;
    unsigned long suppressed;
} log_limit_t;

/*  Returns 1 if a line may be written now; *suppressed_out gets how many were
    dropped since the last allowed line. */
int log_limit_allow (log_limit_t *limit, unsigned long *suppressed_out);

#endif
