/*  gw_join: see gw_join.h. */
#include "gw_join.h"
#include "clock.h"
#include "invite.pb-c.h"
#include "log.h"
#include "status.h"

#include <stdarg.h>
#include <string.h>

#define PAGE_MAX (64 * 1024)

/*  A page being written; a write that does not fit marks it failed. */
typedef struct {
    char *buf;
    size_t len;
    int failed;
} page_t;

static void
s_put (page_t *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (p->buf + p->len, PAGE_MAX - p->len, fmt, ap);
    va_end (ap);
    if (n < 0 || (size_t) n >= PAGE_MAX - p->len)
        p->failed = 1;
    else
        p->len += (size_t) n;
}

/*  Text from a service, escaped for HTML. */
static void
s_put_text (page_t *p, const char *text)
{
    for (const char *c = text ? text : ""; *c && !p->failed; c++) {
        switch (*c) {
        case '&': s_put (p, "&amp;"); break;
        case '<': s_put (p, "&lt;"); break;
        case '>': s_put (p, "&gt;"); break;
        case '"': s_put (p, "&quot;"); break;
        case '\'': s_put (p, "&#39;"); break;
        default: s_put (p, "%c", *c);
        }
    }
}

static const char *
s_role_name (Bus__Role role)
{
    switch (role) {
    case BUS__ROLE__ROLE_ADMIN: return "администратор";
    case BUS__ROLE__ROLE_ADMINISTRATION: return "администрация";
    case BUS__ROLE__ROLE_TEACHER: return "педагогический работник";
    case BUS__ROLE__ROLE_STUDENT: return "обучающийся";
    case BUS__ROLE__ROLE_PARENT: return "родитель (законный представитель)";
    default: return "участник";
    }
}

static const char *
s_status_name (Invite__InvitationStatus status)
{
    switch (status) {
    case INVITE__INVITATION_STATUS__INVITATION_STATUS_ACTIVE: return "действует";
    case INVITE__INVITATION_STATUS__INVITATION_STATUS_USED: return "уже использовано";
    case INVITE__INVITATION_STATUS__INVITATION_STATUS_REVOKED: return "отозвано";
    case INVITE__INVITATION_STATUS__INVITATION_STATUS_EXPIRED: return "срок действия истёк";
    default: return "неизвестно";
    }
}

static void
s_head (page_t *p, const char *title)
{
    s_put (p, "<!DOCTYPE html>\n<html lang=\"ru\">\n<head>\n<meta charset=\"utf-8\">\n"
              "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
              "<meta name=\"robots\" content=\"noindex\">\n<title>");
    s_put_text (p, title);
    s_put (p, " — Parta</title>\n</head>\n<body>\n<main>\n<h1>");
    s_put_text (p, title);
    s_put (p, "</h1>\n");
}

static void
s_send_page (gw_req_t *req, int status, page_t *p)
{
    s_put (p, "</main>\n</body>\n</html>\n");
    if (p->failed) {
        free (p->buf);
        gw_reply_error (req, 500, "internal", "the page could not be made", NULL);
        return;
    }
    gw_req_set_header (req, "content-security-policy", "default-src 'none'");
    gw_req_set_header (req, "x-content-type-options", "nosniff");
    gw_reply_text (req, status, "text/html; charset=utf-8", p->buf, p->len);
}

static int
s_wants_html (gw_req_t *req)
{
    return strstr (gw_req_accept (req), "text/html") != NULL;
}

static void
s_error_page (gw_req_t *req, const Bus__Reply *reply)
{
    page_t p = {malloc (PAGE_MAX), 0, 0};
    if (!p.buf) {
        gw_reply_error (req, 503, "unavailable", "out of memory", NULL);
        return;
    }
    int status = status_http (reply->status);
    if (reply->status == ST_NOT_FOUND || reply->status == ST_BAD_REQUEST) {
        s_head (&p, "Приглашение не найдено");
        s_put (&p, "<p>Такой ссылки-приглашения нет. Проверьте, что ссылка скопирована целиком, "
                   "или попросите новую у того, кто её прислал.</p>\n");
    }
    else if (reply->status == ST_RATE_LIMITED) {
        char value[16];
        snprintf (value, sizeof value, "%d", reply->retry_after > 0 ? reply->retry_after : 1);
        gw_req_set_header (req, "retry-after", value);
        s_head (&p, "Слишком много попыток");
        s_put (&p, "<p>С этого адреса проверяли слишком много ссылок. Попробуйте позже.</p>\n");
    }
    else {
        s_head (&p, "Сервис временно недоступен");
        s_put (&p, "<p>Не удалось проверить приглашение. Попробуйте ещё раз через минуту.</p>\n");
    }
    s_send_page (req, status, &p);
}

static void
s_preview_done (gw_req_t *req, const Bus__Reply *reply, void *arg)
{
    (void) arg;
    int html = s_wants_html (req);
    /*  The token is in the address: nothing keeps a copy or passes it on;
        the answer depends on Accept. */
    gw_req_set_header (req, "cache-control", "no-store");
    gw_req_set_header (req, "referrer-policy", "no-referrer");
    gw_req_set_header (req, "vary", "Accept");
    if (reply->status != ST_OK) {
        if (html)
            s_error_page (req, reply);
        else
            gw_reply_bus_error (req, reply);
        return;
    }
    Invite__Preview *pv = invite__preview__unpack (NULL, reply->body.len, reply->body.data);
    if (!pv || !html) {
        gw_reply_message (req, 200, pv ? &pv->base : NULL);
        if (pv)
            invite__preview__free_unpacked (pv, NULL);
        return;
    }
    page_t p = {malloc (PAGE_MAX), 0, 0};
    if (!p.buf) {
        invite__preview__free_unpacked (pv, NULL);
        gw_reply_error (req, 503, "unavailable", "out of memory", NULL);
        return;
    }
    s_head (&p, "Приглашение в Parta");
    s_put (&p, "<p>Вас приглашают в образовательную организацию <strong>");
    s_put_text (&p, pv->org && pv->org->name ? pv->org->name : "");
    s_put (&p, "</strong> в роли: %s.</p>\n", s_role_name (pv->role));
    if (pv->unit && pv->unit->name && *pv->unit->name) {
        s_put (&p, "<p>Группа (подразделение): ");
        s_put_text (&p, pv->unit->name);
        s_put (&p, "</p>\n");
    }
    if (pv->chat && pv->chat->title && *pv->chat->title) {
        s_put (&p, "<p>Чат: ");
        s_put_text (&p, pv->chat->title);
        s_put (&p, "</p>\n");
    }
    char until[40];
    clock_format_rfc3339 (pv->expires_at, until, sizeof until);
    s_put (&p, "<p>Приглашение %s; действует до <time datetime=\"%s\">%.10s %.5s UTC</time>.</p>\n",
           s_status_name (pv->status), until, until, until + 11);
    if (pv->status == INVITE__INVITATION_STATUS__INVITATION_STATUS_ACTIVE)
        s_put (&p, "<p>Чтобы принять приглашение, войдите в Parta по номеру телефона в приложении "
                   "и откройте эту ссылку в нём.</p>\n");
    else
        s_put (&p, "<p>По этой ссылке присоединиться уже нельзя. Попросите новую у того, кто её "
                   "прислал.</p>\n");
    invite__preview__free_unpacked (pv, NULL);
    s_send_page (req, 200, &p);
}

void
gw_join_http (gw_req_t *req)
{
    const ProtobufCMessage *msg = gw_req_msg (req);
    gw_t *gw = gw_req_gw (req);
    gw_req_call (req, "invite", "invite.preview", msg, gw->call_timeout_ms, s_preview_done, NULL);
}
