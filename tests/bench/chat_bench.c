/*  chat_bench: group chats under load, end to end. A college is seeded
    through the public HTTP API (30 groups of 30 students, each group with
    a curator); every student holds a WebSocket to the gateway; students
    post to their group chat over HTTP keep-alive at fixed rates, and every
    socket times each message from its send time (stamped in the text) to
    its arrival. Also the gateway's memory per idle WebSocket (5,000 of
    them), what those idle sockets cost it while others are busy, and the
    same fan-out through a bare Redis PUBLISH/SUBSCRIBE as the floor.
    scripts/bench.sh starts the stack (scripts/run.sh) and that Redis, then
    runs this (`make bench`). Figures only: nothing here is pass or fail
    but lost, duplicated or misrouted messages. */
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include <arpa/inet.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sodium.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GROUPS 30
#define MEMBERS 30              /* students of a group, each with a socket */
#define IDLE_SOCKETS 5000
#define CONNECTS_IN_FLIGHT 200  /* WebSocket handshakes under way at once */
#define SEED_PARALLEL 16        /* HTTP requests in flight while seeding */
#define POST_POOL 128           /* keep-alive connections the poster may open */
#define WINDOW 128              /* posts in flight in the closed-loop step */
#define MAX_POSTS (1u << 21)
#define MAX_SAMPLES (16u << 20)
#define BUCKETS 1200            /* deliveries per 100 ms, for the rate in the window */
#define DRAIN_MS 10000          /* how long a step waits for its last deliveries */
#define SYNC_TIMEOUT_MS 120000  /* for the chat service to follow the roster */
#define SETTLE_QUIET_MS 1000    /* no frame for this long: the sockets are idle */
#define SETTLE_MAX_MS 30000

_Static_assert (MEMBERS <= 32, "a post's deliveries are kept as a 32-bit mask");

static volatile sig_atomic_t s_interrupted;

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double
s_secs_since (int64_t t)
{
    return (double) (s_now_ns () - t) / 1e9;
}

/* --- the college --- */

typedef struct {
    char phone[16];
    char name[64];
    char id[64];
    char token[160];
    int group, member;          /* member -1: the group's curator */
    struct curl_slist *headers; /* for posting: Authorization, Content-Type */
} user_t;

static struct {
    char url[256];              /* http://127.0.0.1:PORT */
    char ws_host[64];
    int ws_port;
    char data[512];             /* the stack's data directory */
    const char *limits;         /* PARTA_RATE_LIMITS the stack runs with */
    char redis_host[64];
    int redis_port;
    pid_t redis_pid;            /* the floor's redis-server */
    double seconds;             /* per measured step */
    int idle;                   /* idle sockets wanted */
    user_t op, admin, curators[GROUPS], students[GROUPS][MEMBERS];
    char org_id[64];
    char unit_ids[GROUPS][64];
    char chat_ids[GROUPS][64];
    char post_urls[GROUPS][512];
    /* the stack's processes, from run.pids */
    pid_t gateway, chat, broker, redis, identity;
} s_b;

/* --- CPU and memory of processes --- */

static int64_t
s_cpu_self_us (int who)
{
    struct rusage ru;
    getrusage (who, &ru);
    return (int64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec
           + ru.ru_stime.tv_usec;
}

/*  User + system time of another process so far (clock-tick resolution). */
static int64_t
s_cpu_pid_us (pid_t pid)
{
    if (pid <= 0)
        return 0;
    char path[64], buf[1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return 0;
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    fclose (f);
    buf[n] = 0;
    char *p = strrchr (buf, ')');
    unsigned long long utime = 0, stime = 0;
    if (!p || sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                      &stime)
                  != 2)
        return 0;
    return (int64_t) ((utime + stime) * 1000000ULL / (unsigned long long) sysconf (_SC_CLK_TCK));
}

/*  A field of /proc/<pid>/status in kB (VmRSS, VmHWM...); -1 if unknown. */
static long
s_proc_kb (pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen (path, "r");
    long kb = -1;
    size_t n = strlen (field);
    while (f && fgets (line, sizeof line, f))
        if (strncmp (line, field, n) == 0 && line[n] == ':') {
            kb = atol (line + n + 1);
            break;
        }
    if (f)
        fclose (f);
    return kb;
}

static long
s_open_files_limit (pid_t pid)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/limits", (int) pid);
    FILE *f = fopen (path, "r");
    long soft = -1;
    while (f && fgets (line, sizeof line, f))
        if (strncmp (line, "Max open files", 14) == 0) {
            soft = atol (line + 14);
            break;
        }
    if (f)
        fclose (f);
    return soft;
}

/*  The pids scripts/run.sh noted ("PID name" lines in run.pids). */
static int
s_read_pids (void)
{
    char path[600], line[256];
    snprintf (path, sizeof path, "%s/run.pids", s_b.data);
    FILE *f = fopen (path, "r");
    if (!f)
        return -1;
    while (fgets (line, sizeof line, f)) {
        int pid;
        char name[64];
        if (sscanf (line, "%d %63s", &pid, name) != 2)
            continue;
        if (strcmp (name, "gateway") == 0)
            s_b.gateway = pid;
        else if (strcmp (name, "chat") == 0)
            s_b.chat = pid;
        else if (strcmp (name, "broker") == 0)
            s_b.broker = pid;
        else if (strcmp (name, "redis") == 0)
            s_b.redis = pid;
        else if (strcmp (name, "identity") == 0)
            s_b.identity = pid;
    }
    fclose (f);
    return s_b.gateway > 0 ? 0 : -1;
}

typedef struct {
    int64_t at, self, poster, receiver, gateway, chat, broker, redis, identity, floor;
} cpu_mark_t;

static _Atomic int64_t s_poster_cpu_us;    /* the poster thread's, as it last said */

static cpu_mark_t
s_cpu_mark (void)
{
    cpu_mark_t m = {
        .at = s_now_ns (),
        .self = s_cpu_self_us (RUSAGE_SELF),
        .poster = atomic_load (&s_poster_cpu_us),
        .receiver = s_cpu_self_us (RUSAGE_THREAD),
        .gateway = s_cpu_pid_us (s_b.gateway),
        .chat = s_cpu_pid_us (s_b.chat),
        .broker = s_cpu_pid_us (s_b.broker),
        .redis = s_cpu_pid_us (s_b.redis),
        .identity = s_cpu_pid_us (s_b.identity),
        .floor = s_cpu_pid_us (s_b.redis_pid),
    };
    return m;
}

/* --- HTTP for seeding: libcurl multi, keep-alive, SEED_PARALLEL in flight --- */

typedef struct {
    const char *method;         /* GET, POST, PUT */
    char url[512];
    const char *token;          /* borrowed; NULL: none */
    char *body;                 /* owned; NULL: none */
    long status;                /* or -CURLcode */
    char *reply;                /* owned, NUL-terminated */
    size_t len, cap;
    struct curl_slist *headers;
} hreq_t;

static CURLM *s_seed_multi;
static CURL *s_seed_easy[SEED_PARALLEL];
static int s_seed_requests;

static size_t
s_hreq_write (char *ptr, size_t size, size_t nmemb, void *arg)
{
    hreq_t *r = arg;
    size_t n = size * nmemb;
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *p = realloc (r->reply, cap);
        if (!p)
            return 0;
        r->reply = p;
        r->cap = cap;
    }
    memcpy (r->reply + r->len, ptr, n);
    r->len += n;
    r->reply[r->len] = 0;
    return n;
}

/*  Fills a request; `body` (taken) may be NULL. */
static void
s_hreq (hreq_t *r, const char *method, const char *token, json_t *body, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

static void
s_hreq (hreq_t *r, const char *method, const char *token, json_t *body, const char *fmt, ...)
{
    memset (r, 0, sizeof *r);
    r->method = method;
    r->token = token;
    int n = snprintf (r->url, sizeof r->url, "%s", s_b.url);
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (r->url + n, sizeof r->url - (size_t) n, fmt, ap);
    va_end (ap);
    if (body) {
        r->body = json_dumps (body, JSON_COMPACT);
        json_decref (body);
    }
}

static void
s_hreq_clear (hreq_t *r)
{
    free (r->body);
    free (r->reply);
    curl_slist_free_all (r->headers);
    memset (r, 0, sizeof *r);
}

static void
s_hreq_start (CURL *e, hreq_t *r)
{
    curl_easy_reset (e);
    curl_easy_setopt (e, CURLOPT_URL, r->url);
    curl_easy_setopt (e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (e, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt (e, CURLOPT_WRITEFUNCTION, s_hreq_write);
    curl_easy_setopt (e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt (e, CURLOPT_PRIVATE, r);
    r->headers = curl_slist_append (r->headers, "Content-Type: application/json");
    r->headers = curl_slist_append (r->headers, "Expect:");
    if (r->token) {
        char auth[256];
        snprintf (auth, sizeof auth, "Authorization: Bearer %s", r->token);
        r->headers = curl_slist_append (r->headers, auth);
    }
    curl_easy_setopt (e, CURLOPT_HTTPHEADER, r->headers);
    if (strcmp (r->method, "GET") != 0) {
        curl_easy_setopt (e, CURLOPT_CUSTOMREQUEST, r->method);
        curl_easy_setopt (e, CURLOPT_POSTFIELDS, r->body ? r->body : "{}");
    }
}

/*  Runs every request, SEED_PARALLEL at a time; each gets its status and
    reply. 0, or -1 if interrupted. */
static int
s_http_run (hreq_t *reqs, size_t n)
{
    CURL *idle[SEED_PARALLEL];
    int n_idle = 0;
    for (int i = 0; i < SEED_PARALLEL; i++)
        idle[n_idle++] = s_seed_easy[i];
    size_t next = 0, done = 0;
    while (done < n && !s_interrupted) {
        while (next < n && n_idle > 0) {
            CURL *e = idle[--n_idle];
            s_hreq_start (e, &reqs[next++]);
            curl_multi_add_handle (s_seed_multi, e);
        }
        int running = 0;
        curl_multi_perform (s_seed_multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read (s_seed_multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            hreq_t *r = NULL;
            curl_easy_getinfo (e, CURLINFO_PRIVATE, (char **) &r);
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo (e, CURLINFO_RESPONSE_CODE, &r->status);
            else
                r->status = -(long) msg->data.result;
            curl_multi_remove_handle (s_seed_multi, e);
            idle[n_idle++] = e;
            done++;
            s_seed_requests++;
        }
        if (done < n)
            curl_multi_poll (s_seed_multi, NULL, 0, 100, NULL);
    }
    return s_interrupted ? -1 : 0;
}

/*  -1 and a line saying what went wrong when a request did not get
    `status`. */
static int
s_expect (hreq_t *reqs, size_t n, long status, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (reqs[i].status != status) {
            printf ("chat_bench: %s: %s %s answered %ld (wanted %ld): %.300s\n", what,
                    reqs[i].method, reqs[i].url + strlen (s_b.url), reqs[i].status, status,
                    reqs[i].reply ? reqs[i].reply : "");
            return -1;
        }
    return 0;
}

static json_t *
s_reply_json (hreq_t *r)
{
    return r->reply ? json_loads (r->reply, 0, NULL) : NULL;
}

/*  Copies a string member at `path` (keys separated by '.') of the reply. */
static int
s_reply_str (hreq_t *r, const char *path, char *out, size_t size)
{
    json_t *root = s_reply_json (r), *v = root;
    char keys[128];
    snprintf (keys, sizeof keys, "%s", path);
    char *save = NULL;
    for (char *k = strtok_r (keys, ".", &save); k && v; k = strtok_r (NULL, ".", &save))
        v = json_object_get (v, k);
    int ok = json_is_string (v);
    if (ok)
        snprintf (out, size, "%s", json_string_value (v));
    json_decref (root);
    return ok ? 0 : -1;
}

/* --- seeding --- */

/*  The standalone six-digit code of each phone's last SMS in the outbox. */
static zhashx_t *
s_read_codes (void)
{
    char path[600];
    snprintf (path, sizeof path, "%s/sms.outbox", s_b.data);
    FILE *f = fopen (path, "r");
    if (!f)
        return NULL;
    zhashx_t *codes = zhashx_new ();
    zhashx_set_destructor (codes, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (codes, (zhashx_duplicator_fn *) strdup);
    char line[2048];
    while (fgets (line, sizeof line, f)) {
        json_t *j = json_loads (line, 0, NULL);
        const char *to = json_string_value (json_object_get (j, "to"));
        const char *text = json_string_value (json_object_get (j, "text"));
        for (const char *p = text; p && *p; p++) {
            if (*p < '0' || *p > '9' || (p > text && p[-1] >= '0' && p[-1] <= '9'))
                continue;
            size_t n = strspn (p, "0123456789");
            if (n == 6 && to) {
                char code[7];
                memcpy (code, p, 6);
                code[6] = 0;
                zhashx_update (codes, to, code);
                break;
            }
        }
        json_decref (j);
    }
    fclose (f);
    return codes;
}

/*  Signs the users up: a code each, then register. */
static int
s_sign_up (user_t **users, size_t n)
{
    hreq_t *reqs = calloc (n, sizeof *reqs);
    int rc = -1;
    for (size_t i = 0; i < n; i++)
        s_hreq (&reqs[i], "POST", NULL, json_pack ("{s:s}", "phone", users[i]->phone),
                "/v1/auth/otp");
    if (s_http_run (reqs, n) || s_expect (reqs, n, 202, "one-time code"))
        goto out;
    zhashx_t *codes = s_read_codes ();
    for (size_t i = 0; i < n; i++) {
        const char *code = codes ? zhashx_lookup (codes, users[i]->phone) : NULL;
        if (!code) {
            printf ("chat_bench: no code for %s in %s/sms.outbox\n", users[i]->phone, s_b.data);
            zhashx_destroy (&codes);
            goto out;
        }
        s_hreq_clear (&reqs[i]);
        s_hreq (&reqs[i], "POST", NULL,
                json_pack ("{s:s, s:s, s:s}", "phone", users[i]->phone, "code", code, "full_name",
                           users[i]->name),
                "/v1/auth/register");
    }
    zhashx_destroy (&codes);
    if (s_http_run (reqs, n) || s_expect (reqs, n, 201, "register"))
        goto out;
    for (size_t i = 0; i < n; i++)
        if (s_reply_str (&reqs[i], "token", users[i]->token, sizeof users[i]->token)
            || s_reply_str (&reqs[i], "user.id", users[i]->id, sizeof users[i]->id)) {
            printf ("chat_bench: register answered without a token: %.200s\n", reqs[i].reply);
            goto out;
        }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        s_hreq_clear (&reqs[i]);
    free (reqs);
    return rc;
}

/*  Runs one request per group, made by `make (g, req)`, expecting `status`. */
static int
s_per_group (long status, const char *what, void (*make) (int g, hreq_t *r))
{
    hreq_t reqs[GROUPS];
    for (int g = 0; g < GROUPS; g++)
        make (g, &reqs[g]);
    int rc = s_http_run (reqs, GROUPS) || s_expect (reqs, GROUPS, status, what) ? -1 : 0;
    for (int g = 0; rc == 0 && g < GROUPS && strcmp (what, "unit") == 0; g++)
        if (s_reply_str (&reqs[g], "id", s_b.unit_ids[g], sizeof s_b.unit_ids[g]))
            rc = -1;
    for (int g = 0; g < GROUPS; g++)
        s_hreq_clear (&reqs[g]);
    return rc;
}

static void
s_make_unit (int g, hreq_t *r)
{
    char name[64], code[16];
    snprintf (name, sizeof name, "Группа %02d", g + 1);
    snprintf (code, sizeof code, "Б-%02d", g + 1);
    s_hreq (r, "POST", s_b.admin.token,
            json_pack ("{s:s, s:s, s:s, s:i}", "kind", "group", "name", name, "code", code,
                       "year", 1),
            "/v1/orgs/%s/units", s_b.org_id);
}

static void
s_make_curator (int g, hreq_t *r)
{
    s_hreq (r, "PUT", s_b.admin.token, json_pack ("{s:s}", "user_id", s_b.curators[g].id),
            "/v1/orgs/%s/units/%s/curator", s_b.org_id, s_b.unit_ids[g]);
}

/*  Roles for the curators (teacher) and students (student), then each
    student enrolled in their group. */
static int
s_roster (void)
{
    size_t n = GROUPS + GROUPS * MEMBERS;
    hreq_t *reqs = calloc (n, sizeof *reqs);
    int rc = -1;
    size_t i = 0;
    for (int g = 0; g < GROUPS; g++) {
        s_hreq (&reqs[i++], "POST", s_b.admin.token, json_pack ("{s:s}", "role", "teacher"),
                "/v1/orgs/%s/members/%s/roles", s_b.org_id, s_b.curators[g].id);
        for (int m = 0; m < MEMBERS; m++)
            s_hreq (&reqs[i++], "POST", s_b.admin.token, json_pack ("{s:s}", "role", "student"),
                    "/v1/orgs/%s/members/%s/roles", s_b.org_id, s_b.students[g][m].id);
    }
    if (s_http_run (reqs, n) || s_expect (reqs, n, 200, "role"))
        goto out;
    if (s_per_group (200, "curator", s_make_curator))
        goto out;
    for (i = 0; i < n; i++)
        s_hreq_clear (&reqs[i]);
    n = GROUPS * MEMBERS;
    i = 0;
    for (int g = 0; g < GROUPS; g++)
        for (int m = 0; m < MEMBERS; m++)
            s_hreq (&reqs[i++], "POST", s_b.admin.token,
                    json_pack ("{s:s, s:s, s:s, s:s}", "kind", "enroll", "user_id",
                               s_b.students[g][m].id, "unit_id", s_b.unit_ids[g], "order_number",
                               "1-у"),
                    "/v1/orgs/%s/movements", s_b.org_id);
    if (s_http_run (reqs, n) || s_expect (reqs, n, 201, "enroll"))
        goto out;
    rc = 0;
out:
    for (i = 0; i < GROUPS + GROUPS * MEMBERS; i++)
        s_hreq_clear (&reqs[i]);
    free (reqs);
    return rc;
}

/*  Waits, bounded, until every group chat exists with its 31 members:
    the chat service builds them from the org's events. */
static int
s_wait_chats (void)
{
    int64_t deadline = s_now_ns () + (int64_t) SYNC_TIMEOUT_MS * 1000000;
    int complete[GROUPS] = {0};
    int left = GROUPS;
    long last_count[GROUPS] = {0};
    while (left && !s_interrupted) {
        hreq_t reqs[GROUPS];
        int map[GROUPS], n = 0;
        for (int g = 0; g < GROUPS; g++) {
            if (complete[g])
                continue;
            map[n] = g;
            if (!s_b.chat_ids[g][0])
                s_hreq (&reqs[n++], "GET", s_b.curators[g].token, NULL, "/v1/chats?limit=200");
            else
                s_hreq (&reqs[n++], "GET", s_b.curators[g].token, NULL,
                        "/v1/chats/%s/members?limit=200", s_b.chat_ids[g]);
        }
        if (s_http_run (reqs, (size_t) n))
            return -1;
        for (int i = 0; i < n; i++) {
            int g = map[i];
            json_t *j = reqs[i].status == 200 ? s_reply_json (&reqs[i]) : NULL;
            json_t *items = json_object_get (j, "items");
            if (!s_b.chat_ids[g][0]) {
                size_t k;
                json_t *c;
                json_array_foreach (items, k, c) {
                    const char *unit = json_string_value (json_object_get (c, "unit_id"));
                    const char *aud = json_string_value (json_object_get (c, "audience"));
                    if (unit && aud && strcmp (unit, s_b.unit_ids[g]) == 0
                        && strcmp (aud, "students") == 0)
                        snprintf (s_b.chat_ids[g], sizeof s_b.chat_ids[g], "%s",
                                  json_string_value (json_object_get (c, "id")));
                }
            }
            else {
                last_count[g] = (long) json_array_size (items);
                if (last_count[g] == MEMBERS + 1) {
                    complete[g] = 1;
                    left--;
                }
            }
            json_decref (j);
            s_hreq_clear (&reqs[i]);
        }
        if (left && s_now_ns () > deadline) {
            for (int g = 0; g < GROUPS; g++)
                if (!complete[g])
                    printf ("chat_bench: group %d's chat %s has %ld of %d members after %d s\n",
                            g + 1, s_b.chat_ids[g][0] ? s_b.chat_ids[g] : "(not made)",
                            last_count[g], MEMBERS + 1, SYNC_TIMEOUT_MS / 1000);
            return -1;
        }
        if (left)
            usleep (200000);
    }
    return s_interrupted ? -1 : 0;
}

static void
s_user_init (user_t *u, int index, const char *name, int group, int member)
{
    snprintf (u->phone, sizeof u->phone, "+7999%07d", 6000000 + index);
    snprintf (u->name, sizeof u->name, "%s", name);
    u->group = group;
    u->member = member;
}

static int
s_seed (void)
{
    int64_t t0 = s_now_ns ();
    s_seed_multi = curl_multi_init ();
    curl_multi_setopt (s_seed_multi, CURLMOPT_MAXCONNECTS, (long) SEED_PARALLEL);
    for (int i = 0; i < SEED_PARALLEL; i++)
        s_seed_easy[i] = curl_easy_init ();

    /*  The platform operator (scripts/run.sh's PARTA_OPERATORS) approves
        the college's application; its admin signs up with the phone the
        application named. */
    user_t *one[1] = {&s_b.op};
    snprintf (s_b.op.phone, sizeof s_b.op.phone, "+79990000000");
    snprintf (s_b.op.name, sizeof s_b.op.name, "Оператор Платформы");
    s_user_init (&s_b.admin, 0, "Администратор Колледжа", -1, -1);
    if (s_sign_up (one, 1))
        return -1;
    hreq_t r;
    s_hreq (&r, "POST", NULL,
            json_pack ("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}, s:s, s:s}", "org_name",
                       "Нагрузочный колледж", "short_name", "НК", "region", "Рязанская область",
                       "inn", "6229000000", "admin", "full_name", s_b.admin.name, "phone",
                       s_b.admin.phone, "email", "admin@college.example", "order_number", "12-к",
                       "order_date", "2026-08-25"),
            "/v1/org-applications");
    char app[64];
    int rc = s_http_run (&r, 1) || s_expect (&r, 1, 201, "application")
             || s_reply_str (&r, "id", app, sizeof app);
    s_hreq_clear (&r);
    if (rc)
        return -1;
    s_hreq (&r, "POST", s_b.op.token, NULL, "/v1/org-applications/%s/approve", app);
    rc = s_http_run (&r, 1) || s_expect (&r, 1, 200, "approve")
         || s_reply_str (&r, "org_id", s_b.org_id, sizeof s_b.org_id);
    s_hreq_clear (&r);
    if (rc)
        return -1;

    size_t n = 1 + GROUPS + GROUPS * MEMBERS;
    user_t **users = calloc (n, sizeof *users);
    size_t i = 0;
    users[i++] = &s_b.admin;
    for (int g = 0; g < GROUPS; g++) {
        char name[64];
        snprintf (name, sizeof name, "Куратор Группы %02d", g + 1);
        s_user_init (&s_b.curators[g], (int) i, name, g, -1);
        users[i++] = &s_b.curators[g];
        for (int m = 0; m < MEMBERS; m++) {
            snprintf (name, sizeof name, "Студент %02d-%02d", g + 1, m + 1);
            s_user_init (&s_b.students[g][m], (int) i, name, g, m);
            users[i++] = &s_b.students[g][m];
        }
    }
    rc = s_sign_up (users, n);
    free (users);
    if (rc || s_per_group (201, "unit", s_make_unit) || s_roster ())
        return -1;
    double seed_s = s_secs_since (t0);
    int64_t t1 = s_now_ns ();
    if (s_wait_chats ())
        return -1;
    printf ("seeded through the HTTP API: 1 org, %d groups, %d curators, %d students"
            " (%d requests, %d in flight, keep-alive): %.1f s;\n"
            "  every group chat had its %d members %.1f s later\n",
            GROUPS, GROUPS, GROUPS * MEMBERS, s_seed_requests, SEED_PARALLEL, seed_s,
            MEMBERS + 1, s_secs_since (t1));
    for (int g = 0; g < GROUPS; g++) {
        snprintf (s_b.post_urls[g], sizeof s_b.post_urls[g], "%s/v1/chats/%s/messages", s_b.url,
                  s_b.chat_ids[g]);
        for (int m = 0; m < MEMBERS; m++) {
            user_t *u = &s_b.students[g][m];
            char auth[256];
            snprintf (auth, sizeof auth, "Authorization: Bearer %s", u->token);
            u->headers = curl_slist_append (NULL, auth);
            u->headers = curl_slist_append (u->headers, "Content-Type: application/json");
            u->headers = curl_slist_append (u->headers, "Expect:");
        }
    }
    for (int k = 0; k < SEED_PARALLEL; k++)
        curl_easy_cleanup (s_seed_easy[k]);
    curl_multi_cleanup (s_seed_multi);
    return 0;
}

/* --- what every delivery is checked against --- */

/*  Post k goes to group k % GROUPS, posted by its member (k / GROUPS) %
    MEMBERS; its text is "pb:<k>:<send time, monotonic ns>". The receiving
    side needs nothing from the posting side but the text. */
static uint32_t *s_mask;            /* per post: the members whose socket got it */
static uint8_t *s_status;           /* per post, by the poster: */
enum { POST_NONE = 0, POST_ACCEPTED, POST_REFUSED, POST_FAILED };

typedef struct {
    const char *name;
    double rate;                /* offered posts/s; 0: closed loop of WINDOW */
    double seconds;
    int report;                 /* a row in the table (the warm-up is not) */
    int with_idle;              /* the idle sockets are open during the step */
    /* set by the step */
    uint64_t first, end;        /* its posts */
    int64_t t0, t_end;          /* sending began, ended */
    /* the posting side */
    uint64_t sent, accepted, refused, failed;
    long bad_status;
    char bad_reply[200];
    uint32_t *post_us;          /* POST round trips */
    size_t n_post;
    uint32_t *slip_us;          /* open loop: how late each send was */
    size_t n_slip;
    /* the receiving side */
    uint64_t deliveries, dup, misrouted, stale, resyncs, errors, closes, unknown;
    uint64_t buckets[BUCKETS];  /* deliveries per 100 ms from t0 */
    uint32_t *all_us, *first_us;
    size_t n_all, n_first;
    uint64_t lost_msgs, lost_deliveries, unacked_delivered;
    uint64_t lost_example[5];
    cpu_mark_t cpu0, cpu1;
    double drain_s;
} step_t;

static step_t *s_step;              /* the step receiving now */
static uint64_t s_next_post;        /* the next post index */

static void
s_step_alloc (step_t *st)
{
    st->all_us = malloc (MAX_SAMPLES * sizeof (uint32_t));
    st->first_us = malloc (MAX_POSTS * sizeof (uint32_t));
    st->post_us = malloc (MAX_POSTS * sizeof (uint32_t));
    st->slip_us = malloc (MAX_POSTS * sizeof (uint32_t));
}

static void
s_step_free (step_t *st)
{
    free (st->all_us);
    free (st->first_us);
    free (st->post_us);
    free (st->slip_us);
    st->all_us = st->first_us = st->post_us = st->slip_us = NULL;
}

/*  A "pb:<k>:<ns>" text arrived at the socket of (group, member). */
static void
s_delivered (const char *stamp, size_t len, int group, int member, int64_t now)
{
    step_t *st = s_step;
    char buf[64];
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy (buf, stamp, len);
    buf[len] = 0;
    char *end;
    unsigned long long k = strtoull (buf, &end, 10);
    long long sent = *end == ':' ? strtoll (end + 1, NULL, 10) : 0;
    if (!st || k >= MAX_POSTS || sent <= 0) {
        if (st)
            st->unknown++;
        return;
    }
    if ((int) (k % GROUPS) != group) {
        st->misrouted++;
        return;
    }
    uint32_t bit = 1u << member;
    if (s_mask[k] & bit) {
        st->dup++;
        return;
    }
    int first = s_mask[k] == 0;
    s_mask[k] |= bit;
    if (k < st->first || k >= st->end) {
        st->stale++;        /* a post of an earlier step, after its drain */
        return;
    }
    st->deliveries++;
    int64_t b = (now - st->t0) / 100000000;
    if (b >= 0 && b < BUCKETS)
        st->buckets[b]++;
    uint32_t us = now > sent ? (uint32_t) ((now - sent) / 1000) : 0;
    if (st->n_all < MAX_SAMPLES)
        st->all_us[st->n_all++] = us;
    if (first && st->n_first < MAX_POSTS)
        st->first_us[st->n_first++] = us;
}

/* --- WebSocket clients: one epoll loop, every socket, in the main thread ---

   A minimal RFC 6455 client: the upgrade request (with the token in its
   Authorization header, which the gateway takes as DESIGN.md section 5
   says), then unmasked frames from the server
   (text, continuation, ping, close) and masked ones to it (pong, close).
   Not libwebsockets' client: its poll() loop walks every descriptor on
   each wake-up, which with 900 sockets cost the generator about 20 us per
   frame on a 2-core machine it shares with the stack; epoll costs a few. */

enum { WS_NEW = 0, WS_CONNECTING, WS_HANDSHAKE, WS_OPEN, WS_READY, WS_GONE };

typedef struct {
    int fd;
    user_t *user;
    int group, member;          /* member -1: not a group member's socket */
    int state;
    int closing;                /* we sent a close frame */
    int want_out;               /* EPOLLOUT is registered */
    char *in;                   /* received bytes not parsed yet */
    size_t in_len, in_cap;
    char *msg;                  /* a message arriving in fragments */
    size_t msg_len, msg_cap;
    char *out;                  /* bytes to send */
    size_t out_len, out_off, out_cap;
} conn_t;

static struct {
    int ep;
    int connecting, ready, failed;
    uint64_t frames, presence, resyncs, errors, other, server_closes;
    char first_error[300], first_error_frame[300], first_close[160];
    int64_t last_frame;
    conn_t *pending[IDLE_SOCKETS + GROUPS * MEMBERS];
    size_t n_pending, next_pending;
} s_ws;

static int
s_grow (char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 1024;
    while (cap2 < need)
        cap2 *= 2;
    char *p = realloc (*buf, cap2);
    if (!p)
        return -1;
    *buf = p;
    *cap = cap2;
    return 0;
}

static void
s_conn_gone (conn_t *c, const char *why)
{
    if (c->state == WS_GONE || c->state == WS_NEW)
        return;
    if (c->state != WS_READY) {
        s_ws.failed++;
        s_ws.connecting--;
        if (!s_ws.first_error[0])
            snprintf (s_ws.first_error, sizeof s_ws.first_error, "%s", why);
    }
    else {
        s_ws.ready--;
        if (!c->closing && s_step)
            s_step->closes++;
    }
    close (c->fd);              /* also leaves the epoll set */
    c->fd = -1;
    c->state = WS_GONE;
    free (c->in);
    free (c->msg);
    free (c->out);
    c->in = c->msg = c->out = NULL;
    c->in_len = c->in_cap = c->msg_len = c->msg_cap = 0;
    c->out_len = c->out_off = c->out_cap = 0;
}

static void
s_conn_events (conn_t *c, int want_out)
{
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl (s_ws.ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

/*  Writes what is queued; what the socket does not take waits for EPOLLOUT. */
static void
s_conn_flush (conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send (c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            s_conn_gone (c, strerror (errno));
            return;
        }
        c->out_off += (size_t) n;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    s_conn_events (c, c->out_len > 0);
}

static void
s_conn_write (conn_t *c, const void *bytes, size_t len)
{
    if (s_grow (&c->out, &c->out_cap, c->out_len + len))
        return;
    memcpy (c->out + c->out_len, bytes, len);
    c->out_len += len;
}

/*  A frame to the server: masked, as a client's must be. */
static void
s_conn_send (conn_t *c, int opcode, const void *payload, size_t len)
{
    if (len > 125)
        len = 125;              /* control frames only: pong, close */
    unsigned char head[6];
    head[0] = (unsigned char) (0x80 | opcode);
    head[1] = (unsigned char) (0x80 | len);
    uint32_t key = (uint32_t) rand ();
    memcpy (head + 2, &key, 4);
    unsigned char body[125];
    for (size_t i = 0; i < len; i++)
        body[i] = ((const unsigned char *) payload)[i] ^ head[2 + i % 4];
    s_conn_write (c, head, sizeof head);
    s_conn_write (c, body, len);
    s_conn_flush (c);
}

static int
s_type_is (const char *text, size_t len, const char *type)
{
    char want[64];
    int n = snprintf (want, sizeof want, "\"type\":\"%s\"", type);
    /*  The gateway writes the type first; anywhere else is fine too. */
    if (len > 1 + (size_t) n && memcmp (text + 1, want, (size_t) n) == 0)
        return 1;
    return text[1] != '"' && memmem (text, len, want, (size_t) n) != NULL;
}

/*  A whole text message from the gateway. */
static void
s_frame (conn_t *c, const char *text, size_t len)
{
    int64_t now = s_now_ns ();
    s_ws.frames++;
    s_ws.last_frame = now;
    if (s_type_is (text, len, "message.posted")) {
        static const char mark[] = "\"text\":\"pb:";
        const char *p = memmem (text, len, mark, sizeof mark - 1);
        if (p && c->member >= 0) {
            p += sizeof mark - 1;
            const char *q = memchr (p, '"', len - (size_t) (p - text));
            s_delivered (p, q ? (size_t) (q - p) : 0, c->group, c->member, now);
        }
        else if (s_step)
            s_step->unknown++;
    }
    else if (s_type_is (text, len, "presence"))
        s_ws.presence++;
    else if (s_type_is (text, len, "ready")) {
        if (c->state == WS_OPEN) {
            c->state = WS_READY;
            s_ws.ready++;
            s_ws.connecting--;
        }
    }
    else if (s_type_is (text, len, "resync")) {
        s_ws.resyncs++;
        if (s_step)
            s_step->resyncs++;
    }
    else if (s_type_is (text, len, "error")) {
        s_ws.errors++;
        if (s_step)
            s_step->errors++;
        if (!s_ws.first_error_frame[0])
            snprintf (s_ws.first_error_frame, sizeof s_ws.first_error_frame, "%.*s",
                      (int) (len < 250 ? len : 250), text);
    }
    else
        s_ws.other++;
}

/*  The answer to the upgrade: 101, or the socket fails with its first line. */
static size_t
s_handshake (conn_t *c, const char *buf, size_t len)
{
    const char *end = memmem (buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    if (len < 12 || memcmp (buf, "HTTP/1.1 101", 12) != 0) {
        char why[200];
        snprintf (why, sizeof why, "upgrade refused: %.*s", (int) (len < 150 ? len : 150), buf);
        for (char *p = why; *p; p++)
            if (*p == '\r' || *p == '\n')
                *p = ' ';
        s_conn_gone (c, why);
        return 0;
    }
    c->state = WS_OPEN;
    return (size_t) (end + 4 - buf);
}

/*  Parses frames from buf; returns the bytes used (the rest is a partial
    frame), or 0 with the socket gone. */
static size_t
s_parse (conn_t *c, const char *buf, size_t len)
{
    size_t at = 0;
    if (c->state == WS_HANDSHAKE) {
        at = s_handshake (c, buf, len);
        if (c->state != WS_OPEN)
            return c->state == WS_GONE ? 0 : at;
    }
    while (c->state != WS_GONE && len - at >= 2) {
        const unsigned char *p = (const unsigned char *) buf + at;
        int fin = p[0] & 0x80, opcode = p[0] & 0x0f, masked = p[1] & 0x80;
        uint64_t plen = p[1] & 0x7f;
        size_t head = 2;
        if (plen == 126) {
            if (len - at < 4)
                break;
            plen = (uint64_t) p[2] << 8 | p[3];
            head = 4;
        }
        else if (plen == 127) {
            if (len - at < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | p[2 + i];
            head = 10;
        }
        if (masked)
            head += 4;          /* servers do not mask; tolerated anyway */
        if (plen > (64u << 20)) {
            s_conn_gone (c, "a frame above 64 MiB");
            return 0;
        }
        if (len - at < head + plen)
            break;
        char *payload = (char *) buf + at + head;
        if (masked)
            for (uint64_t i = 0; i < plen; i++)
                payload[i] ^= (char) p[head - 4 + i % 4];
        at += head + (size_t) plen;
        if (opcode == 0x8) {            /* close: answer it, then hang up */
            char why[160];
            snprintf (why, sizeof why, "closed by the server: %d %.*s",
                      plen >= 2 ? (unsigned char) payload[0] << 8 | (unsigned char) payload[1] : 0,
                      plen > 2 ? (int) (plen < 120 ? plen - 2 : 118) : 0, payload + 2);
            if (!c->closing) {
                s_ws.server_closes++;
                if (!s_ws.first_close[0])
                    snprintf (s_ws.first_close, sizeof s_ws.first_close, "%s", why);
                s_conn_send (c, 0x8, payload, plen >= 2 ? 2 : 0);
            }
            s_conn_gone (c, why);
            return 0;
        }
        if (opcode == 0x9) {
            s_conn_send (c, 0xA, payload, (size_t) plen);
            continue;
        }
        if (opcode == 0xA)
            continue;
        if (fin && opcode != 0 && !c->msg_len) {
            s_frame (c, payload, (size_t) plen);
            continue;
        }
        if (s_grow (&c->msg, &c->msg_cap, c->msg_len + (size_t) plen)) {
            s_conn_gone (c, "out of memory");
            return 0;
        }
        memcpy (c->msg + c->msg_len, payload, (size_t) plen);
        c->msg_len += (size_t) plen;
        if (fin) {
            s_frame (c, c->msg, c->msg_len);
            c->msg_len = 0;
        }
    }
    return at;
}

static void
s_conn_readable (conn_t *c)
{
    static char buf[1 << 16];
    ssize_t n = recv (c->fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        s_conn_gone (c, n == 0 ? "connection closed" : strerror (errno));
        return;
    }
    if (n < 0)
        return;
    if (!c->in_len) {
        size_t used = s_parse (c, buf, (size_t) n);
        if (c->state != WS_GONE && used < (size_t) n) {
            if (s_grow (&c->in, &c->in_cap, (size_t) n - used))
                s_conn_gone (c, "out of memory");
            else {
                memcpy (c->in, buf + used, (size_t) n - used);
                c->in_len = (size_t) n - used;
            }
        }
        return;
    }
    if (s_grow (&c->in, &c->in_cap, c->in_len + (size_t) n)) {
        s_conn_gone (c, "out of memory");
        return;
    }
    memcpy (c->in + c->in_len, buf, (size_t) n);
    c->in_len += (size_t) n;
    size_t used = s_parse (c, c->in, c->in_len);
    if (c->state == WS_GONE)
        return;
    memmove (c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
}

/*  The TCP connection is up: ask for the upgrade. */
static void
s_conn_connected (conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt (c->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
        s_conn_gone (c, strerror (err ? err : errno));
        return;
    }
    unsigned char nonce[16];
    for (size_t i = 0; i < sizeof nonce; i++)
        nonce[i] = (unsigned char) rand ();
    char key[32];
    sodium_bin2base64 (key, sizeof key, nonce, sizeof nonce, sodium_base64_VARIANT_ORIGINAL);
    char req[1024];
    int n = snprintf (req, sizeof req,
                      "GET /v1/ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: parta-ws\r\n"
                      "Authorization: Bearer %s\r\nUser-Agent: chat_bench\r\n\r\n",
                      s_b.ws_host, s_b.ws_port, key, c->user->token);
    c->state = WS_HANDSHAKE;
    s_conn_write (c, req, (size_t) n);
    s_conn_flush (c);
}

static void
s_connect (conn_t *c)
{
    c->state = WS_CONNECTING;
    c->closing = 0;
    c->want_out = 1;
    s_ws.connecting++;
    c->fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons ((uint16_t) s_b.ws_port)};
    inet_pton (AF_INET, s_b.ws_host, &a.sin_addr);
    if (c->fd < 0) {
        s_conn_gone (c, strerror (errno));
        return;
    }
    int one = 1;
    setsockopt (c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if ((connect (c->fd, (struct sockaddr *) &a, sizeof a) && errno != EINPROGRESS)
        || epoll_ctl (s_ws.ep, EPOLL_CTL_ADD, c->fd, &ev))
        s_conn_gone (c, strerror (errno));
}

/*  Keeps CONNECTS_IN_FLIGHT handshakes (and sign-ins) going. */
static void
s_top_up (void)
{
    while (s_ws.next_pending < s_ws.n_pending && s_ws.connecting < CONNECTS_IN_FLIGHT)
        s_connect (s_ws.pending[s_ws.next_pending++]);
}

/*  Services the sockets until done() or the deadline. */
static void
s_pump (int (*done) (void *), void *arg, int64_t deadline)
{
    struct epoll_event evs[512];
    while (!s_interrupted && !(done && done (arg))) {
        int64_t now = s_now_ns ();
        if (now >= deadline)
            break;
        s_top_up ();
        int64_t wait_ms = (deadline - now) / 1000000;
        int n = epoll_wait (s_ws.ep, evs, 512, wait_ms < 20 ? (int) wait_ms : 20);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->state == WS_GONE)
                continue;
            if (c->state == WS_CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    s_conn_connected (c);
                continue;
            }
            if (evs[i].events & EPOLLOUT)
                s_conn_flush (c);
            if (c->state != WS_GONE && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                s_conn_readable (c);
        }
    }
}

static int
s_all_settled (void *arg)
{
    (void) arg;
    return s_ws.next_pending == s_ws.n_pending && s_ws.connecting == 0;
}

static int
s_quiet (void *arg)
{
    (void) arg;
    return s_now_ns () - s_ws.last_frame > (int64_t) SETTLE_QUIET_MS * 1000000;
}

/*  Opens the sockets and waits until each signed in (or failed). Seconds taken. */
static double
s_open (conn_t *conns, size_t n)
{
    int64_t t0 = s_now_ns ();
    s_ws.n_pending = s_ws.next_pending = 0;
    for (size_t i = 0; i < n; i++)
        s_ws.pending[s_ws.n_pending++] = &conns[i];
    s_pump (s_all_settled, NULL, t0 + 120 * 1000000000LL);
    return s_secs_since (t0);
}

/*  Lets the frames that opening or closing sockets caused arrive (presence
    to everyone sharing a chat): until none came for a second. */
static double
s_settle (void)
{
    int64_t t0 = s_now_ns ();
    s_ws.last_frame = t0;
    s_pump (s_quiet, NULL, t0 + (int64_t) SETTLE_MAX_MS * 1000000);
    return s_secs_since (t0) - SETTLE_QUIET_MS / 1000.0;
}

static int
s_none_open (void *arg)
{
    (void) arg;
    return s_ws.ready == 0 && s_ws.connecting == 0;
}

/*  A close frame on each socket; the server answers and hangs up. */
static void
s_close_all (conn_t *conns, size_t n)
{
    static const unsigned char normal[2] = {0x03, 0xe8};   /* 1000 */
    for (size_t i = 0; i < n; i++)
        if (conns[i].state == WS_READY && !conns[i].closing) {
            conns[i].closing = 1;
            s_conn_send (&conns[i], 0x8, normal, sizeof normal);
        }
    s_pump (s_none_open, NULL, s_now_ns () + 20 * 1000000000LL);
    for (size_t i = 0; i < n; i++)
        if (conns[i].state != WS_GONE && conns[i].state != WS_NEW) {
            conns[i].closing = 1;
            s_conn_gone (&conns[i], "closed");
        }
}

/* --- posting: a thread of its own, libcurl multi over keep-alive --- */

typedef struct {
    CURL *easy;
    int busy;
    uint64_t k;
    int64_t sent;
    char body[96];
    char reply[200];
    size_t reply_len;
} slot_t;

static atomic_int s_poster_done;

static size_t
s_slot_write (char *ptr, size_t size, size_t nmemb, void *arg)
{
    slot_t *s = arg;
    size_t n = size * nmemb, room = sizeof s->reply - 1 - s->reply_len;
    memcpy (s->reply + s->reply_len, ptr, n < room ? n : room);
    s->reply_len += n < room ? n : room;
    s->reply[s->reply_len] = 0;
    return n;
}

static void
s_post_issue (CURLM *m, slot_t *s, uint64_t k, int64_t now)
{
    int g = (int) (k % GROUPS), who = (int) (k / GROUPS % MEMBERS);
    s->busy = 1;
    s->k = k;
    s->sent = now;
    s->reply_len = 0;
    s->reply[0] = 0;
    int n = snprintf (s->body, sizeof s->body, "{\"text\":\"pb:%llu:%lld\"}", (unsigned long long) k,
                      (long long) now);
    curl_easy_setopt (s->easy, CURLOPT_URL, s_b.post_urls[g]);
    curl_easy_setopt (s->easy, CURLOPT_HTTPHEADER, s_b.students[g][who].headers);
    curl_easy_setopt (s->easy, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt (s->easy, CURLOPT_POSTFIELDSIZE, (long) n);
    curl_multi_add_handle (m, s->easy);
}

/*  Posts for the step: at its rate (open loop: a post leaves when it is
    due, whatever the answers do; how late the loop sent it is recorded)
    or WINDOW in flight (closed loop). Each post is stamped when it is
    handed to libcurl, which writes it at once. */
static void *
s_poster (void *arg)
{
    step_t *st = arg;
    CURLM *m = curl_multi_init ();
    curl_multi_setopt (m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) POST_POOL);
    curl_multi_setopt (m, CURLMOPT_MAXCONNECTS, (long) POST_POOL);
    int pool = st->rate > 0 ? POST_POOL : WINDOW;
    slot_t *slots = calloc ((size_t) pool, sizeof *slots);
    slot_t **idle = calloc ((size_t) pool, sizeof *idle);
    int n_idle = 0;
    for (int i = 0; i < pool; i++) {
        CURL *e = curl_easy_init ();
        slots[i].easy = e;
        curl_easy_setopt (e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt (e, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt (e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt (e, CURLOPT_WRITEFUNCTION, s_slot_write);
        curl_easy_setopt (e, CURLOPT_WRITEDATA, &slots[i]);
        curl_easy_setopt (e, CURLOPT_PRIVATE, &slots[i]);
        idle[n_idle++] = &slots[i];
    }
    double interval = st->rate > 0 ? 1e9 / st->rate : 0;
    uint64_t issued = 0;
    int in_flight = 0;
    int64_t t0 = st->t0, t_end = st->t0 + (int64_t) (st->seconds * 1e9);
    int64_t give_up = t_end + (int64_t) DRAIN_MS * 1000000;
    for (;;) {
        int64_t now = s_now_ns ();
        int sending = now < t_end && s_next_post < MAX_POSTS && !s_interrupted;
        if (sending && st->rate > 0) {
            for (;;) {
                int64_t due = t0 + (int64_t) ((double) issued * interval);
                if (due > now || due >= t_end || !n_idle || s_next_post >= MAX_POSTS)
                    break;
                now = s_now_ns ();
                st->slip_us[st->n_slip++] = (uint32_t) ((now - due) / 1000);
                s_post_issue (m, idle[--n_idle], s_next_post++, now);
                issued++;
                in_flight++;
            }
        }
        else if (sending)
            while (n_idle && s_next_post < MAX_POSTS) {
                s_post_issue (m, idle[--n_idle], s_next_post++, s_now_ns ());
                issued++;
                in_flight++;
            }
        int running = 0;
        curl_multi_perform (m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read (m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            slot_t *s = NULL;
            curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, (char **) &s);
            long status = 0;
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo (msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            int64_t done = s_now_ns ();
            st->sent++;
            if (status == 201) {
                st->accepted++;
                s_status[s->k] = POST_ACCEPTED;
                st->post_us[st->n_post++] = (uint32_t) ((done - s->sent) / 1000);
            }
            else {
                if (status > 0)
                    st->refused++;
                else
                    st->failed++;
                s_status[s->k] = status > 0 ? POST_REFUSED : POST_FAILED;
                if (!st->bad_status) {
                    st->bad_status = status > 0 ? status : -(long) msg->data.result;
                    snprintf (st->bad_reply, sizeof st->bad_reply, "%s",
                              status > 0 ? s->reply : curl_easy_strerror (msg->data.result));
                }
            }
            curl_multi_remove_handle (m, msg->easy_handle);
            s->busy = 0;
            idle[n_idle++] = s;
            in_flight--;
        }
        now = s_now_ns ();
        if (now >= t_end && (in_flight == 0 || now >= give_up))
            break;
        int wait_ms = 10;
        if (now < t_end && st->rate > 0 && n_idle) {
            int64_t due = t0 + (int64_t) ((double) issued * interval);
            int64_t ms = (due - now + 999999) / 1000000;
            wait_ms = ms < 0 ? 0 : ms > 10 ? 10 : (int) ms;
        }
        curl_multi_poll (m, NULL, 0, wait_ms, NULL);
    }
    st->t_end = t_end;
    /*  Posts still unanswered when we gave up count as failed. */
    for (int i = 0; i < pool; i++) {
        if (slots[i].busy) {
            st->sent++;
            st->failed++;
            s_status[slots[i].k] = POST_FAILED;
            curl_multi_remove_handle (m, slots[i].easy);
        }
        curl_easy_cleanup (slots[i].easy);
    }
    curl_multi_cleanup (m);
    free (slots);
    free (idle);
    atomic_store (&s_poster_cpu_us, s_cpu_self_us (RUSAGE_THREAD));
    atomic_store (&s_poster_done, 1);
    return NULL;
}

static int
s_poster_finished (void *arg)
{
    (void) arg;
    return atomic_load (&s_poster_done);
}

static int
s_all_delivered (void *arg)
{
    step_t *st = arg;
    return st->deliveries >= st->accepted * MEMBERS;
}

/*  Counts what never arrived: every accepted post must reach all MEMBERS
    sockets of its group. */
static void
s_count_lost (step_t *st)
{
    for (uint64_t k = st->first; k < st->end; k++) {
        int got = __builtin_popcount (s_mask[k]);
        if (s_status[k] == POST_ACCEPTED && got < MEMBERS) {
            if (st->lost_msgs < 5)
                st->lost_example[st->lost_msgs] = k;
            st->lost_msgs++;
            st->lost_deliveries += (uint64_t) (MEMBERS - got);
        }
        else if (s_status[k] != POST_ACCEPTED && got)
            st->unacked_delivered++;
    }
}

/*  A poster thread of its own for the step (its CPU time starts at 0);
    this thread receives until it is done and the last deliveries came. */
static int
s_step_gateway (step_t *st)
{
    s_step = st;
    atomic_store (&s_poster_done, 0);
    atomic_store (&s_poster_cpu_us, 0);
    st->cpu0 = s_cpu_mark ();
    st->t0 = s_now_ns () + 20000000;
    /*  Until the poster is done, every post from here on is this step's. */
    st->first = s_next_post;
    st->end = UINT64_MAX;
    pthread_t thread;
    if (pthread_create (&thread, NULL, s_poster, st)) {
        s_step = NULL;
        return -1;
    }
    s_pump (s_poster_finished, NULL, INT64_MAX);
    pthread_join (thread, NULL);
    st->end = s_next_post;
    int64_t t = s_now_ns ();
    s_pump (s_all_delivered, st, t + (int64_t) DRAIN_MS * 1000000);
    st->drain_s = s_secs_since (t);
    st->cpu1 = s_cpu_mark ();
    s_count_lost (st);
    s_step = NULL;
    return s_interrupted ? -1 : 0;
}

/* --- the report --- */

static int
s_cmp_u32 (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}

/*  Percentile p (0..1) in milliseconds of a sorted array. */
static double
s_pct (const uint32_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    return (double) v[(size_t) ((double) (n - 1) * p)] / 1000.0;
}

static void
s_sort (uint32_t *v, size_t n)
{
    qsort (v, n, sizeof *v, s_cmp_u32);
}

static void
s_table_header (const char *sender)
{
    printf ("  %-14s %8s %9s %11s %11s | %24s | %15s | %15s\n", "step", "offered", "accepted",
            "delivered", "", "all deliveries, ms", "first, ms", sender);
    printf ("  %-14s %8s %9s %11s %11s | %7s %7s %8s %8s | %7s %7s | %7s %7s\n", "", "msg/s",
            "msg/s", "/s", "lost/dup", "p50", "p90", "p99", "max", "p50", "p99", "p50", "p99");
}

static void
s_table_row (step_t *st)
{
    double secs = st->seconds;
    double delivered_window = 0;
    int64_t window_buckets = (int64_t) (secs * 10);
    for (int64_t b = 0; b < window_buckets && b < BUCKETS; b++)
        delivered_window += (double) st->buckets[b];
    s_sort (st->all_us, st->n_all);
    s_sort (st->first_us, st->n_first);
    s_sort (st->post_us, st->n_post);
    char offered[16], lostdup[32];
    if (st->rate > 0)
        snprintf (offered, sizeof offered, "%.0f", st->rate);
    else
        snprintf (offered, sizeof offered, "max");
    snprintf (lostdup, sizeof lostdup, "%llu/%llu", (unsigned long long) st->lost_msgs,
              (unsigned long long) st->dup);
    char post[32] = "      -       -";
    if (st->n_post)
        snprintf (post, sizeof post, "%7.2f %7.2f", s_pct (st->post_us, st->n_post, 0.5),
                  s_pct (st->post_us, st->n_post, 0.99));
    printf ("  %-14s %8s %9.0f %11.0f %11s | %7.2f %7.2f %8.2f %8.1f | %7.2f %7.2f | %s\n",
            st->name, offered, (double) st->accepted / secs, delivered_window / secs, lostdup,
            s_pct (st->all_us, st->n_all, 0.5), s_pct (st->all_us, st->n_all, 0.9),
            s_pct (st->all_us, st->n_all, 0.99),
            st->n_all ? (double) st->all_us[st->n_all - 1] / 1000.0 : 0,
            s_pct (st->first_us, st->n_first, 0.5), s_pct (st->first_us, st->n_first, 0.99), post);
}

/*  What else happened in a step, when anything did. */
static void
s_step_notes (step_t *st, const char *unit)
{
    printf ("  %-14s %llu %s sent in %.1f s, %llu accepted, %llu deliveries (%d each expected)",
            st->name, (unsigned long long) st->sent, unit, st->seconds,
            (unsigned long long) st->accepted, (unsigned long long) st->deliveries, MEMBERS);
    double slip_max = 0;
    if (st->n_slip) {
        s_sort (st->slip_us, st->n_slip);
        slip_max = (double) st->slip_us[st->n_slip - 1] / 1000.0;
        printf ("; sending slipped p99 %.2f ms, max %.1f ms", s_pct (st->slip_us, st->n_slip, 0.99),
                slip_max);
    }
    printf ("; drained in %.1f s\n", st->drain_s);
    if (st->rate > 0 && (double) st->accepted < 0.97 * st->rate * st->seconds)
        printf ("    the offered rate was NOT sustained: %.0f/s accepted; posts waited up to %.2f s"
                " for one of the\n    %d connections, a wait the latencies above leave out"
                " (they count from sending)\n",
                (double) st->accepted / st->seconds, slip_max / 1000.0, POST_POOL);
    else if (slip_max > 100)
        printf ("    the rate was kept, but at times posts waited up to %.2f s for one of the %d"
                " connections,\n    a wait the latencies above leave out (they count from"
                " sending)\n",
                slip_max / 1000.0, POST_POOL);
    if (st->refused || st->failed)
        printf ("    NOT ACCEPTED: %llu refused, %llu failed; the first: %ld %s\n",
                (unsigned long long) st->refused, (unsigned long long) st->failed, st->bad_status,
                st->bad_reply);
    if (st->lost_msgs) {
        printf ("    LOST: %llu messages missed %llu deliveries in all (a bug); e.g. posts",
                (unsigned long long) st->lost_msgs, (unsigned long long) st->lost_deliveries);
        for (uint64_t i = 0; i < st->lost_msgs && i < 5; i++)
            printf (" %llu (%d of %d)", (unsigned long long) st->lost_example[i],
                    __builtin_popcount (s_mask[st->lost_example[i]]), MEMBERS);
        printf ("\n");
    }
    if (st->dup || st->misrouted || st->unknown || st->unacked_delivered || st->stale)
        printf ("    duplicates %llu, to the wrong group %llu, unreadable %llu,"
                " delivered but not acknowledged %llu, late from an earlier step %llu\n",
                (unsigned long long) st->dup, (unsigned long long) st->misrouted,
                (unsigned long long) st->unknown, (unsigned long long) st->unacked_delivered,
                (unsigned long long) st->stale);
    if (st->resyncs || st->errors || st->closes)
        printf ("    resync frames %llu, error frames %llu, sockets closed by the server %llu\n",
                (unsigned long long) st->resyncs, (unsigned long long) st->errors,
                (unsigned long long) st->closes);
}

static double
s_pct_core (int64_t a, int64_t b, int64_t wall_ns)
{
    return wall_ns > 0 ? 100.0 * (double) (b - a) * 1000.0 / (double) wall_ns : 0;
}

/* --- the idle sockets --- */

static conn_t *s_idle;
static size_t s_n_idle;

static int
s_idle_phase (void)
{
    /*  Spread over the curators and students: first one socket each (the
        user's state comes with it: its chats, its index entries), then
        more of the same users up to the count. */
    size_t users = GROUPS + GROUPS * MEMBERS;
    s_n_idle = (size_t) s_b.idle;
    s_idle = calloc (s_n_idle, sizeof *s_idle);
    for (size_t i = 0; i < s_n_idle; i++) {
        size_t u = i % users;
        int g = (int) (u / (MEMBERS + 1)), m = (int) (u % (MEMBERS + 1));
        s_idle[i].user = m == MEMBERS ? &s_b.curators[g] : &s_b.students[g][m];
        s_idle[i].group = g;
        s_idle[i].member = -1;
    }
    size_t first = s_n_idle < users ? s_n_idle : users;
    long rss0 = s_proc_kb (s_b.gateway, "VmRSS");
    uint64_t presence0 = s_ws.presence, resync0 = s_ws.resyncs;
    double open1 = s_open (s_idle, first);
    int ready1 = s_ws.ready;
    double settle1 = s_settle ();
    long rss1 = s_proc_kb (s_b.gateway, "VmRSS");
    double open2 = s_open (s_idle + first, s_n_idle - first);
    int ready2 = s_ws.ready;
    double settle2 = s_settle ();
    long rss2 = s_proc_kb (s_b.gateway, "VmRSS");
    long hwm = s_proc_kb (s_b.gateway, "VmHWM");
    uint64_t presence = s_ws.presence - presence0, resyncs = s_ws.resyncs - resync0;
    s_close_all (s_idle, s_n_idle);
    s_settle ();
    long rss3 = s_proc_kb (s_b.gateway, "VmRSS");

    printf ("\nidle WebSockets: %zu sockets over the %zu curators and students (one each, then"
            " more of\n  the same users), signed in with the Authorization header, then"
            " sending nothing:\n",
            s_n_idle, users);
    printf ("  signed in: %d of %zu in %.1f s, then %d of %zu in %.1f s more (%d handshakes"
            " at a time);\n  %d failed%s%s\n",
            ready1, first, open1, ready2, s_n_idle, open2, CONNECTS_IN_FLIGHT, s_ws.failed,
            s_ws.first_error[0] ? ", the first: " : "", s_ws.first_error);
    printf ("  while they opened: %llu presence frames to them (settled %.1f s and %.1f s after),"
            " %llu resync frames\n",
            (unsigned long long) presence, settle1, settle2, (unsigned long long) resyncs);
    printf ("  gateway VmRSS: %ld KiB before; %ld KiB with %zu sockets; %ld KiB with %zu;"
            " peak %ld KiB;\n  %ld KiB after closing them all\n",
            rss0, rss1, first, rss2, s_n_idle, hwm, rss3);
    if (ready2 > 0)
        printf ("  per socket: %.1f KiB over all %d; %.1f KiB for a user's first socket,"
                " %.1f KiB for each further one\n",
                (double) (rss2 - rss0) / ready2, ready2,
                ready1 ? (double) (rss1 - rss0) / ready1 : 0,
                ready2 > ready1 ? (double) (rss2 - rss1) / (ready2 - ready1) : 0);
    return ready2 == (int) s_n_idle ? 0 : -1;
}

/* --- the gateway runs --- */

static conn_t s_members[GROUPS * MEMBERS];

/*  Over 85 % of a core in one thread of this process: that thread may be
    what limits the step rather than what it measures. */
static const char *
s_bound (double pct)
{
    return pct > 85 ? "  <- the generator may be the limit here" : "";
}

static void
s_cpu_line (step_t *st, int floor)
{
    int64_t wall = st->cpu1.at - st->cpu0.at;
    double poster = s_pct_core (st->cpu0.poster, st->cpu1.poster, wall);
    double receiver = s_pct_core (st->cpu0.receiver, st->cpu1.receiver, wall);
    if (floor)
        printf ("  %-14s generator %5.1f %%, redis-server %5.1f %%  (%.1f s)%s\n", st->name,
                s_pct_core (st->cpu0.self, st->cpu1.self, wall),
                s_pct_core (st->cpu0.floor, st->cpu1.floor, wall), (double) wall / 1e9,
                s_bound (receiver));
    else
        printf ("  %-14s generator %5.1f %% (posting %5.1f, receiving %5.1f), gateway %5.1f %%,"
                " chat %5.1f %%, broker %5.1f %%, redis %5.1f %%, identity %4.1f %%  (%.1f s)%s\n",
                st->name, s_pct_core (st->cpu0.self, st->cpu1.self, wall), poster, receiver,
                s_pct_core (st->cpu0.gateway, st->cpu1.gateway, wall),
                s_pct_core (st->cpu0.chat, st->cpu1.chat, wall),
                s_pct_core (st->cpu0.broker, st->cpu1.broker, wall),
                s_pct_core (st->cpu0.redis, st->cpu1.redis, wall),
                s_pct_core (st->cpu0.identity, st->cpu1.identity, wall), (double) wall / 1e9,
                s_bound (poster > receiver ? poster : receiver));
}

#define STEPS 5
static step_t s_steps[STEPS] = {
    {.name = "warm-up", .rate = 100, .seconds = 3, .report = 0},
    {.name = "500/s", .rate = 500, .report = 1},
    {.name = "2000/s", .rate = 2000, .report = 1},
    {.name = "max (closed)", .rate = 0, .report = 1},
    {.name = "500/s +idle", .rate = 500, .report = 1, .with_idle = 1},
};

static double s_admin_open_s;
static int s_admin_opened;
static long s_admin_rss;

/*  The idle sockets again, all of the org's admin this time: a member of
    no group chat, so that they get none of the step's messages and stay
    idle while the member sockets are busy. */
static int
s_open_idle_admin (void)
{
    memset (s_idle, 0, s_n_idle * sizeof *s_idle);
    for (size_t i = 0; i < s_n_idle; i++) {
        s_idle[i].user = &s_b.admin;
        s_idle[i].member = -1;
    }
    int ready0 = s_ws.ready;
    s_admin_open_s = s_open (s_idle, s_n_idle);
    s_settle ();
    s_admin_opened = s_ws.ready - ready0;
    s_admin_rss = s_proc_kb (s_b.gateway, "VmRSS");
    return s_admin_opened == (int) s_n_idle ? 0 : -1;
}

static step_t s_floor[3] = {
    {.name = "500/s", .rate = 500, .report = 1},
    {.name = "2000/s", .rate = 2000, .report = 1},
    {.name = "max (closed)", .rate = 0, .report = 1},
};

static int
s_gateway_phase (void)
{
    for (int g = 0; g < GROUPS; g++)
        for (int m = 0; m < MEMBERS; m++) {
            conn_t *c = &s_members[g * MEMBERS + m];
            memset (c, 0, sizeof *c);
            c->user = &s_b.students[g][m];
            c->group = g;
            c->member = m;
        }
    int failed0 = s_ws.failed;
    uint64_t presence0 = s_ws.presence, resync0 = s_ws.resyncs;
    double open_s = s_open (s_members, GROUPS * MEMBERS);
    double settle_s = s_settle ();
    printf ("\nthrough the gateway: %d member sockets signed in in %.1f s (%d failed), quiet"
            " %.1f s later;\n  meanwhile %llu presence frames and %llu resync frames came to them\n",
            s_ws.ready, open_s, s_ws.failed - failed0, settle_s,
            (unsigned long long) (s_ws.presence - presence0),
            (unsigned long long) (s_ws.resyncs - resync0));
    if (s_ws.ready != GROUPS * MEMBERS)
        return -1;
    printf ("workload: every student holds one WebSocket (GET /v1/ws); students post\n"
            "  POST /v1/chats/{chat}/messages {\"text\"} over HTTP/1.1 keep-alive (libcurl multi\n"
            "  in a thread of its own, up to %d connections), round robin over the %d groups and\n"
            "  their members; a message goes to the %d student sockets of its group (its %dst\n"
            "  member, the curator, has no socket). Open loop at the offered rate; \"max\" keeps\n"
            "  %d posts in flight. %.0f s per step, after a %.0f s warm-up at %.0f/s. Latency:\n"
            "  from the send time stamped in the text to the frame's arrival at each socket\n"
            "  (one monotonic clock, one process); \"first\" is a message's first arrival;\n"
            "  POST is the HTTP round trip of the post. delivered/s: arrivals within the step.\n"
            "  \"+idle\": the same with %zu more sockets open, of a user in no group chat.\n"
            "  Rate limits raised: %s\n",
            POST_POOL, GROUPS, MEMBERS, MEMBERS + 1, WINDOW, s_b.seconds, s_steps[0].seconds,
            s_steps[0].rate, s_n_idle, s_b.limits ? s_b.limits : "(as configured)");
    int rc = 0, steps = 0;
    for (int i = 0; i < STEPS && rc == 0; i++) {
        step_t *st = &s_steps[i];
        if (st->with_idle && (!s_n_idle || (rc = s_open_idle_admin ())))
            break;
        if (st->report)
            st->seconds = s_b.seconds;
        s_step_alloc (st);
        rc = s_step_gateway (st);
        if (i == 0)
            s_table_header ("POST, ms");
        if (st->report)
            s_table_row (st);
        steps = i + 1;
        if (st->with_idle)
            s_close_all (s_idle, s_n_idle);
    }
    printf ("\n");
    for (int i = 1; i < steps; i++)
        s_step_notes (&s_steps[i], "posts");
    if (s_admin_opened)
        printf ("  (+idle: %d sockets of the admin signed in in %.1f s; gateway VmRSS %ld KiB with"
                " them)\n",
                s_admin_opened, s_admin_open_s, s_admin_rss);
    printf ("cpu, %% of one core, over each step and its drain (%ld cores):\n",
            sysconf (_SC_NPROCESSORS_ONLN));
    for (int i = 1; i < steps; i++)
        s_cpu_line (&s_steps[i], 0);
    printf ("frames to every socket of the run so far: %llu (%llu presence, %llu resync, %llu error,"
            " %llu other than messages);\n  sockets the server closed: %llu%s%s\n",
            (unsigned long long) s_ws.frames, (unsigned long long) s_ws.presence,
            (unsigned long long) s_ws.resyncs, (unsigned long long) s_ws.errors,
            (unsigned long long) s_ws.other, (unsigned long long) s_ws.server_closes,
            s_ws.first_close[0] ? ", the first: " : "", s_ws.first_close);
    if (s_ws.errors)
        printf ("  the first error frame: %s\n", s_ws.first_error_frame);
    s_close_all (s_members, GROUPS * MEMBERS);
    return rc;
}

/* --- the floor: the same fan-out through a bare Redis --- */

typedef struct {
    int fd;
    int group, member;          /* member -1: the publisher */
    redisReader *reader;
    char *out;                  /* the publisher's unsent bytes */
    size_t out_len, out_cap, out_off;
    int subscribed;
} rconn_t;

static int
s_tcp_connect (const char *host, int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons ((uint16_t) port)};
    inet_pton (AF_INET, host, &a.sin_addr);
    if (fd < 0 || connect (fd, (struct sockaddr *) &a, sizeof a)) {
        if (fd >= 0)
            close (fd);
        return -1;
    }
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void
s_rconn_out (rconn_t *r, const char *bytes, size_t len)
{
    if (r->out_len + len > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 65536;
        while (cap < r->out_len + len)
            cap *= 2;
        r->out = realloc (r->out, cap);
        r->out_cap = cap;
    }
    memcpy (r->out + r->out_len, bytes, len);
    r->out_len += len;
}

static int
s_rconn_flush (rconn_t *r)
{
    while (r->out_off < r->out_len) {
        ssize_t n = write (r->fd, r->out + r->out_off, r->out_len - r->out_off);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        r->out_off += (size_t) n;
    }
    r->out_len = r->out_off = 0;
    return 0;
}

typedef struct {
    rconn_t *subs;
    size_t n_subs;
    rconn_t pub;
    int ep;
    uint64_t replies, short_replies;   /* PUBLISH answered; with fewer than MEMBERS receivers */
    uint64_t reply_k;           /* the post the next reply answers (they come in order) */
    int subscribed;
} floor_t;

/*  Reads what arrived on `r` and accounts for it. -1 when it closed. */
static int
s_floor_read (floor_t *fl, rconn_t *r, step_t *st, int64_t *in_flight)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read (r->fd, buf, sizeof buf);
        if (n == 0)
            return -1;
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        int64_t now = s_now_ns ();
        redisReaderFeed (r->reader, buf, (size_t) n);
        void *reply = NULL;
        while (redisReaderGetReply (r->reader, &reply) == REDIS_OK && reply) {
            redisReply *rr = reply;
            if (r->member < 0) {
                uint64_t k = fl->reply_k++;
                int ok = rr->type == REDIS_REPLY_INTEGER;
                fl->replies++;
                (*in_flight)--;
                if (k < MAX_POSTS)
                    s_status[k] = ok ? POST_ACCEPTED : POST_REFUSED;
                if (st) {
                    st->sent++;
                    if (ok)
                        st->accepted++;
                    else
                        st->refused++;
                }
                if (ok && rr->integer < MEMBERS)
                    fl->short_replies++;
            }
            else if (rr->type == REDIS_REPLY_ARRAY && rr->elements == 3
                     && rr->element[0]->type == REDIS_REPLY_STRING) {
                if (strcmp (rr->element[0]->str, "message") == 0) {
                    const char *p = rr->element[2]->str;
                    if (strncmp (p, "pb:", 3) == 0)
                        s_delivered (p + 3, rr->element[2]->len - 3, r->group, r->member, now);
                }
                else if (strcmp (rr->element[0]->str, "subscribe") == 0 && !r->subscribed) {
                    r->subscribed = 1;
                    fl->subscribed++;
                }
            }
            freeReplyObject (reply);
            reply = NULL;
        }
    }
}

static void
s_floor_publish (floor_t *fl, uint64_t k, int64_t now)
{
    char channel[16], payload[64];
    snprintf (channel, sizeof channel, "g%d", (int) (k % GROUPS));
    snprintf (payload, sizeof payload, "pb:%llu:%lld", (unsigned long long) k, (long long) now);
    char *cmd = NULL;
    int len = redisFormatCommand (&cmd, "PUBLISH %s %s", channel, payload);
    if (len > 0)
        s_rconn_out (&fl->pub, cmd, (size_t) len);
    free (cmd);
}

/*  One step of the floor: publishes at the step's rate (or WINDOW in
    flight) and reads every subscriber, all in this thread. */
static void
s_floor_step (floor_t *fl, step_t *st)
{
    s_step = st;
    st->cpu0 = s_cpu_mark ();
    st->t0 = s_now_ns () + 20000000;
    st->first = s_next_post;
    st->end = UINT64_MAX;
    int64_t t_end = st->t0 + (int64_t) (st->seconds * 1e9);
    int64_t drain_until = 0;
    double interval = st->rate > 0 ? 1e9 / st->rate : 0;
    uint64_t issued = 0;
    int64_t in_flight = 0;
    struct epoll_event evs[256];
    for (;;) {
        int64_t now = s_now_ns ();
        int sending = now < t_end && s_next_post < MAX_POSTS && !s_interrupted;
        if (sending) {
            if (st->rate > 0)
                for (;;) {
                    int64_t due = st->t0 + (int64_t) ((double) issued * interval);
                    if (due > now || due >= t_end || s_next_post >= MAX_POSTS)
                        break;
                    now = s_now_ns ();
                    st->slip_us[st->n_slip++] = (uint32_t) ((now - due) / 1000);
                    s_floor_publish (fl, s_next_post++, now);
                    issued++;
                    in_flight++;
                }
            else
                while (in_flight < WINDOW && s_next_post < MAX_POSTS) {
                    s_floor_publish (fl, s_next_post++, s_now_ns ());
                    issued++;
                    in_flight++;
                }
            if (s_rconn_flush (&fl->pub))
                break;
        }
        else {
            if (!drain_until) {
                st->end = s_next_post;
                st->t_end = t_end;
                drain_until = now + (int64_t) DRAIN_MS * 1000000;
            }
            if (now >= drain_until || (in_flight == 0 && s_all_delivered (st)))
                break;
        }
        int timeout = 10;
        if (sending && st->rate > 0) {
            int64_t due = st->t0 + (int64_t) ((double) issued * interval);
            int64_t ms = (due - now + 999999) / 1000000;
            timeout = ms < 0 ? 0 : ms > 10 ? 10 : (int) ms;
        }
        int n = epoll_wait (fl->ep, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            rconn_t *r = evs[i].data.ptr;
            if (s_floor_read (fl, r, st, &in_flight)) {
                epoll_ctl (fl->ep, EPOLL_CTL_DEL, r->fd, NULL);
                st->closes++;
            }
        }
    }
    st->drain_s = (double) (s_now_ns () - t_end) / 1e9;
    st->cpu1 = s_cpu_mark ();
    s_count_lost (st);
    s_step = NULL;
}

static int
s_floor_phase (void)
{
    floor_t fl;
    memset (&fl, 0, sizeof fl);
    fl.ep = epoll_create1 (0);
    fl.n_subs = GROUPS * MEMBERS;
    fl.subs = calloc (fl.n_subs, sizeof *fl.subs);
    int rc = -1;
    fl.pub.fd = s_tcp_connect (s_b.redis_host, s_b.redis_port);
    fl.pub.member = -1;
    fl.pub.reader = redisReaderCreate ();
    fl.reply_k = s_next_post;
    if (fl.pub.fd < 0) {
        printf ("chat_bench: cannot connect to Redis at %s:%d\n", s_b.redis_host, s_b.redis_port);
        goto out;
    }
    for (size_t i = 0; i < fl.n_subs; i++) {
        rconn_t *r = &fl.subs[i];
        r->group = (int) (i / MEMBERS);
        r->member = (int) (i % MEMBERS);
        r->reader = redisReaderCreate ();
        r->fd = s_tcp_connect (s_b.redis_host, s_b.redis_port);
        if (r->fd < 0) {
            printf ("chat_bench: subscriber %zu cannot connect to Redis: %s\n", i, strerror (errno));
            goto out;
        }
        char *cmd = NULL;
        char channel[16];
        snprintf (channel, sizeof channel, "g%d", r->group);
        int len = redisFormatCommand (&cmd, "SUBSCRIBE %s", channel);
        int ok = len > 0 && write (r->fd, cmd, (size_t) len) == len;
        free (cmd);
        if (!ok)
            goto out;
    }
    for (size_t i = 0; i <= fl.n_subs; i++) {
        rconn_t *r = i < fl.n_subs ? &fl.subs[i] : &fl.pub;
        fcntl (r->fd, F_SETFL, fcntl (r->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = r};
        epoll_ctl (fl.ep, EPOLL_CTL_ADD, r->fd, &ev);
    }
    int64_t deadline = s_now_ns () + 10 * 1000000000LL;
    int64_t none = 0;
    while (fl.subscribed < (int) fl.n_subs && s_now_ns () < deadline && !s_interrupted) {
        struct epoll_event evs[256];
        int n = epoll_wait (fl.ep, evs, 256, 100);
        for (int i = 0; i < n; i++)
            s_floor_read (&fl, evs[i].data.ptr, NULL, &none);
    }
    if (fl.subscribed < (int) fl.n_subs) {
        printf ("chat_bench: %d of %zu Redis subscriptions confirmed\n", fl.subscribed, fl.n_subs);
        goto out;
    }
    printf ("\nthe floor: the same fan-out through a bare Redis (redis-server %s:%d, no"
            " persistence,\n  started for this): %d channels x %d subscriber connections, one"
            " publisher connection\n  sending PUBLISH with the same stamped text, everything in"
            " one thread of this process\n  (epoll; replies parsed by hiredis' reader). Same"
            " rates; \"max\" keeps %d PUBLISH in flight.\n",
            s_b.redis_host, s_b.redis_port, GROUPS, MEMBERS, WINDOW);
    for (int i = 0; i < 3 && !s_interrupted; i++) {
        step_t *st = &s_floor[i];
        st->seconds = s_b.seconds;
        s_step_alloc (st);
        s_floor_step (&fl, st);
        if (i == 0)
            s_table_header ("");
        s_table_row (st);
    }
    printf ("\n");
    for (int i = 0; i < 3; i++)
        s_step_notes (&s_floor[i], "PUBLISH");
    if (fl.short_replies)
        printf ("  PUBLISH answered with fewer than %d receivers %llu times\n", MEMBERS,
                (unsigned long long) fl.short_replies);
    printf ("cpu, %% of one core:\n");
    for (int i = 0; i < 3; i++)
        s_cpu_line (&s_floor[i], 1);
    rc = s_interrupted ? -1 : 0;
out:
    for (size_t i = 0; i <= fl.n_subs; i++) {
        rconn_t *r = i < fl.n_subs ? &fl.subs[i] : &fl.pub;
        if (r->fd > 0)
            close (r->fd);
        if (r->reader)
            redisReaderFree (r->reader);
        free (r->out);
    }
    free (fl.subs);
    close (fl.ep);
    return rc;
}

/* --- the run --- */

static void
s_on_signal (int sig)
{
    (void) sig;
    s_interrupted = 1;
}

/*  Enough descriptors for every socket: the soft limit up to the hard one.
    The idle count shrinks (and says so) when even that is too few. */
static void
s_raise_nofile (void)
{
    struct rlimit rl;
    if (getrlimit (RLIMIT_NOFILE, &rl))
        return;
    rlim_t want = (rlim_t) (s_b.idle + GROUPS * MEMBERS * 2 + POST_POOL + 256);
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        setrlimit (RLIMIT_NOFILE, &rl);
        getrlimit (RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want) {
        long room = (long) rl.rlim_cur - (GROUPS * MEMBERS * 2 + POST_POOL + 256);
        int idle = room > 0 ? (int) room : 0;
        printf ("chat_bench: only %llu descriptors allowed (hard limit): %d idle sockets instead"
                " of %d\n",
                (unsigned long long) rl.rlim_cur, idle, s_b.idle);
        s_b.idle = idle;
    }
}

static int
s_split_host (const char *hostport, char *host, size_t size, int *port)
{
    const char *colon = strrchr (hostport, ':');
    if (!colon || (size_t) (colon - hostport) >= size)
        return -1;
    memcpy (host, hostport, (size_t) (colon - hostport));
    host[colon - hostport] = 0;
    *port = atoi (colon + 1);
    return *port > 0 ? 0 : -1;
}

static void
s_loadavg (const char *when)
{
    double load[3];
    if (getloadavg (load, 3) == 3)
        printf ("load average %s: %.2f %.2f %.2f\n", when, load[0], load[1], load[2]);
}

int
main (int argc, char **argv)
{
    const char *url = NULL, *redis = NULL;
    s_b.seconds = 15;
    s_b.idle = IDLE_SOCKETS;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strcmp (argv[i], "--data") == 0 && i + 1 < argc)
            snprintf (s_b.data, sizeof s_b.data, "%s", argv[++i]);
        else if (strcmp (argv[i], "--redis") == 0 && i + 1 < argc)
            redis = argv[++i];
        else if (strcmp (argv[i], "--redis-pid") == 0 && i + 1 < argc)
            s_b.redis_pid = atoi (argv[++i]);
        else if (strcmp (argv[i], "--limits") == 0 && i + 1 < argc)
            s_b.limits = argv[++i];
        else if (strcmp (argv[i], "--seconds") == 0 && i + 1 < argc)
            s_b.seconds = atof (argv[++i]);
        else if (strcmp (argv[i], "--idle") == 0 && i + 1 < argc)
            s_b.idle = atoi (argv[++i]);
        else {
            url = NULL;
            break;
        }
    }
    if (!url || strncmp (url, "http://", 7) || !s_b.data[0] || !redis || s_b.seconds <= 0
        || s_b.seconds > 100 || s_b.idle < 0 || s_b.idle > IDLE_SOCKETS
        || s_split_host (url + 7, s_b.ws_host, sizeof s_b.ws_host, &s_b.ws_port)
        || s_split_host (redis, s_b.redis_host, sizeof s_b.redis_host, &s_b.redis_port)) {
        fprintf (stderr,
                 "usage: chat_bench --url http://127.0.0.1:PORT --data DIR --redis 127.0.0.1:PORT\n"
                 "         [--redis-pid PID] [--limits TEXT] [--seconds S (15, at most 100)]"
                 " [--idle N (5000)]\n"
                 "  DIR: the data directory of a stack scripts/run.sh started (sms.outbox,"
                 " run.pids);\n"
                 "  the Redis is a bare one for the floor. scripts/bench.sh starts both.\n");
        return 2;
    }
    snprintf (s_b.url, sizeof s_b.url, "%s", url);
    setvbuf (stdout, NULL, _IOLBF, 0);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);
    int64_t t_start = s_now_ns ();
    s_raise_nofile ();
    if (curl_global_init (CURL_GLOBAL_DEFAULT))
        return 1;
    s_mask = calloc (MAX_POSTS, sizeof *s_mask);
    s_status = calloc (MAX_POSTS, sizeof *s_status);
    if (s_read_pids ()) {
        fprintf (stderr, "chat_bench: no gateway pid in %s/run.pids\n", s_b.data);
        return 1;
    }

    printf ("== chat benchmark ==\n");
    char model[256] = "unknown", line[512];
    FILE *f = fopen ("/proc/cpuinfo", "r");
    while (f && fgets (line, sizeof line, f))
        if (strncmp (line, "model name", 10) == 0 && strchr (line, ':')) {
            snprintf (model, sizeof model, "%s", strchr (line, ':') + 2);
            model[strcspn (model, "\n")] = 0;
            break;
        }
    if (f)
        fclose (f);
    printf ("machine: %ld cores online (%s); libcurl %s, hiredis %d.%d.%d\n",
            sysconf (_SC_NPROCESSORS_ONLN), model, curl_version_info (CURLVERSION_NOW)->version, HIREDIS_MAJOR, HIREDIS_MINOR,
            HIREDIS_PATCH);
    s_loadavg ("at start");
    printf ("stack: scripts/run.sh at %s (gateway pid %d, at most %ld open files)\n", s_b.url,
            (int) s_b.gateway, s_open_files_limit (s_b.gateway));

    s_ws.ep = epoll_create1 (EPOLL_CLOEXEC);
    if (s_ws.ep < 0) {
        perror ("chat_bench: epoll_create1");
        return 1;
    }
    srand ((unsigned) getpid ());

    int rc = s_seed ();
    if (rc == 0 && s_b.idle > 0)
        rc = s_idle_phase ();
    if (rc == 0)
        rc = s_gateway_phase ();
    close (s_ws.ep);
    if (rc == 0)
        rc = s_floor_phase ();

    uint64_t lost = 0;
    for (int i = 0; i < STEPS; i++)
        lost += s_steps[i].lost_msgs + s_steps[i].dup + s_steps[i].misrouted;
    for (int i = 0; i < 3; i++)
        lost += s_floor[i].lost_msgs + s_floor[i].dup + s_floor[i].misrouted;
    for (int i = 0; i < STEPS; i++)
        s_step_free (&s_steps[i]);
    for (int i = 0; i < 3; i++)
        s_step_free (&s_floor[i]);
    for (int g = 0; g < GROUPS; g++)
        for (int m = 0; m < MEMBERS; m++)
            curl_slist_free_all (s_b.students[g][m].headers);
    free (s_idle);
    free (s_mask);
    free (s_status);
    curl_global_cleanup ();
    printf ("\n");
    s_loadavg ("at the end");
    printf ("chat benchmark took %.0f s%s\n", s_secs_since (t_start),
            rc ? " and FAILED (see above)"
               : lost ? " and LOST, DUPLICATED OR MISROUTED MESSAGES (see above)" : "");
    return rc || lost ? 1 : 0;
}
