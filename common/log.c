/*  log: the process-wide logger (see log.h). */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char s_service[32] = "parta";
static log_level_t s_level = LOG_LEVEL_INFO;
static const char *s_names[] = {"debug", "info", "warn", "error"};

int
log_level_parse (const char *text, log_level_t *level)
{
    for (int i = 0; i < 4; i++)
        if (text && strcasecmp (text, s_names[i]) == 0) {
            *level = (log_level_t) i;
            return 0;
        }
    return -1;
}

void
log_init (const char *service, const char *level)
{
    snprintf (s_service, sizeof s_service, "%s", service ? service : "parta");
    log_level_t parsed;
    if (level && log_level_parse (level, &parsed) == 0)
        s_level = parsed;
}

int
log_enabled (log_level_t level)
{
    return level >= s_level;
}

void
log_msg (log_level_t level, const char *trace, const char *fmt, ...)
{
    if (!log_enabled (level))
        return;
    char line[2048];
    int n = snprintf (line, sizeof line, "%s %s %s ", s_names[level], s_service,
                      trace && *trace ? trace : "-");
    va_list args;
    va_start (args, fmt);
    int m = vsnprintf (line + n, sizeof line - (size_t) n - 1, fmt, args);
    va_end (args);
    size_t len = (size_t) n + (m < 0 ? 0 : (size_t) m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    /*  Bad input may reach a message: keep a line one line. */
    for (size_t i = (size_t) n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    ssize_t rc = write (STDERR_FILENO, line, len);
    (void) rc;
}

int
log_limit_allow (log_limit_t *limit, unsigned long *suppressed_out)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    long long now = (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (limit->burst <= 0)
        limit->burst = 5;
    if (now - limit->window_start_ms >= 1000) {
        limit->window_start_ms = now;
        limit->in_window = 0;
    }
    if (limit->in_window >= limit->burst) {
        limit->suppressed++;
        return 0;
    }
    limit->in_window++;
    *suppressed_out = limit->suppressed;
    limit->suppressed = 0;
    return 1;
}
