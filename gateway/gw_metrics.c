/*  gw_metrics: see gw_metrics.h. Labels are the route table's patterns and
    bus method names, a bounded set, so the series cannot grow without end. */
#include "gw_metrics.h"

#include <czmq.h>
#include <string.h>

#define N_BUCKETS 10
static const double s_bounds[N_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                           0.025,  0.05,  0.1,    0.5,   1.0};
#define MAX_CODES 16

typedef struct {
    uint64_t count;
    uint64_t errors;
    double sum;
    uint64_t buckets[N_BUCKETS];
    int codes[MAX_CODES];
    uint64_t code_counts[MAX_CODES];
    int n_codes;
} series_t;

struct gw_metrics_t {
    zhashx_t *http;             /* route -> series_t */
    zhashx_t *bus;              /* method -> series_t */
    zhashx_t *limited;          /* class -> uint64_t* */
    zhashx_t *workers;          /* service -> int* */
    int64_t ws;
    int redis_up;
};

static void
s_free (void **item)
{
    free (*item);
    *item = NULL;
}

static zhashx_t *
s_map (void)
{
    zhashx_t *m = zhashx_new ();
    zhashx_set_destructor (m, s_free);
    return m;
}

gw_metrics_t *
gw_metrics_new (void)
{
    gw_metrics_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->http = s_map ();
    self->bus = s_map ();
    self->limited = s_map ();
    self->workers = s_map ();
    return self;
}

void
gw_metrics_destroy (gw_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gw_metrics_t *self = *self_p;
    zhashx_destroy (&self->http);
    zhashx_destroy (&self->bus);
    zhashx_destroy (&self->limited);
    zhashx_destroy (&self->workers);
    free (self);
    *self_p = NULL;
}

static series_t *
s_series (zhashx_t *map, const char *key)
{
    series_t *s = zhashx_lookup (map, key);
    if (!s) {
        s = calloc (1, sizeof *s);
        if (!s)
            return NULL;
        zhashx_insert (map, key, s);
    }
    return s;
}

static void
s_observe (series_t *s, int code, int error, int64_t us)
{
    if (!s)
        return;
    double secs = (double) us / 1e6;
    s->count++;
    s->sum += secs;
    if (error)
        s->errors++;
    for (int i = 0; i < N_BUCKETS; i++)
        if (secs <= s_bounds[i])
            s->buckets[i]++;
    for (int i = 0; i < s->n_codes; i++)
        if (s->codes[i] == code) {
            s->code_counts[i]++;
            return;
        }
    if (s->n_codes < MAX_CODES) {
        s->codes[s->n_codes] = code;
        s->code_counts[s->n_codes++] = 1;
    }
}

void
gw_metrics_http (gw_metrics_t *self, const char *route, int status, int64_t us)
{
    s_observe (s_series (self->http, route), status, status >= 500, us);
}

void
gw_metrics_bus (gw_metrics_t *self, const char *method, status_t status, int64_t us)
{
    s_observe (s_series (self->bus, method), (int) status,
               status == ST_UNAVAILABLE || status == ST_INTERNAL, us);
}

void
gw_metrics_limited (gw_metrics_t *self, const char *cls)
{
    uint64_t *n = zhashx_lookup (self->limited, cls);
    if (!n) {
        n = calloc (1, sizeof *n);
        if (!n)
            return;
        zhashx_insert (self->limited, cls, n);
    }
    (*n)++;
}

void
gw_metrics_ws (gw_metrics_t *self, int delta)
{
    self->ws += delta;
}

void
gw_metrics_workers (gw_metrics_t *self, const char *service, int workers)
{
    int *n = zhashx_lookup (self->workers, service);
    if (!n) {
        n = calloc (1, sizeof *n);
        if (!n)
            return;
        zhashx_insert (self->workers, service, n);
    }
    *n = workers;
}

void
gw_metrics_redis (gw_metrics_t *self, int up)
{
    self->redis_up = up;
}

/* --- rendering --- */

typedef struct {
    char *buf;
    size_t len, cap;
} out_t;

static void __attribute__ ((format (printf, 2, 3)))
s_put (out_t *o, const char *fmt, ...)
{
    va_list args;
    for (;;) {
        va_start (args, fmt);
        int n = vsnprintf (o->buf + o->len, o->cap - o->len, fmt, args);
        va_end (args);
        if (n < 0)
            return;
        if (o->len + (size_t) n < o->cap) {
            o->len += (size_t) n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t) n;
        char *buf = realloc (o->buf, cap);
        if (!buf)
            return;
        o->buf = buf;
        o->cap = cap;
    }
}

/*  Label values come from our own tables, but escape anyway. */
static const char *
s_label (const char *text, char *out, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; text[i] && j + 2 < len; i++) {
        if (text[i] == '"' || text[i] == '\\')
            out[j++] = '\\';
        out[j++] = text[i] == '\n' ? ' ' : text[i];
    }
    out[j] = 0;
    return out;
}

static void
s_render_series (out_t *o, zhashx_t *map, const char *name, const char *label,
                 const char *code_label, const char *help)
{
    char l[256];
    s_put (o, "# HELP %s_total %s\n# TYPE %s_total counter\n", name, help, name);
    for (series_t *s = zhashx_first (map); s; s = zhashx_next (map)) {
        s_label (zhashx_cursor (map), l, sizeof l);
        for (int i = 0; i < s->n_codes; i++)
            s_put (o, "%s_total{%s=\"%s\",%s=\"%d\"} %llu\n", name, label, l, code_label,
                   s->codes[i], (unsigned long long) s->code_counts[i]);
    }
    s_put (o, "# HELP %s_errors_total Failures (5xx / unavailable or internal).\n"
              "# TYPE %s_errors_total counter\n", name, name);
    for (series_t *s = zhashx_first (map); s; s = zhashx_next (map))
        s_put (o, "%s_errors_total{%s=\"%s\"} %llu\n", name, label,
               s_label (zhashx_cursor (map), l, sizeof l), (unsigned long long) s->errors);
    s_put (o, "# HELP %s_duration_seconds Latency.\n# TYPE %s_duration_seconds histogram\n", name,
           name);
    for (series_t *s = zhashx_first (map); s; s = zhashx_next (map)) {
        s_label (zhashx_cursor (map), l, sizeof l);
        for (int i = 0; i < N_BUCKETS; i++)
            s_put (o, "%s_duration_seconds_bucket{%s=\"%s\",le=\"%g\"} %llu\n", name, label, l,
                   s_bounds[i], (unsigned long long) s->buckets[i]);
        s_put (o, "%s_duration_seconds_bucket{%s=\"%s\",le=\"+Inf\"} %llu\n", name, label, l,
               (unsigned long long) s->count);
        s_put (o, "%s_duration_seconds_sum{%s=\"%s\"} %.6f\n", name, label, l, s->sum);
        s_put (o, "%s_duration_seconds_count{%s=\"%s\"} %llu\n", name, label, l,
               (unsigned long long) s->count);
    }
}

char *
gw_metrics_render (gw_metrics_t *self, size_t *len)
{
    out_t o = {malloc (8192), 0, 8192};
    if (!o.buf)
        return NULL;
    o.buf[0] = 0;
    s_render_series (&o, self->http, "parta_http_requests", "route", "code",
                     "HTTP requests by route and status.");
    s_render_series (&o, self->bus, "parta_bus_calls", "method", "status",
                     "Bus calls made by the gateway, by method and bus status.");
    char l[128];
    s_put (&o, "# HELP parta_rate_limited_total Requests refused by a rate limit, by class.\n"
               "# TYPE parta_rate_limited_total counter\n");
    for (uint64_t *n = zhashx_first (self->limited); n; n = zhashx_next (self->limited))
        s_put (&o, "parta_rate_limited_total{class=\"%s\"} %llu\n",
               s_label (zhashx_cursor (self->limited), l, sizeof l), (unsigned long long) *n);
    s_put (&o, "# HELP parta_ws_connections Open WebSocket connections.\n"
               "# TYPE parta_ws_connections gauge\nparta_ws_connections %lld\n",
           (long long) self->ws);
    s_put (&o, "# HELP parta_workers Live workers per service, as the broker last reported.\n"
               "# TYPE parta_workers gauge\n");
    for (int *n = zhashx_first (self->workers); n; n = zhashx_next (self->workers))
        s_put (&o, "parta_workers{service=\"%s\"} %d\n",
               s_label (zhashx_cursor (self->workers), l, sizeof l), *n);
    s_put (&o, "# HELP parta_redis_up Whether the gateway's Redis connection is up.\n"
               "# TYPE parta_redis_up gauge\nparta_redis_up %d\n",
           self->redis_up);
    *len = o.len;
    return o.buf;
}
