/*  sms: the senders (see sms.h), a table like the rest of Parta. */
#include "sms.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct sms_sender_t {
    int (*send) (sms_sender_t *self, const char *to, const char *text, int64_t at_ms);
    char target[1024];
};

static int
s_outbox (sms_sender_t *self, const char *to, const char *text, int64_t at_ms)
{
    char at[40];
    clock_format_rfc3339 (at_ms, at, sizeof at);
    json_t *line = json_pack ("{s:s, s:s, s:s}", "to", to, "text", text, "at", at);
    char *dumped = line ? json_dumps (line, JSON_COMPACT) : NULL;
    json_decref (line);
    if (!dumped)
        return -1;
    size_t len = strlen (dumped);
    char *buf = malloc (len + 2);
    if (!buf) {
        free (dumped);
        return -1;
    }
    memcpy (buf, dumped, len);
    buf[len++] = '\n';
    free (dumped);
    /*  One write with O_APPEND: lines of several instances never mix. */
    int fd = open (self->target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    int rc = -1;
    if (fd >= 0) {
        rc = write (fd, buf, len) == (ssize_t) len ? 0 : -1;
        close (fd);
    }
    if (rc)
        log_error (NULL, "cannot write the sms outbox path=%s error=\"%s\"", self->target,
                   strerror (errno));
    free (buf);
    return rc;
}

/*  Runs the program with the phone as its argument and the text on its
    standard input (argv is readable by every local user; a code is not).
    It gets ten seconds, then it is killed. */
static int
s_exec (sms_sender_t *self, const char *to, const char *text, int64_t at_ms)
{
    (void) at_ms;
    int fds[2];
    if (pipe2 (fds, O_CLOEXEC))
        return -1;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, fds[0], STDIN_FILENO);
    char *argv[] = {self->target, (char *) to, NULL};
    pid_t pid;
    int rc = posix_spawn (&pid, self->target, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    close (fds[0]);
    if (rc != 0) {
        close (fds[1]);
        log_error (NULL, "cannot run the sms program path=%s", self->target);
        return -1;
    }
    size_t len = strlen (text);
    ssize_t wrote = write (fds[1], text, len);
    close (fds[1]);
    int status = 0, done = 0;
    for (int i = 0; i < 1000 && !done; i++) {
        pid_t r = waitpid (pid, &status, WNOHANG);
        if (r == pid)
            done = 1;
        else if (r < 0 && errno != EINTR)
            break;
        else
            usleep (10000);
    }
    if (!done) {
        kill (pid, SIGKILL);
        waitpid (pid, &status, 0);
        log_error (NULL, "the sms program took too long and was stopped path=%s", self->target);
        return -1;
    }
    if (wrote != (ssize_t) len || !WIFEXITED (status) || WEXITSTATUS (status) != 0) {
        log_error (NULL, "the sms program failed path=%s status=%d", self->target, status);
        return -1;
    }
    return 0;
}

sms_sender_t *
sms_sender_new (const char *spec, const char *data_dir)
{
    sms_sender_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    if (!spec || !*spec || strcmp (spec, "outbox") == 0) {
        self->send = s_outbox;
        snprintf (self->target, sizeof self->target, "%s/sms.outbox", data_dir);
    }
    else if (strncmp (spec, "exec:", 5) == 0 && spec[5]) {
        self->send = s_exec;
        snprintf (self->target, sizeof self->target, "%s", spec + 5);
    }
    else {
        log_error (NULL, "unknown sms sender spec=%s (use outbox or exec:<program>)", spec);
        free (self);
        return NULL;
    }
    return self;
}

void
sms_sender_destroy (sms_sender_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

int
sms_send (sms_sender_t *self, const char *to, const char *text, int64_t at_ms)
{
    return self->send (self, to, text, at_ms);
}
