/*  gw_ws: see gw_ws.h. The shape of it:

    - A new socket counts against its address's "ip" rate limit first;
      refused, it gets an error frame and 4029, and its token is never
      looked up.
    - A socket (ws_conn_t) waits for its token (header or first frame, 10 s
      at most), resolves it with gw_auth, and joins its user (ws_user_t):
      the users with signed-in sockets here, by id. Reading from the socket
      is paused while the token is checked, so frames sent right behind the
      auth frame are handled after it, in order.
    - An event names its recipients (a message's recipients, a chat's
      member ids, a member event's recipients, a read marker's or a
      session's user); each one found among the users here gets the frame
      on every socket. A frame is built once and shared by reference.
    - Each socket has a bounded queue of frames waiting to be written,
      several frames per writable callback while the kernel takes them
      whole (see s_writable). When a frame would overflow it, the
      queue is dropped and the socket owes one "resync" frame instead,
      listing the last message seq written to it per chat: a slow client
      costs bounded memory and learns what to fetch again. Presence frames
      are state, not history: once the queue is half full they are dropped
      instead, so that a burst of them (hundreds of users coming online at
      once, each one's presence going to every socket sharing a chat with
      them, an org's general channel included) never costs a client that
      keeps up a resync.
    - Users know their chats (chat.my_chats once when their first socket
      opens, then member and message events), and an index from chat to the
      users here who are in it lets a user's presence change reach the
      sockets of everyone here who shares a chat with them.
    - Three deadlines per socket: signing in (10 s after it opens), the
      next token check (every revalidate_s), and the next ping (ping_s
      after the last pong; a ping unanswered for as long again hangs up).
      Each kind has one interval for every socket, so a deadline set now
      is the latest of its kind: each kind is a list in deadline order,
      appended to and unlinked from in constant time, with one timer at
      its head. (A timer per socket, lws's or ours, is a sorted insert
      into lws's one timer list, walking past every other socket's.) */
#include "gw_ws.h"
#include "chat.pb-c.h"
#include "clock.h"
#include "codec.h"
#include "gw_auth.h"
#include "gw_http.h"
#include "gw_limit.h"
#include "gw_metrics.h"
#include "gw_peers.h"
#include "gw_presence.h"
#include "identity.pb-c.h"
#include "log.h"
#include "ulid.h"

#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#define AUTH_TIMEOUT_MS 10000
#define MAX_FRAME_IN (64 * 1024)        /* a client frame above this closes with 1009 */
#define MAX_DISCARD (1024 * 1024)       /* read past before that close; beyond, hang up */
#define MAX_TOKEN 1024
#define MAX_ID 64                       /* longest user, session or chat id kept */
#define MAX_CHATS 4096                  /* chats tracked per socket and per user */
#define MAX_CALLS 4                     /* typing lookups in flight per socket */
#define TYPING_EVERY_MS 1000            /* one typing notice per chat per second per socket */
#define FRAMES_PER_S 20                 /* client frames a socket may send per second... */
#define FRAMES_BURST 60                 /* ...with this burst */
#define MY_CHATS_PAGE 200
#define MY_CHATS_PAGES 5
#define REVOKED_KEEP 256                /* recently revoked sessions remembered */
#define TOLD_KEEP 64                    /* security reports remembered as told */
#define RECHECK_BATCH 200               /* tokens checked again per RECHECK_EVERY_MS */
#define RECHECK_EVERY_MS 100
#define REVOKED_KEEP_MS 60000
#define WRITES_PER_CALLBACK 32          /* frames written per writable callback at most */

enum { WS_AUTH_WAIT = 0, WS_AUTHING, WS_READY };

/*  A frame to send, shared by every socket it goes to. lws writes the
    WebSocket header into the LWS_PRE bytes before the text on each write;
    that header is the same for every socket (server frames are not
    masked and no extension is negotiated), so sharing is safe. */
typedef struct {
    int refs;
    int droppable;              /* presence: dropped rather than overflow a queue */
    uint64_t seq;               /* message.posted: the message's seq (for resync) */
    char chat_id[MAX_ID + 1];   /* and its chat */
    size_t len;
    unsigned char buf[];        /* LWS_PRE bytes, then the text */
} frame_t;

typedef struct qitem_t {
    frame_t *frame;
    struct qitem_t *next;
} qitem_t;

/*  What a socket remembers of one chat. */
typedef struct {
    uint64_t last_seq;          /* of the message frames written to it */
    int64_t typing_at;          /* the last typing notice it sent, monotonic ms */
} chat_state_t;

/*  A chat a user is known to be in (member) or to have left (not member:
    events still naming them are stale, see s_on_member). */
typedef struct {
    int member;
    void *handle;               /* the user's place in the index list of the chat */
} chat_ref_t;

typedef struct ws_conn_t ws_conn_t;
typedef struct ws_user_t ws_user_t;

typedef struct {
    char user_id[MAX_ID + 1];
    int64_t start_us;
} my_chats_ctx_t;

struct ws_user_t {
    char id[MAX_ID + 1];
    ws_conn_t *conns;           /* signed-in sockets here (next_of_user) */
    size_t n_conns;
    zhashx_t *chats;            /* chat id -> chat_ref_t */
    uint64_t stamp;             /* dedupes recipients within one push */
    uint64_t my_chats_call;
    my_chats_ctx_t *my_chats_ctx;
    int my_chats_pages;
};

typedef struct {
    uint64_t call;
    void *ctx;
} call_slot_t;

/*  A socket's place in one of the deadline lists (deadlines_t). */
typedef struct ws_due_t {
    struct ws_due_t *prev, *next;
    int64_t at_ms;              /* monotonic */
    int listed;
} ws_due_t;

struct ws_conn_t {
    uint64_t id;
    struct lws *wsi;
    int state;
    ws_user_t *user;            /* once signed in */
    ws_conn_t *next_of_user, *prev_of_user;
    Bus__Caller *caller;        /* malloc'd: calls made for this socket carry it */
    char *token;                /* to check again now and then; wiped when freed */
    char ip[64];
    char user_agent[256];
    char trace[ULID_LEN + 1];
    /* outgoing */
    qitem_t *head, *tail;
    size_t queued, queued_bytes;
    int resync;                 /* a resync frame is owed */
    int write_asked;            /* a writable callback is requested and not yet made */
    int close_code;             /* closing once the queue is written */
    char close_reason[100];
    /* incoming */
    char *rx;
    size_t rx_len, rx_cap;
    int discarding;             /* reading past a message too large, to its end */
    size_t discarded;
    double budget;
    int64_t budget_at, limited_said_at;
    zhashx_t *chats;            /* chat id -> chat_state_t, created on use */
    chat_state_t *last_state;   /* of the chat last asked for (s_chat_state) */
    char last_chat[MAX_ID + 1];
    call_slot_t calls[MAX_CALLS];
    ws_due_t auth_due;          /* signed in by then, or closed */
    ws_due_t check_due;         /* the token is checked again then */
    ws_due_t ping_due;          /* pinged then, or hung up if a ping is unanswered */
    int ping_owed;              /* a ping is to be written */
    int pong_awaited;           /* a ping went out and no pong came back yet */
    uint64_t frames_out, resyncs, dropped;
    int64_t opened_at;
};

typedef struct {
    ws_conn_t *conn;
} pss_t;

typedef void (due_fn) (ws_conn_t *c);

/*  Sockets waiting for one kind of deadline, soonest first. */
typedef struct {
    ws_due_t *head, *tail;
    int64_t interval_ms;
    size_t offset;              /* of the ws_due_t in ws_conn_t */
    due_fn *fire;               /* may free the socket */
    ev_timer timer;             /* at the head's deadline, or earlier */
} deadlines_t;

static struct {
    gw_t *gw;
    gw_ws_opts_t opts;
    int started;
    u64map_t *conns;            /* id -> ws_conn_t (async answers carry ids) */
    uint64_t next_id;
    zhashx_t *users;            /* user id -> ws_user_t */
    zhashx_t *index;            /* chat id -> zlistx_t of ws_user_t (users here in it) */
    uint64_t stamp;
    struct {
        char session_id[MAX_ID + 1];
        int64_t at;
    } revoked[REVOKED_KEEP];
    size_t revoked_next;
    /*  The last security reports told (event ids): an event fetched again
        after it came late is not told twice. */
    char told[TOLD_KEEP][MAX_ID + 1];
    size_t told_next;
    /*  Sockets whose token is to be checked again soon (gw_ws_recheck_all),
        RECHECK_BATCH at a time so that identity is not asked for every
        socket in the same moment. */
    uint64_t *recheck;
    size_t recheck_n, recheck_at;
    ev_timer recheck_timer;
    deadlines_t auth, check, ping;
    log_limit_t log;
} s_ws;

static void s_send (ws_conn_t *c, frame_t *f);

/* --- small helpers --- */

static int
s_id_ok (const char *id)
{
    if (!id || !*id)
        return 0;
    size_t n = 0;
    for (const char *p = id; *p; p++, n++)
        if (n >= MAX_ID
            || !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
                 || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

static void
s_free_item (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_destroy_list (void **item)
{
    zlistx_destroy ((zlistx_t **) item);
}

/*  A warning that clients can cause at any rate: limited, with the count
    of lines dropped since the last one. */
static void
s_log_limited (const char *trace, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_log_limited (const char *trace, const char *fmt, ...)
{
    unsigned long suppressed;
    if (!log_limit_allow (&s_ws.log, &suppressed))
        return;
    char text[256];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (text, sizeof text, fmt, ap);
    va_end (ap);
    log_msg (LOG_LEVEL_WARN, trace, "%s suppressed=%lu", text, suppressed);
}

/* --- deadlines --- */

static void
s_due_remove (deadlines_t *list, ws_due_t *due)
{
    if (!due->listed)
        return;
    if (due->prev)
        due->prev->next = due->next;
    else
        list->head = due->next;
    if (due->next)
        due->next->prev = due->prev;
    else
        list->tail = due->prev;
    due->prev = due->next = NULL;
    due->listed = 0;
}

/*  Sets the deadline to one interval from now: the tail of the list, as
    every deadline already there was set earlier. The timer, when armed,
    is at an earlier deadline; it finds this one when it fires. */
static void
s_due_set (deadlines_t *list, ws_due_t *due)
{
    s_due_remove (list, due);
    due->at_ms = clock_mono_ms () + list->interval_ms;
    due->prev = list->tail;
    due->next = NULL;
    if (list->tail)
        list->tail->next = due;
    else
        list->head = due;
    list->tail = due;
    due->listed = 1;
    if (!ev_is_active (&list->timer) && !s_ws.gw->stopping)
        gw_timer_after (s_ws.gw, &list->timer, list->interval_ms);
}

static void
s_due_timer (struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void) loop;
    (void) revents;
    deadlines_t *list = timer->data;
    int64_t now = clock_mono_ms ();
    while (list->head && list->head->at_ms <= now && !s_ws.gw->stopping) {
        ws_due_t *due = list->head;
        s_due_remove (list, due);
        list->fire ((ws_conn_t *) ((char *) due - list->offset));
    }
    if (list->head && !s_ws.gw->stopping)
        gw_timer_after (s_ws.gw, &list->timer, list->head->at_ms - now);
}

static void
s_deadlines_init (deadlines_t *list, int64_t interval_ms, size_t offset, due_fn *fire)
{
    memset (list, 0, sizeof *list);
    list->interval_ms = interval_ms;
    list->offset = offset;
    list->fire = fire;
    ev_timer_init (&list->timer, s_due_timer, 0., 0.);
    list->timer.data = list;
}

/* --- frames --- */

/*  A frame from a JSON object (taken). NULL when out of memory. */
static frame_t *
s_frame_new (json_t *json)
{
    char *text = json ? json_dumps (json, JSON_COMPACT) : NULL;
    json_decref (json);
    if (!text)
        return NULL;
    size_t len = strlen (text);
    frame_t *f = malloc (sizeof *f + LWS_PRE + len);
    if (f) {
        f->refs = 1;
        f->droppable = 0;
        f->seq = 0;
        f->chat_id[0] = 0;
        f->len = len;
        memcpy (f->buf + LWS_PRE, text, len);
    }
    free (text);
    return f;
}

static void
s_frame_unref (frame_t **f_p)
{
    if (f_p && *f_p && --(*f_p)->refs == 0)
        free (*f_p);
    if (f_p)
        *f_p = NULL;
}

/* --- users and the chat index --- */

static ws_user_t *
s_user (const char *user_id)
{
    if (!user_id || !*user_id || !s_ws.users)
        return NULL;
    return zhashx_lookup (s_ws.users, user_id);
}

/*  Records that `user` is in the chat. A chat the user was seen leaving
    comes back only when `revive` (they were added again). Returns what
    s_chat_open_to would say after it, from the same lookup: an event
    goes through here for each of its recipients. */
static int
s_chat_join (ws_user_t *user, const char *chat_id, int revive)
{
    if (!s_id_ok (chat_id))
        return 1;
    chat_ref_t *ref = zhashx_lookup (user->chats, chat_id);
    if (ref && (ref->member || !revive))
        return ref->member;
    if (!ref) {
        if (zhashx_size (user->chats) >= MAX_CHATS)
            return 1;
        ref = calloc (1, sizeof *ref);
        if (!ref || zhashx_insert (user->chats, chat_id, ref)) {
            free (ref);
            return 1;
        }
    }
    zlistx_t *list = zhashx_lookup (s_ws.index, chat_id);
    if (!list) {
        list = zlistx_new ();
        if (!list)
            return 1;
        if (zhashx_insert (s_ws.index, chat_id, list)) {
            zlistx_destroy (&list);
            return 1;
        }
    }
    ref->handle = zlistx_add_end (list, user);
    ref->member = ref->handle != NULL;
    return 1;
}

static void
s_index_unlink (chat_ref_t *ref, const char *chat_id)
{
    if (!ref->member)
        return;
    zlistx_t *list = zhashx_lookup (s_ws.index, chat_id);
    if (list && ref->handle) {
        zlistx_delete (list, ref->handle);
        if (zlistx_size (list) == 0)
            zhashx_delete (s_ws.index, chat_id);
    }
    ref->member = 0;
    ref->handle = NULL;
}

/*  Records that `user` left the chat: out of the index, and marked so
    that stale events still naming them are not delivered. */
static void
s_chat_leave (ws_user_t *user, const char *chat_id)
{
    if (!s_id_ok (chat_id))
        return;
    chat_ref_t *ref = zhashx_lookup (user->chats, chat_id);
    if (!ref) {
        if (zhashx_size (user->chats) >= MAX_CHATS)
            return;
        ref = calloc (1, sizeof *ref);
        if (!ref || zhashx_insert (user->chats, chat_id, ref)) {
            free (ref);
            return;
        }
    }
    s_index_unlink (ref, chat_id);
}

/*  1 when events of this chat may go to `user` (they did not leave it). */
static int
s_chat_open_to (ws_user_t *user, const char *chat_id)
{
    chat_ref_t *ref = zhashx_lookup (user->chats, chat_id);
    return !ref || ref->member;
}

static void
s_send_user (ws_user_t *user, frame_t *f)
{
    for (ws_conn_t *c = user->conns; c; c = c->next_of_user)
        s_send (c, f);
}

static void
s_user_free (ws_user_t *user)
{
    if (user->my_chats_call) {
        bus_client_cancel (s_ws.gw->bus, user->my_chats_call);
        free (user->my_chats_ctx);
    }
    for (chat_ref_t *ref = zhashx_first (user->chats); ref; ref = zhashx_next (user->chats))
        s_index_unlink (ref, (const char *) zhashx_cursor (user->chats));
    zhashx_destroy (&user->chats);
    zhashx_delete (s_ws.users, user->id);
    free (user);
}

/*  The chats `user` is known to be in, as a JSON array of ids. */
static json_t *
s_member_chats (ws_user_t *user)
{
    json_t *chats = json_array ();
    for (chat_ref_t *ref = zhashx_first (user->chats); chats && ref; ref = zhashx_next (user->chats))
        if (ref->member)
            json_array_append_new (chats, json_string ((const char *) zhashx_cursor (user->chats)));
    return chats;
}

/*  Tells everyone here who shares one of `chats` with the user that they
    came online or went offline (not the user's own sockets). Users here
    whose chats are not known yet (their chat.my_chats has not answered)
    are missed; the presence endpoint answers them. */
static void
s_presence_deliver (const char *user_id, int online, int64_t seen_ms, const json_t *chats)
{
    if (s_ws.gw->stopping || json_array_size (chats) == 0)
        return;
    json_t *seen = json_null ();
    if (!online) {
        char at[40];
        clock_format_rfc3339 (seen_ms - seen_ms % 1000, at, sizeof at);
        seen = json_string (at);
    }
    frame_t *f = s_frame_new (json_pack ("{s:s, s:s, s:b, s:o}", "type", "presence", "user_id",
                                         user_id, "online", online, "last_seen_at", seen));
    if (!f)
        return;
    f->droppable = 1;
    uint64_t stamp = ++s_ws.stamp;
    ws_user_t *self = s_user (user_id);
    if (self)
        self->stamp = stamp;
    size_t i;
    const json_t *item;
    json_array_foreach (chats, i, item) {
        const char *chat_id = json_string_value (item);
        zlistx_t *list = chat_id ? zhashx_lookup (s_ws.index, chat_id) : NULL;
        for (ws_user_t *other = list ? zlistx_first (list) : NULL; other;
             other = zlistx_next (list)) {
            if (other->stamp == stamp)
                continue;
            other->stamp = stamp;
            s_send_user (other, f);
        }
    }
    s_frame_unref (&f);
}

/*  The same here and on every other gateway. `chats` is taken. */
static void
s_presence_tell (const char *user_id, int online, int64_t seen_ms, json_t *chats)
{
    if (!chats)
        return;
    s_presence_deliver (user_id, online, seen_ms, chats);
    if (json_array_size (chats) == 0 || s_ws.gw->stopping) {
        json_decref (chats);
        return;
    }
    gw_peers_publish (s_ws.gw, json_pack ("{s:s, s:s, s:b, s:I, s:o}", "type", "presence",
                                          "user_id", user_id, "online", online, "last_seen_at",
                                          (json_int_t) seen_ms, "chats", chats));
}

/*  A user's last socket here closed; told once Redis says whether another
    gateway still holds them. */
typedef struct {
    char user_id[MAX_ID + 1];
    int64_t seen_ms;
    json_t *chats;
} offline_note_t;

static void
s_offline_done (gw_t *gw, int gone, void *arg)
{
    offline_note_t *note = arg;
    ws_user_t *user = s_user (note->user_id);
    /*  Not when they are back here meanwhile, nor elsewhere, nor when
        Redis could not say (gone -1). */
    if (gone == 1 && !gw->stopping && (!user || user->n_conns == 0))
        s_presence_tell (note->user_id, 0, note->seen_ms, note->chats);
    else
        json_decref (note->chats);
    free (note);
}

/* --- the user's chats (chat.my_chats) --- */

static void s_my_chats (ws_user_t *user, const Bus__Caller *caller, const char *cursor);

static void
s_my_chats_done (void *arg, const Bus__Reply *reply)
{
    my_chats_ctx_t *ctx = arg;
    gw_metrics_bus (s_ws.gw->metrics, "chat.my_chats", reply->status,
                    clock_mono_us () - ctx->start_us);
    ws_user_t *user = s_user (ctx->user_id);
    if (!user || user->my_chats_ctx != ctx) {
        free (ctx);
        return;
    }
    user->my_chats_call = 0;
    user->my_chats_ctx = NULL;
    free (ctx);
    if (reply->status == ST_OK) {
        Chat__ChatList *list = chat__chat_list__unpack (NULL, reply->body.len, reply->body.data);
        for (size_t i = 0; list && i < list->n_items; i++)
            if (list->items[i])
                s_chat_join (user, list->items[i]->id, 0);
        int more = list && list->_next_case == CHAT__CHAT_LIST___NEXT_NEXT && list->next
                   && *list->next && user->my_chats_pages < MY_CHATS_PAGES && user->conns;
        if (more)
            s_my_chats (user, user->conns->caller, list->next);
        if (list)
            chat__chat_list__free_unpacked (list, NULL);
        if (more)
            return;
    }
    else
        s_log_limited (NULL, "chat.my_chats failed user=%s status=%s", user->id,
                       status_name (reply->status));
    /*  What we know now is what we will know: tell the user's co-members
        they are here. */
    s_presence_tell (user->id, 1, 0, s_member_chats (user));
}

static void
s_my_chats (ws_user_t *user, const Bus__Caller *caller, const char *cursor)
{
    my_chats_ctx_t *ctx = calloc (1, sizeof *ctx);
    if (!ctx)
        return;
    snprintf (ctx->user_id, sizeof ctx->user_id, "%s", user->id);
    ctx->start_us = clock_mono_us ();
    Chat__MyChatsRequest msg = CHAT__MY_CHATS_REQUEST__INIT;
    msg.limit = MY_CHATS_PAGE;
    msg.cursor = (char *) (cursor ? cursor : "");
    bus_call_opts_t opts = {
        .timeout_ms = s_ws.gw->call_timeout_ms,
        .flags = BUS_CALL_RETRY,
        .caller = caller,
    };
    uint64_t call = bus_client_send (s_ws.gw->bus, "chat", "chat.my_chats", &msg.base, &opts,
                                     s_my_chats_done, ctx);
    if (!call) {
        free (ctx);
        return;
    }
    user->my_chats_call = call;
    user->my_chats_ctx = ctx;
    user->my_chats_pages++;
    gw_bus_kick (s_ws.gw);
}

static int
s_user_attach (ws_conn_t *c)
{
    const char *user_id = c->caller->user_id;
    ws_user_t *user = s_user (user_id);
    int first = !user;
    if (!user) {
        user = calloc (1, sizeof *user);
        if (!user)
            return -1;
        snprintf (user->id, sizeof user->id, "%s", user_id);
        user->chats = zhashx_new ();
        if (!user->chats || zhashx_insert (s_ws.users, user->id, user)) {
            zhashx_destroy (&user->chats);
            free (user);
            return -1;
        }
        zhashx_set_destructor (user->chats, s_free_item);
    }
    c->next_of_user = user->conns;
    c->prev_of_user = NULL;
    if (user->conns)
        user->conns->prev_of_user = c;
    user->conns = c;
    user->n_conns++;
    c->user = user;
    if (first) {
        gw_presence_online (s_ws.gw, user->id);
        s_my_chats (user, c->caller, NULL);
    }
    return 0;
}

static void
s_user_detach (ws_conn_t *c)
{
    ws_user_t *user = c->user;
    if (!user)
        return;
    if (c->prev_of_user)
        c->prev_of_user->next_of_user = c->next_of_user;
    else
        user->conns = c->next_of_user;
    if (c->next_of_user)
        c->next_of_user->prev_of_user = c->prev_of_user;
    c->user = NULL;
    if (--user->n_conns > 0)
        return;
    /*  Their last socket here. On shutdown the sweep will take them off
        (their entries simply expire): the Redis connection is going too. */
    if (!s_ws.gw->stopping) {
        offline_note_t *note = calloc (1, sizeof *note);
        if (note) {
            snprintf (note->user_id, sizeof note->user_id, "%s", user->id);
            note->seen_ms = clock_now_ms ();
            note->chats = s_member_chats (user);
            /*  Without Redis nobody can say whether another gateway holds
                the user: presence is unknown, and nothing is said. */
            if (gw_presence_offline (s_ws.gw, user->id, note->seen_ms, s_offline_done, note))
                s_offline_done (s_ws.gw, -1, note);
        }
    }
    s_user_free (user);
}

/* --- the outgoing queue --- */

/*  Asks lws for a writable callback, once: lws keeps the socket's POLLOUT
    on until it makes our callback (its own writes, a pong or the rest of
    a partial send, leave it on), so a request stands until s_writable
    runs, and asking again for every frame queued meanwhile would only
    cost a call into lws each. */
static void
s_want_write (ws_conn_t *c)
{
    if (c->wsi && !c->write_asked && !s_ws.gw->stopping) {
        c->write_asked = 1;
        lws_callback_on_writable (c->wsi);
    }
}

static void
s_queue_drop (ws_conn_t *c)
{
    while (c->head) {
        qitem_t *q = c->head;
        c->head = q->next;
        s_frame_unref (&q->frame);
        free (q);
    }
    c->tail = NULL;
    c->queued = 0;
    c->queued_bytes = 0;
}

/*  Queues a frame (a reference is taken). A frame that would overflow the
    queue drops it and the frame, and a resync is owed instead; a presence
    frame is dropped alone once the queue is half full (the presence
    endpoint has the truth). */
static void
s_send (ws_conn_t *c, frame_t *f)
{
    if (!f || c->close_code)
        return;
    if (f->droppable
        && (c->queued + 1 > (size_t) s_ws.opts.queue_frames / 2
            || c->queued_bytes + f->len > s_ws.opts.queue_bytes / 2)) {
        c->dropped++;
        return;
    }
    qitem_t *q = NULL;
    if (c->queued + 1 <= (size_t) s_ws.opts.queue_frames
        && c->queued_bytes + f->len <= s_ws.opts.queue_bytes)
        q = malloc (sizeof *q);
    if (!q) {
        s_queue_drop (c);
        if (!c->resync) {
            c->resync = 1;
            c->resyncs++;
            s_log_limited (c->trace, "ws client too slow: queue dropped, resync owed user=%s",
                           c->user ? c->user->id : "-");
        }
        s_want_write (c);
        return;
    }
    f->refs++;
    q->frame = f;
    q->next = NULL;
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    c->queued++;
    c->queued_bytes += f->len;
    s_want_write (c);
}

static void
s_send_json (ws_conn_t *c, json_t *json)
{
    frame_t *f = s_frame_new (json);
    s_send (c, f);
    s_frame_unref (&f);
}

/*  {"type": "error", "code", "message"[, "chat_id"]}: the socket stays open
    unless the caller closes it too. */
static void
s_error (ws_conn_t *c, const char *code, const char *message, const char *chat_id)
{
    json_t *json = json_pack ("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    if (json && chat_id)
        json_object_set_new (json, "chat_id", json_string (chat_id));
    s_send_json (c, json);
}

/*  Closes with `code` once what is queued has been written. */
static void
s_close (ws_conn_t *c, int code, const char *reason)
{
    if (c->close_code)
        return;
    c->close_code = code;
    snprintf (c->close_reason, sizeof c->close_reason, "%s", reason);
    s_want_write (c);
}

/*  The socket's state of one chat. Every message frame written asks for
    the state of its chat, mostly the chat of the frame before: that one
    is remembered (and forgotten when it leaves the table). */
static chat_state_t *
s_chat_state (ws_conn_t *c, const char *chat_id, int create)
{
    if (c->last_state && strcmp (c->last_chat, chat_id) == 0)
        return c->last_state;
    if (!c->chats) {
        if (!create)
            return NULL;
        c->chats = zhashx_new ();
        if (!c->chats)
            return NULL;
        zhashx_set_destructor (c->chats, s_free_item);
    }
    chat_state_t *st = zhashx_lookup (c->chats, chat_id);
    if (!st && create && zhashx_size (c->chats) < MAX_CHATS) {
        st = calloc (1, sizeof *st);
        if (st && zhashx_insert (c->chats, chat_id, st)) {
            free (st);
            st = NULL;
        }
    }
    if (st && strlen (chat_id) < sizeof c->last_chat) {
        memcpy (c->last_chat, chat_id, strlen (chat_id) + 1);
        c->last_state = st;
    }
    return st;
}

static void
s_chat_state_forget (ws_conn_t *c, const char *chat_id)
{
    if (c->last_state && strcmp (c->last_chat, chat_id) == 0)
        c->last_state = NULL;
    if (c->chats)
        zhashx_delete (c->chats, chat_id);
}

/*  {"type": "resync", "chats": [{"chat_id", "last_seq"}]}: the last
    message seq written to this socket per chat; the client fetches what
    came after (and its chat list) again. */
static frame_t *
s_resync_frame (ws_conn_t *c)
{
    json_t *chats = json_array ();
    for (chat_state_t *st = c->chats ? zhashx_first (c->chats) : NULL; st;
         st = zhashx_next (c->chats))
        if (st->last_seq)
            json_array_append_new (chats, json_pack ("{s:s, s:I}", "chat_id",
                                                     (const char *) zhashx_cursor (c->chats),
                                                     "last_seq", (json_int_t) st->last_seq));
    return s_frame_new (json_pack ("{s:s, s:o}", "type", "resync", "chats", chats));
}

/*  Writes the next thing owed: an owed ping first, then a resync or the
    queued frames. 1 when something was written, 0 when nothing is owed
    (the close, if one is due, is the caller's), -1 when the write failed. */
static int
s_write_next (ws_conn_t *c)
{
    frame_t *f = NULL;
    if (c->ping_owed) {
        /*  Not empty: lws hands us no pong that carries nothing, and a
            pong repeats its ping's payload (RFC 6455 5.5.3). */
        c->ping_owed = 0;
        unsigned char ping[LWS_PRE + 4] = {0};
        memcpy (ping + LWS_PRE, "ping", 4);
        return lws_write (c->wsi, ping + LWS_PRE, 4, LWS_WRITE_PING) < 0 ? -1 : 1;
    }
    if (c->resync) {
        c->resync = 0;
        f = s_resync_frame (c);
        if (!f)
            return 0;
    }
    else if (c->head) {
        qitem_t *q = c->head;
        c->head = q->next;
        if (!c->head)
            c->tail = NULL;
        c->queued--;
        c->queued_bytes -= q->frame->len;
        f = q->frame;
        free (q);
    }
    else
        return 0;
    if (lws_write (c->wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT) < 0) {
        s_frame_unref (&f);
        return -1;
    }
    c->frames_out++;
    if (f->seq) {
        chat_state_t *st = s_chat_state (c, f->chat_id, 1);
        if (st && f->seq > st->last_seq)
            st->last_seq = f->seq;
    }
    s_frame_unref (&f);
    return 1;
}

/*  Up to WRITES_PER_CALLBACK frames per writable callback, in order; the
    close comes in a callback of its own after the last one. A write may
    follow a write that went out whole (the kernel took it, and lws keeps
    nothing of it); one the kernel took only part of is kept by lws, which
    sends the rest in the socket's next writable turns before it calls us
    again, so that is where we stop: nothing is written behind a partial
    send, and lws holds at most one frame beyond the queue. Several
    frames per callback save a poll cycle (the POLLOUT interest set and
    cleared, a wake-up, a callback) per frame when a socket has a backlog. */
static int
s_writable (ws_conn_t *c)
{
    c->write_asked = 0;
    int written = 0;
    while (written < WRITES_PER_CALLBACK && !(written && lws_partial_buffered (c->wsi))) {
        int rc = s_write_next (c);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        written++;
    }
    if (!written && !c->resync && !c->head && c->close_code && !c->discarding) {
        lws_close_reason (c->wsi, (enum lws_close_status) c->close_code,
                          (unsigned char *) c->close_reason, strlen (c->close_reason));
        return -1;
    }
    if (c->ping_owed || c->resync || c->head || (c->close_code && !c->discarding))
        s_want_write (c);
    return 0;
}

/* --- signing in --- */

static int
s_revoked_recently (const char *session_id)
{
    if (!session_id || !*session_id)
        return 0;
    int64_t now = clock_mono_ms ();
    for (size_t i = 0; i < REVOKED_KEEP; i++)
        if (s_ws.revoked[i].at && now - s_ws.revoked[i].at < REVOKED_KEEP_MS
            && strcmp (s_ws.revoked[i].session_id, session_id) == 0)
            return 1;
    return 0;
}

static void
s_revoked_note (const char *session_id)
{
    if (!session_id || !*session_id || strlen (session_id) > MAX_ID)
        return;
    size_t i = s_ws.revoked_next++ % REVOKED_KEEP;
    snprintf (s_ws.revoked[i].session_id, sizeof s_ws.revoked[i].session_id, "%s", session_id);
    s_ws.revoked[i].at = clock_mono_ms ();
}

/*  A private, complete copy of the caller, with where the socket comes
    from (services see it as they see it for HTTP requests). */
static Bus__Caller *
s_caller_copy (const Bus__Caller *caller, const char *ip, const char *user_agent)
{
    Bus__Caller tmp = *caller;
    tmp.ip = (char *) ip;
    tmp.user_agent = (char *) user_agent;
    size_t len = bus__caller__get_packed_size (&tmp);
    uint8_t *buf = malloc (len ? len : 1);
    if (!buf)
        return NULL;
    bus__caller__pack (&tmp, buf);
    Bus__Caller *copy = bus__caller__unpack (NULL, len, buf);
    free (buf);
    return copy;
}

static void
s_forget_token (ws_conn_t *c)
{
    if (c->token) {
        sodium_memzero (c->token, strlen (c->token));
        free (c->token);
        c->token = NULL;
    }
}

static void
s_schedule_check (ws_conn_t *c)
{
    if (s_ws.opts.revalidate_s > 0 && c->token)
        s_due_set (&s_ws.check, &c->check_due);
}

static void
s_auth_done (gw_t *gw, uint64_t conn_id, const Bus__Caller *caller, status_t status)
{
    (void) gw;
    ws_conn_t *c = s_ws.conns ? u64map_get (s_ws.conns, conn_id) : NULL;
    if (!c || c->close_code)
        return;
    int valid = status == ST_OK && caller && s_id_ok (caller->user_id)
                && !s_revoked_recently (caller->session_id);
    if (c->state == WS_READY) {
        /*  The periodic check of a signed-in socket: its session may have
            ended without the event reaching us (expiry, a lost event). */
        if (valid) {
            /*  Roles may have changed since: later calls carry the new ones. */
            Bus__Caller *fresh = s_caller_copy (caller, c->ip, c->user_agent);
            if (fresh) {
                bus__caller__free_unpacked (c->caller, NULL);
                c->caller = fresh;
            }
            s_schedule_check (c);
        }
        else if (status == ST_OK || status == ST_UNAUTHORIZED) {
            s_error (c, "unauthorized", "the session has ended: sign in again", NULL);
            s_close (c, GW_WS_CLOSE_UNAUTHORIZED, "session ended");
        }
        else
            s_schedule_check (c);   /* identity is down: try later, keep the socket */
        return;
    }
    if (c->state != WS_AUTHING)
        return;
    if (valid) {
        c->caller = s_caller_copy (caller, c->ip, c->user_agent);
        if (!c->caller || s_user_attach (c)) {
            s_error (c, "unavailable", "out of memory", NULL);
            s_close (c, 1013, "try again later");
            return;
        }
        c->state = WS_READY;
        s_due_remove (&s_ws.auth, &c->auth_due);
        s_send_json (c, json_pack ("{s:s, s:s}", "type", "ready", "user_id", c->caller->user_id));
        lws_rx_flow_control (c->wsi, 1);
        s_schedule_check (c);
        log_info (c->trace, "ws signed in user=%s ip=%s", c->caller->user_id, c->ip);
        return;
    }
    s_forget_token (c);
    if (status == ST_OK || status == ST_UNAUTHORIZED) {
        s_error (c, "unauthorized", "the token is missing, expired or revoked", NULL);
        s_close (c, GW_WS_CLOSE_UNAUTHORIZED, "unauthorized");
    }
    else {
        s_error (c, "unavailable", "cannot check the token right now: try again", NULL);
        s_close (c, 1013, "try again later");
    }
}

/*  Looks c->token up. Frames behind the auth frame wait until we know
    who this is. */
static void
s_auth_begin (ws_conn_t *c)
{
    c->state = WS_AUTHING;
    lws_rx_flow_control (c->wsi, 0);
    gw_auth_resolve (s_ws.gw, c->token, c->ip, c->user_agent, c->trace, c->id, s_auth_done);
}

/*  The token of an auth frame. */
static void
s_auth_start (ws_conn_t *c, const char *token)
{
    c->token = strdup (token);
    if (!c->token) {
        s_error (c, "unavailable", "out of memory", NULL);
        s_close (c, 1013, "try again later");
        return;
    }
    s_auth_begin (c);
}

static void
s_auth_timeout (ws_conn_t *c)
{
    if (c->state == WS_READY || c->close_code)
        return;
    s_error (c, "unauthorized", "sign in within 10 seconds: send {\"type\": \"auth\", \"token\": \"...\"}",
             NULL);
    s_close (c, GW_WS_CLOSE_UNAUTHORIZED, "no token within 10 s");
}

static void
s_check_due (ws_conn_t *c)
{
    if (c->state != WS_READY || c->close_code || !c->token || s_ws.gw->stopping)
        return;
    gw_auth_resolve (s_ws.gw, c->token, c->ip, c->user_agent, c->trace, c->id, s_auth_done);
}

static void
s_recheck_timer (struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void) loop;
    (void) timer;
    (void) revents;
    size_t end = s_ws.recheck_at + RECHECK_BATCH;
    for (; s_ws.recheck_at < s_ws.recheck_n && s_ws.recheck_at < end; s_ws.recheck_at++) {
        ws_conn_t *c = u64map_get (s_ws.conns, s_ws.recheck[s_ws.recheck_at]);
        if (c)
            s_check_due (c);
    }
    if (s_ws.recheck_at < s_ws.recheck_n && !s_ws.gw->stopping)
        gw_timer_after (s_ws.gw, &s_ws.recheck_timer, RECHECK_EVERY_MS);
    else {
        free (s_ws.recheck);
        s_ws.recheck = NULL;
        s_ws.recheck_n = s_ws.recheck_at = 0;
    }
}

void
gw_ws_recheck_all (gw_t *gw)
{
    if (!s_ws.started || !s_ws.conns || gw->stopping)
        return;
    /*  The sockets open now (ids: a check may close one meanwhile), from
        the start again if a round was under way. */
    size_t n = u64map_size (s_ws.conns), got = 0, cursor = 0;
    uint64_t *ids = malloc ((n ? n : 1) * sizeof *ids);
    if (!ids)
        return;
    uint64_t id;
    void *value;
    while (got < n && u64map_next (s_ws.conns, &cursor, &id, &value))
        ids[got++] = id;
    free (s_ws.recheck);
    s_ws.recheck = ids;
    s_ws.recheck_n = got;
    s_ws.recheck_at = 0;
    gw_timer_after (gw, &s_ws.recheck_timer, 0);
}

/* --- keep-alive --- */

/*  A ping when the socket's time comes; at the next, still no pong: the
    peer is gone or not reading, and the socket is dropped at once, with
    no close handshake (as lws's own keep-alive did). */
static void
s_ping_due (ws_conn_t *c)
{
    if (!c->wsi)
        return;
    if (c->pong_awaited) {
        log_info (c->trace, "ws no pong within %d s: hanging up user=%s", s_ws.opts.ping_s,
                  c->user ? c->user->id : "-");
        lws_set_timeout (c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);   /* frees c */
        return;
    }
    c->pong_awaited = 1;
    c->ping_owed = 1;
    s_due_set (&s_ws.ping, &c->ping_due);
    s_want_write (c);
}

static void
s_pong (ws_conn_t *c)
{
    c->pong_awaited = 0;
    s_due_set (&s_ws.ping, &c->ping_due);
}

/*  A new socket counts against its address's budget (the "ip" class, as
    every HTTP request does) before anything else: until the answer,
    nothing it sends is read and no token is looked up. */
static void
s_limit_done (gw_t *gw, uint64_t conn_id, int allowed, int64_t retry_after_ms)
{
    (void) gw;
    ws_conn_t *c = s_ws.conns ? u64map_get (s_ws.conns, conn_id) : NULL;
    if (!c || c->close_code)
        return;
    if (allowed) {
        lws_rx_flow_control (c->wsi, 1);
        if (c->token && c->state == WS_AUTH_WAIT)
            s_auth_begin (c);   /* the upgrade's Authorization header */
        return;
    }
    json_t *json = json_pack ("{s:s, s:s, s:s, s:I}", "type", "error", "code", "rate_limited",
                              "message", "too many connections from this address, try again later",
                              "retry_after",
                              (json_int_t) (gw_ratelimit_retry_after_s (retry_after_ms) > 0
                                                ? gw_ratelimit_retry_after_s (retry_after_ms)
                                                : 1));
    s_send_json (c, json);
    s_close (c, GW_WS_CLOSE_RATE_LIMITED, "rate limited");
}

/* --- the socket's life --- */

/*  The client's address: the peer, or the last X-Forwarded-For hop when
    the peer is a proxy we were told to trust (as for HTTP requests). */
static void
s_client_ip (struct lws *wsi, char *ip, size_t len)
{
    char peer[64] = "";
    lws_get_peer_simple (wsi, peer, sizeof peer);
    const char *plain = strncmp (peer, "::ffff:", 7) == 0 && strchr (peer + 7, '.') ? peer + 7 : peer;
    snprintf (ip, len, "%s", plain);
    const char *trusted = s_ws.gw->trusted_proxies;
    if (!*trusted)
        return;
    char list[512];
    snprintf (list, sizeof list, "%s", trusted);
    int is_proxy = 0;
    char *save = NULL;
    for (char *p = strtok_r (list, ", ", &save); p; p = strtok_r (NULL, ", ", &save))
        if (strcmp (p, ip) == 0)
            is_proxy = 1;
    char xff[512];
    int n = lws_hdr_total_length (wsi, WSI_TOKEN_X_FORWARDED_FOR);
    if (!is_proxy || n <= 0 || n >= (int) sizeof xff
        || lws_hdr_copy (wsi, xff, sizeof xff, WSI_TOKEN_X_FORWARDED_FOR) < 0)
        return;
    char *last = strrchr (xff, ',');
    char *hop = last ? last + 1 : xff;
    while (*hop == ' ')
        hop++;
    size_t hop_len = strlen (hop);
    while (hop_len && hop[hop_len - 1] == ' ')
        hop[--hop_len] = 0;
    if (hop_len > 0 && hop_len < len)
        snprintf (ip, len, "%s", hop);
}

static ws_conn_t *
s_conn_new (struct lws *wsi)
{
    ws_conn_t *c = calloc (1, sizeof *c);
    if (!c)
        return NULL;
    c->id = ++s_ws.next_id;
    c->wsi = wsi;
    c->opened_at = clock_mono_ms ();
    c->budget = FRAMES_BURST;
    c->budget_at = c->opened_at;
    ulid_make (c->trace);
    s_client_ip (wsi, c->ip, sizeof c->ip);
    int n = lws_hdr_total_length (wsi, WSI_TOKEN_HTTP_USER_AGENT);
    if (n > 0 && n < (int) sizeof c->user_agent)
        lws_hdr_copy (wsi, c->user_agent, sizeof c->user_agent, WSI_TOKEN_HTTP_USER_AGENT);
    if (u64map_put (s_ws.conns, c->id, c)) {
        free (c);
        return NULL;
    }
    gw_metrics_ws (s_ws.gw->metrics, 1);
    return c;
}

static void
s_conn_free (ws_conn_t *c)
{
    s_due_remove (&s_ws.auth, &c->auth_due);
    s_due_remove (&s_ws.check, &c->check_due);
    s_due_remove (&s_ws.ping, &c->ping_due);
    for (int i = 0; i < MAX_CALLS; i++)
        if (c->calls[i].call) {
            bus_client_cancel (s_ws.gw->bus, c->calls[i].call);
            free (c->calls[i].ctx);
        }
    log_info (c->trace,
              "ws closed user=%s code=%d frames_out=%llu resyncs=%llu presence_dropped=%llu"
              " seconds=%lld",
              c->user ? c->user->id : "-", c->close_code, (unsigned long long) c->frames_out,
              (unsigned long long) c->resyncs, (unsigned long long) c->dropped,
              (long long) ((clock_mono_ms () - c->opened_at) / 1000));
    s_user_detach (c);
    s_queue_drop (c);
    free (c->rx);
    if (c->caller)
        bus__caller__free_unpacked (c->caller, NULL);
    s_forget_token (c);
    zhashx_destroy (&c->chats);
    u64map_remove (s_ws.conns, c->id);
    gw_metrics_ws (s_ws.gw->metrics, -1);
    free (c);
}

/*  Keeps the bearer token of the upgrade's Authorization header, if any,
    in c->token (read now: the headers are gone once the socket is open). */
static void
s_header_token (ws_conn_t *c)
{
    char auth[MAX_TOKEN + 16];
    int n = lws_hdr_total_length (c->wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0)
        return;
    if (n >= (int) sizeof auth
        || lws_hdr_copy (c->wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) < 0) {
        s_error (c, "unauthorized", "the Authorization header is too long", NULL);
        s_close (c, GW_WS_CLOSE_UNAUTHORIZED, "unauthorized");
        return;
    }
    const char *t = auth + 7;
    if (n > 7 && strncasecmp (auth, "Bearer ", 7) == 0) {
        while (*t == ' ')
            t++;
    }
    else
        t = "";
    if (*t) {
        c->token = strdup (t);
        if (!c->token) {
            s_error (c, "unavailable", "out of memory", NULL);
            s_close (c, 1013, "try again later");
        }
    }
    else {
        s_error (c, "unauthorized", "send the token as Authorization: Bearer, or in an auth frame", NULL);
        s_close (c, GW_WS_CLOSE_UNAUTHORIZED, "unauthorized");
    }
    sodium_memzero (auth, sizeof auth);
}

/* --- frames from the client --- */

static int
s_budget (ws_conn_t *c)
{
    int64_t now = clock_mono_ms ();
    c->budget += (double) (now - c->budget_at) * FRAMES_PER_S / 1000.0;
    if (c->budget > FRAMES_BURST)
        c->budget = FRAMES_BURST;
    c->budget_at = now;
    if (c->budget >= 1) {
        c->budget -= 1;
        return 1;
    }
    if (now - c->limited_said_at >= 1000) {
        c->limited_said_at = now;
        s_error (c, "rate_limited", "too many frames: at most 20 a second", NULL);
    }
    return 0;
}

typedef struct {
    uint64_t conn_id;
    char chat_id[MAX_ID + 1];
    int64_t start_us;
} typing_ctx_t;

static void
s_typing_done (void *arg, const Bus__Reply *reply)
{
    typing_ctx_t *ctx = arg;
    gw_metrics_bus (s_ws.gw->metrics, "chat.audience", reply->status,
                    clock_mono_us () - ctx->start_us);
    ws_conn_t *c = u64map_get (s_ws.conns, ctx->conn_id);
    if (c)
        for (int i = 0; i < MAX_CALLS; i++)
            if (c->calls[i].ctx == ctx)
                c->calls[i].call = 0, c->calls[i].ctx = NULL;
    if (!c || c->state != WS_READY || c->close_code) {
        free (ctx);
        return;
    }
    const char *chat_id = ctx->chat_id;
    Chat__AudienceReply *audience = NULL;
    if (reply->status == ST_OK)
        audience = chat__audience_reply__unpack (NULL, reply->body.len, reply->body.data);
    int member = 0;
    for (size_t i = 0; audience && i < audience->n_user_ids; i++)
        if (audience->user_ids[i] && strcmp (audience->user_ids[i], c->user->id) == 0)
            member = 1;
    if (!member) {
        if (reply->status == ST_OK || reply->status == ST_NOT_FOUND
            || reply->status == ST_FORBIDDEN) {
            /*  Not kept: a client naming chats it is not in must not fill
                the socket's table. */
            s_chat_state_forget (c, chat_id);
            s_error (c, "forbidden", "you are not a member of this chat", chat_id);
        }
        else if (reply->status == ST_BAD_REQUEST)
            s_error (c, "bad_request", reply->message && *reply->message ? reply->message
                                                                         : "bad chat_id", chat_id);
        else
            s_error (c, "unavailable", "cannot pass the typing notice on right now", chat_id);
        if (audience)
            chat__audience_reply__free_unpacked (audience, NULL);
        free (ctx);
        return;
    }
    s_chat_join (c->user, chat_id, 0);
    frame_t *f = s_frame_new (json_pack ("{s:s, s:s, s:s}", "type", "typing", "chat_id", chat_id,
                                         "user_id", c->user->id));
    uint64_t stamp = ++s_ws.stamp;
    c->user->stamp = stamp;     /* not to the typist's own sockets */
    for (size_t i = 0; f && i < audience->n_user_ids; i++) {
        ws_user_t *other = s_user (audience->user_ids[i]);
        if (!other || other->stamp == stamp)
            continue;
        other->stamp = stamp;
        if (s_chat_open_to (other, chat_id))
            s_send_user (other, f);
    }
    s_frame_unref (&f);
    chat__audience_reply__free_unpacked (audience, NULL);
    gw_peers_publish (s_ws.gw, json_pack ("{s:s, s:s, s:s}", "type", "typing", "chat_id", chat_id,
                                          "user_id", c->user->id));
    free (ctx);
}

/*  What another gateway's sockets did (gw_peers.h), for the users here:
    a typing notice goes to the chat's other members here, a presence
    change to everyone here sharing one of the user's chats. Both from the
    index, so users here whose chats are not known yet are missed. */
void
gw_ws_on_peer (gw_t *gw, const json_t *msg)
{
    if (!s_ws.started || gw->stopping)
        return;
    const char *type = json_string_value (json_object_get (msg, "type"));
    const char *user_id = json_string_value (json_object_get (msg, "user_id"));
    if (!type || !s_id_ok (user_id))
        return;
    if (strcmp (type, "typing") == 0) {
        const char *chat_id = json_string_value (json_object_get (msg, "chat_id"));
        zlistx_t *list = s_id_ok (chat_id) ? zhashx_lookup (s_ws.index, chat_id) : NULL;
        if (!list)
            return;
        frame_t *f = s_frame_new (json_pack ("{s:s, s:s, s:s}", "type", "typing", "chat_id",
                                             chat_id, "user_id", user_id));
        for (ws_user_t *other = f ? zlistx_first (list) : NULL; other; other = zlistx_next (list))
            if (strcmp (other->id, user_id) != 0)
                s_send_user (other, f);
        s_frame_unref (&f);
    }
    else if (strcmp (type, "presence") == 0) {
        const json_t *online = json_object_get (msg, "online");
        const json_t *chats = json_object_get (msg, "chats");
        const json_t *seen_json = json_object_get (msg, "last_seen_at");
        json_int_t seen = json_integer_value (seen_json);
        if (!json_is_boolean (online) || !json_is_array (chats) || !json_is_integer (seen_json)
            || seen < 0 || seen > CLOCK_RFC3339_MAX_MS)
            return;
        ws_user_t *user = s_user (user_id);
        /*  Offline there, but with sockets here: not offline. */
        if (!json_is_true (online) && user && user->n_conns)
            return;
        s_presence_deliver (user_id, json_is_true (online), (int64_t) seen, chats);
    }
}

/*  {"type": "typing", "chat_id"}: passed on to the chat's other members
    with sockets here, after chat.audience confirms the typist is one. */
static void
s_typing (ws_conn_t *c, json_t *frame)
{
    const char *chat_id = json_string_value (json_object_get (frame, "chat_id"));
    if (!s_id_ok (chat_id)) {
        s_error (c, "bad_request", "typing needs the chat_id of one of your chats", NULL);
        return;
    }
    chat_state_t *st = s_chat_state (c, chat_id, 1);
    if (!st) {
        s_error (c, "rate_limited", "too many chats on this socket", chat_id);
        return;
    }
    int64_t now = clock_mono_ms ();
    if (st->typing_at && now - st->typing_at < TYPING_EVERY_MS)
        return;     /* at most one a second: the rest add nothing */
    int slot = -1;
    for (int i = 0; i < MAX_CALLS && slot < 0; i++)
        if (!c->calls[i].call)
            slot = i;
    if (slot < 0) {
        s_error (c, "rate_limited", "too many typing notices at once", chat_id);
        return;
    }
    st->typing_at = now;
    typing_ctx_t *ctx = calloc (1, sizeof *ctx);
    if (!ctx) {
        s_error (c, "unavailable", "out of memory", chat_id);
        return;
    }
    ctx->conn_id = c->id;
    snprintf (ctx->chat_id, sizeof ctx->chat_id, "%s", chat_id);
    ctx->start_us = clock_mono_us ();
    Chat__AudienceRequest msg = CHAT__AUDIENCE_REQUEST__INIT;
    msg.chat_id = ctx->chat_id;
    bus_call_opts_t opts = {
        .timeout_ms = s_ws.gw->call_timeout_ms,
        .flags = BUS_CALL_RETRY,
        .caller = c->caller,
        .trace_id = c->trace,
    };
    uint64_t call = bus_client_send (s_ws.gw->bus, "chat", "chat.audience", &msg.base, &opts,
                                     s_typing_done, ctx);
    if (!call) {
        free (ctx);
        s_error (c, "unavailable", "cannot reach the bus", chat_id);
        return;
    }
    c->calls[slot].call = call;
    c->calls[slot].ctx = ctx;
    gw_bus_kick (s_ws.gw);
}

static void
s_frame_in (ws_conn_t *c, const char *text, size_t len, int binary)
{
    if (!s_budget (c))
        return;
    json_error_t jerr;
    json_t *json = binary ? NULL : json_loadb (text, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *type = json_is_object (json) ? json_string_value (json_object_get (json, "type"))
                                             : NULL;
    if (c->state == WS_AUTH_WAIT) {
        const char *token = type && strcmp (type, "auth") == 0
                                ? json_string_value (json_object_get (json, "token"))
                                : NULL;
        if (token && *token && strlen (token) <= MAX_TOKEN)
            s_auth_start (c, token);
        else {
            s_error (c, "unauthorized",
                     "the first frame must be {\"type\": \"auth\", \"token\": \"...\"}", NULL);
            s_close (c, GW_WS_CLOSE_UNAUTHORIZED, "unauthorized");
        }
    }
    else if (c->state == WS_READY) {
        if (!type)
            s_error (c, "bad_request",
                     binary ? "frames are JSON text" : "a frame is a JSON object with a \"type\"",
                     NULL);
        else if (strcmp (type, "ping") == 0)
            s_send_json (c, json_pack ("{s:s}", "type", "pong"));
        else if (strcmp (type, "typing") == 0)
            s_typing (c, json);
        else if (strcmp (type, "auth") == 0)
            s_error (c, "bad_request", "this socket is signed in already", NULL);
        else
            s_error (c, "bad_request", "unknown frame type (send typing or ping)", NULL);
    }
    json_decref (json);
}

/*  A message above MAX_FRAME_IN closes the socket with 1009, but only
    once the rest of it has been read (and dropped): closing a socket with
    unread input resets the connection, and a client still sending would
    then often lose the close frame (the smaller lws's reads, the more
    often). Past MAX_DISCARD more, it is dropped at once. */
static int
s_receive (struct lws *wsi, ws_conn_t *c, const void *in, size_t len)
{
    static const char too_large[] = "frames are at most 64 KiB";
    if (c->discarding) {
        c->discarded += len;
        if (c->discarded > MAX_DISCARD) {
            lws_close_reason (wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                              (unsigned char *) too_large, sizeof too_large - 1);
            return -1;
        }
        if (lws_is_final_fragment (wsi)) {
            c->discarding = 0;
            s_want_write (c);   /* the close */
        }
        return 0;
    }
    if (c->close_code)
        return 0;
    size_t remaining = lws_remaining_packet_payload (wsi);
    if (c->rx_len + len + remaining > MAX_FRAME_IN) {
        s_log_limited (c->trace, "ws frame too large: closing ip=%s", c->ip);
        free (c->rx);
        c->rx = NULL;
        c->rx_len = c->rx_cap = 0;
        c->discarding = !lws_is_final_fragment (wsi);
        c->discarded = 0;
        s_close (c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, too_large);
        return 0;
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap * 2 : 1024;
        while (cap < c->rx_len + len)
            cap *= 2;
        if (cap > MAX_FRAME_IN)
            cap = MAX_FRAME_IN;
        char *rx = realloc (c->rx, cap);
        if (!rx)
            return -1;
        c->rx = rx;
        c->rx_cap = cap;
    }
    memcpy (c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (!lws_is_final_fragment (wsi))
        return 0;
    int was_waiting = c->state == WS_AUTH_WAIT;
    s_frame_in (c, c->rx, c->rx_len, lws_frame_is_binary (wsi));
    if (was_waiting)
        sodium_memzero (c->rx, c->rx_len);  /* the token */
    c->rx_len = 0;
    if (c->rx_cap > 4096) {
        free (c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
    return 0;
}

/* --- upgrades --- */

/*  Answers an upgrade request with the API's error body instead of
    upgrading; returns 1 as LWS_CALLBACK_HTTP_CONFIRM_UPGRADE wants. */
static int
s_refuse_upgrade (struct lws *wsi, int status, const char *code, const char *message)
{
    json_t *json = json_pack ("{s:{s:s, s:s, s:s}}", "error", "code", code, "message", message,
                              "field", "");
    char *text = json ? json_dumps (json, JSON_COMPACT) : NULL;
    json_decref (json);
    if (!text)
        return -1;
    size_t len = strlen (text);
    unsigned char head[LWS_PRE + 512], *start = head + LWS_PRE, *p = start,
                                       *end = head + sizeof head - 1;
    unsigned char body[LWS_PRE + 512];
    int rc = -1;
    if (len < sizeof body - LWS_PRE
        && !lws_add_http_common_headers (wsi, (unsigned int) status, "application/json",
                                         (lws_filepos_t) len, &p, end)
        && !lws_finalize_write_http_header (wsi, start, &p, end)) {
        memcpy (body + LWS_PRE, text, len);
        if (lws_write (wsi, body + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) == (int) len)
            rc = 1;
    }
    free (text);
    return rc;
}

/*  Every upgrade request passes here, whichever protocol the connection is
    bound to then: only /v1/ws upgrades, and only to parta-ws (asked for by
    name, or by asking for no subprotocol: parta-ws is the vhost's default).
    lws would otherwise bind a socket to the first protocol of ours the
    client names, "http" included. */
static int
s_confirm_upgrade (struct lws *wsi, const char *upgrade)
{
    if (!upgrade || strcasecmp (upgrade, "websocket") != 0)
        return 0;
    char uri[128];
    int n = lws_hdr_total_length (wsi, WSI_TOKEN_GET_URI);
    if (n <= 0 || n >= (int) sizeof uri || lws_hdr_copy (wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0
        || strcmp (uri, GW_WS_PATH) != 0)
        return s_refuse_upgrade (wsi, 400, "bad_request",
                                 "WebSocket connections are opened with GET /v1/ws only");
    char list[256];
    n = lws_hdr_total_length (wsi, WSI_TOKEN_PROTOCOL);
    if (n <= 0)
        return 0;
    if (n >= (int) sizeof list || lws_hdr_copy (wsi, list, sizeof list, WSI_TOKEN_PROTOCOL) < 0)
        return s_refuse_upgrade (wsi, 400, "bad_request", "Sec-WebSocket-Protocol is too long");
    char *save = NULL;
    for (char *name = strtok_r (list, ", \t", &save); name; name = strtok_r (NULL, ", \t", &save)) {
        if (strcmp (name, GW_WS_PROTOCOL) == 0)
            return 0;
        if (lws_vhost_name_to_protocol (lws_get_vhost (wsi), name))
            break;
    }
    return s_refuse_upgrade (wsi, 400, "bad_request",
                             "ask for the subprotocol parta-ws, or for none");
}

int
gw_ws_http_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return s_confirm_upgrade (wsi, (const char *) in);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return 1;   /* never a WebSocket on the http protocol */
    case LWS_CALLBACK_WSI_DESTROY: {
        /*  lws tells protocols[0] of every connection's end, with the user
            space of the protocol it is bound to: a socket of ours that
            somehow missed LWS_CALLBACK_CLOSED is freed here. */
        const struct lws_protocols *bound = lws_get_protocol (wsi);
        if (bound && bound->callback == gw_ws_callback)
            return gw_ws_callback (wsi, reason, user, in, len);
        return gw_http_callback (wsi, reason, user, in, len);
    }
    default:
        return gw_http_callback (wsi, reason, user, in, len);
    }
}

void
gw_ws_http_plain (gw_req_t *req)
{
    gw_reply_error (req, 400, "bad_request",
                    "GET /v1/ws is the WebSocket endpoint: open it with a WebSocket client "
                    "(Connection: Upgrade, Upgrade: websocket)",
                    "");
}

int
gw_ws_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                size_t len)
{
    pss_t *pss = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return s_confirm_upgrade (wsi, (const char *) in);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[128];
        int n = lws_hdr_total_length (wsi, WSI_TOKEN_GET_URI);
        return !s_ws.started || n <= 0 || n >= (int) sizeof uri
               || lws_hdr_copy (wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0
               || strcmp (uri, GW_WS_PATH) != 0;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        if (!s_ws.started || s_ws.gw->stopping)
            return -1;
        ws_conn_t *c = s_conn_new (wsi);
        if (!c)
            return -1;
        pss->conn = c;
        s_due_set (&s_ws.auth, &c->auth_due);
        s_due_set (&s_ws.ping, &c->ping_due);
        s_header_token (c);
        if (c->close_code)
            return 0;
        lws_rx_flow_control (wsi, 0);
        int64_t retry = 0;
        int rc = gw_limit_check (s_ws.gw, "ip", c->ip, c->id, s_limit_done, &retry);
        if (rc != -1)
            s_limit_done (s_ws.gw, c->id, rc, retry);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return pss && pss->conn ? s_receive (wsi, pss->conn, in, len) : -1;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (pss && pss->conn)
            s_pong (pss->conn);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss && pss->conn ? s_writable (pss->conn) : -1;
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:  /* (from gw_ws_http_callback) */
        if (pss && pss->conn) {
            s_conn_free (pss->conn);
            pss->conn = NULL;
        }
        return 0;
    default:
        return lws_callback_http_dummy (wsi, reason, user, in, len);
    }
}

/* --- events --- */

typedef void (event_fn) (const Ev__Event *event, const char *push_type);

/*  message.posted / edited / deleted: {"type", "message"} to the
    recipients the event lists, minus those seen leaving the chat. */
static void
s_on_message (const Ev__Event *event, const char *push_type)
{
    Chat__MessageEvent *m
        = chat__message_event__unpack (NULL, event->payload.len, event->payload.data);
    if (!m || !m->message || !s_id_ok (m->message->chat_id))
        goto out;
    const char *chat_id = m->message->chat_id;
    frame_t *f = NULL;
    uint64_t stamp = ++s_ws.stamp;
    for (size_t i = 0; i < m->n_recipients; i++) {
        ws_user_t *user = s_user (m->recipients[i]);
        if (!user || user->stamp == stamp)
            continue;
        user->stamp = stamp;
        if (!s_chat_join (user, chat_id, 0))
            continue;
        if (!f) {
            f = s_frame_new (json_pack ("{s:s, s:o}", "type", push_type, "message",
                                        codec_to_json (&m->message->base)));
            if (!f)
                break;
            if (strcmp (push_type, "message.posted") == 0) {
                f->seq = m->message->seq;
                snprintf (f->chat_id, sizeof f->chat_id, "%s", chat_id);
            }
        }
        s_send_user (user, f);
    }
    s_frame_unref (&f);
out:
    if (m)
        chat__message_event__free_unpacked (m, NULL);
}

/*  chat.created / updated: {"type", "chat"} with the chat as the event
    has it (id, org_id, kind, title, audience, unit_id, archived,
    who_can_post); the caller's own fields (role, unread...) come from GET
    /v1/chats/{chat_id}. To the member ids the event lists, or when it lists
    none, to the users here known to be in the chat. */
static void
s_on_chat (const Ev__Event *event, const char *push_type)
{
    Chat__ChatEvent *e = chat__chat_event__unpack (NULL, event->payload.len, event->payload.data);
    if (!e || !s_id_ok (e->chat_id))
        goto out;
    int created = strcmp (push_type, "chat.created") == 0;
    json_t *chat = codec_to_json (&e->base);
    if (!chat)
        goto out;
    json_object_set_new (chat, "id", json_string (e->chat_id));
    json_object_del (chat, "chat_id");
    json_object_del (chat, "member_ids");
    if (!e->unit_id || !*e->unit_id)
        json_object_set_new (chat, "unit_id", json_null ());
    json_object_set_new (chat, "org_id", json_string (event->org_id ? event->org_id : ""));
    frame_t *f = s_frame_new (json_pack ("{s:s, s:o}", "type", push_type, "chat", chat));
    if (!f)
        goto out;
    if (e->n_member_ids) {
        uint64_t stamp = ++s_ws.stamp;
        for (size_t i = 0; i < e->n_member_ids; i++) {
            ws_user_t *user = s_user (e->member_ids[i]);
            if (!user || user->stamp == stamp)
                continue;
            user->stamp = stamp;
            if (!s_chat_join (user, e->chat_id, created))
                continue;
            s_send_user (user, f);
        }
    }
    else {
        zlistx_t *list = zhashx_lookup (s_ws.index, e->chat_id);
        for (ws_user_t *user = list ? zlistx_first (list) : NULL; user; user = zlistx_next (list))
            s_send_user (user, f);
    }
    s_frame_unref (&f);
out:
    if (e)
        chat__chat_event__free_unpacked (e, NULL);
}

/*  chat.member_added / removed: {"type", "chat_id", "user_id", "role"} to
    the recipients and the member themself. Someone removed gets the event,
    then nothing more of that chat (events computed before the removal may
    still list them). */
static void
s_on_member (const Ev__Event *event, const char *push_type)
{
    Chat__MemberEvent *e = chat__member_event__unpack (NULL, event->payload.len, event->payload.data);
    if (!e || !s_id_ok (e->chat_id) || !e->user_id || !*e->user_id)
        goto out;
    int added = strcmp (push_type, "chat.member_added") == 0;
    ws_user_t *named = s_user (e->user_id);
    if (named && added)
        s_chat_join (named, e->chat_id, 1);
    const char *role = codec_enum_name (&chat__member_role__descriptor, (int) e->role);
    frame_t *f = s_frame_new (json_pack ("{s:s, s:s, s:s, s:o}", "type", push_type, "chat_id",
                                         e->chat_id, "user_id", e->user_id, "role",
                                         role ? json_string (role) : json_null ()));
    if (!f)
        goto out;
    uint64_t stamp = ++s_ws.stamp;
    if (named) {
        named->stamp = stamp;
        s_send_user (named, f);
    }
    for (size_t i = 0; i < e->n_recipients; i++) {
        ws_user_t *user = s_user (e->recipients[i]);
        if (!user || user->stamp == stamp)
            continue;
        user->stamp = stamp;
        if (!s_chat_join (user, e->chat_id, 0))
            continue;
        s_send_user (user, f);
    }
    s_frame_unref (&f);
    if (named && !added)
        s_chat_leave (named, e->chat_id);
out:
    if (e)
        chat__member_event__free_unpacked (e, NULL);
}

/*  chat.read: {"type", "chat_id", "user_id", "seq"} to that user's own
    sockets (their other devices). */
static void
s_on_read (const Ev__Event *event, const char *push_type)
{
    Chat__ReadEvent *e = chat__read_event__unpack (NULL, event->payload.len, event->payload.data);
    ws_user_t *user = e ? s_user (e->user_id) : NULL;
    if (user && s_id_ok (e->chat_id)) {
        frame_t *f = s_frame_new (json_pack ("{s:s, s:s, s:s, s:I}", "type", push_type, "chat_id",
                                             e->chat_id, "user_id", e->user_id, "seq",
                                             (json_int_t) e->seq));
        s_send_user (user, f);
        s_frame_unref (&f);
    }
    if (e)
        chat__read_event__free_unpacked (e, NULL);
}

/*  identity.session.revoked: that session's sockets get
    {"type": "session.revoked", "reason"} and close with 4003. Whatever was
    queued for them is dropped: they are leaving. */
static void
s_on_session_revoked (const Ev__Event *event, const char *push_type)
{
    Identity__SessionRevoked *e
        = identity__session_revoked__unpack (NULL, event->payload.len, event->payload.data);
    if (!e)
        return;
    s_revoked_note (e->session_id);
    ws_user_t *user = s_user (e->user_id);
    for (ws_conn_t *c = user ? user->conns : NULL; c; c = c->next_of_user) {
        const char *mine = c->caller && c->caller->session_id ? c->caller->session_id : "";
        if (e->session_id && *e->session_id && strcmp (mine, e->session_id) != 0)
            continue;
        if (c->close_code)
            continue;
        s_queue_drop (c);
        c->resync = 0;
        s_send_json (c, json_pack ("{s:s, s:s}", "type", push_type, "reason",
                                   e->reason ? e->reason : ""));
        s_close (c, GW_WS_CLOSE_REVOKED, "session revoked");
        log_info (c->trace, "ws session revoked user=%s", user->id);
    }
    identity__session_revoked__free_unpacked (e, NULL);
}

/*  identity.security.reported: each admin of each of the reporter's orgs
    with a socket here is told, once per org ({"type":
    "security.reported", "org_id", "user": {id, full_name}, "at"}); not the
    comment, which is the reporter's. */
static void
s_on_security_reported (const Ev__Event *event, const char *push_type)
{
    const char *id = event->id ? event->id : "";
    for (size_t i = 0; *id && i < TOLD_KEEP; i++)
        if (strcmp (s_ws.told[i], id) == 0)
            return;
    snprintf (s_ws.told[s_ws.told_next], sizeof s_ws.told[0], "%s", id);
    s_ws.told_next = (s_ws.told_next + 1) % TOLD_KEEP;
    Identity__SecurityReported *e
        = identity__security_reported__unpack (NULL, event->payload.len, event->payload.data);
    if (!e)
        return;
    char at[40];
    clock_format_rfc3339 (event->at, at, sizeof at);
    for (size_t i = 0; i < e->n_admins; i++) {
        const Identity__OrgAdmins *oa = e->admins[i];
        frame_t *f = NULL;
        for (size_t k = 0; oa && k < oa->n_user_ids; k++) {
            ws_user_t *admin = s_user (oa->user_ids[k]);
            if (!admin)
                continue;
            if (!f)
                f = s_frame_new (json_pack ("{s:s, s:s, s:{s:s, s:s}, s:s}", "type", push_type,
                                            "org_id", oa->org_id ? oa->org_id : "", "user", "id",
                                            e->user_id ? e->user_id : "", "full_name",
                                            e->full_name ? e->full_name : "", "at", at));
            if (f)
                s_send_user (admin, f);
        }
        s_frame_unref (&f);
    }
    identity__security_reported__free_unpacked (e, NULL);
}

static const struct {
    const char *type;           /* the event */
    const char *push;           /* the frame's "type" */
    event_fn *fn;
} s_events[] = {
    {"chat.message.posted", "message.posted", s_on_message},
    {"chat.message.edited", "message.edited", s_on_message},
    {"chat.message.deleted", "message.deleted", s_on_message},
    {"chat.created", "chat.created", s_on_chat},
    {"chat.updated", "chat.updated", s_on_chat},
    {"chat.member_added", "chat.member_added", s_on_member},
    {"chat.member_removed", "chat.member_removed", s_on_member},
    {"chat.read", "chat.read", s_on_read},
    {"identity.session.revoked", "session.revoked", s_on_session_revoked},
    {"identity.security.reported", "security.reported", s_on_security_reported},
    {NULL, NULL, NULL},
};

void
gw_ws_on_event (gw_t *gw, const Ev__Event *event)
{
    (void) gw;
    if (!s_ws.started || !event || !event->type)
        return;
    for (int i = 0; s_events[i].type; i++)
        if (strcmp (event->type, s_events[i].type) == 0) {
            /*  Nobody here, nothing to do (a revoked session is still
                remembered: a socket may be signing in with it). */
            if (zhashx_size (s_ws.users) || s_events[i].fn == s_on_session_revoked)
                s_events[i].fn (event, s_events[i].push);
            return;
        }
}

/* --- start and stop --- */

int
gw_ws_start (gw_t *gw, const gw_ws_opts_t *opts)
{
    memset (&s_ws, 0, sizeof s_ws);
    s_ws.gw = gw;
    s_ws.opts = *opts;
    if (s_ws.opts.queue_frames <= 0)
        s_ws.opts.queue_frames = 256;
    if (s_ws.opts.queue_bytes == 0)
        s_ws.opts.queue_bytes = 1024 * 1024;
    if (s_ws.opts.ping_s <= 0)
        s_ws.opts.ping_s = 30;
    ev_timer_init (&s_ws.recheck_timer, s_recheck_timer, 0., 0.);
    s_deadlines_init (&s_ws.auth, AUTH_TIMEOUT_MS, offsetof (ws_conn_t, auth_due), s_auth_timeout);
    s_deadlines_init (&s_ws.check, (int64_t) s_ws.opts.revalidate_s * 1000,
                      offsetof (ws_conn_t, check_due), s_check_due);
    s_deadlines_init (&s_ws.ping, (int64_t) s_ws.opts.ping_s * 1000,
                      offsetof (ws_conn_t, ping_due), s_ping_due);
    s_ws.conns = u64map_new ();
    s_ws.users = zhashx_new ();
    s_ws.index = zhashx_new ();
    if (!s_ws.conns || !s_ws.users || !s_ws.index) {
        u64map_destroy (&s_ws.conns);
        zhashx_destroy (&s_ws.users);
        zhashx_destroy (&s_ws.index);
        return -1;
    }
    zhashx_set_destructor (s_ws.index, s_destroy_list);
    s_ws.log.burst = 5;
    s_ws.started = 1;
    gw_presence_start (gw);
    return 0;
}

void
gw_ws_stop (gw_t *gw)
{
    if (!s_ws.started)
        return;
    gw_presence_stop (gw);
    ev_timer_stop (gw->loop, &s_ws.recheck_timer);
    free (s_ws.recheck);
    s_ws.recheck = NULL;
    s_ws.recheck_n = s_ws.recheck_at = 0;
    ev_timer_stop (gw->loop, &s_ws.auth.timer);
    ev_timer_stop (gw->loop, &s_ws.check.timer);
    ev_timer_stop (gw->loop, &s_ws.ping.timer);
}

void
gw_ws_destroy (gw_t *gw)
{
    (void) gw;
    if (!s_ws.started)
        return;
    /*  lws closed every socket with its context; anything left is freed
        without touching lws. */
    for (;;) {
        size_t cursor = 0;
        uint64_t id;
        void *value;
        if (!u64map_next (s_ws.conns, &cursor, &id, &value))
            break;
        ws_conn_t *c = value;
        c->wsi = NULL;
        s_conn_free (c);
    }
    for (ws_user_t *user = zhashx_first (s_ws.users); user; user = zhashx_first (s_ws.users))
        s_user_free (user);
    u64map_destroy (&s_ws.conns);
    zhashx_destroy (&s_ws.users);
    zhashx_destroy (&s_ws.index);
    s_ws.started = 0;
}

void
gw_ws_each_user (gw_ws_user_fn *fn, void *arg)
{
    if (!s_ws.started)
        return;
    for (ws_user_t *user = zhashx_first (s_ws.users); user; user = zhashx_next (s_ws.users))
        fn (user->id, arg);
}
