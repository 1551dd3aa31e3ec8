/*  harness: see harness.h. */
#include "harness.h"
#include "clock.h"

#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int
harness_init (harness_t *h)
{
    memset (h, 0, sizeof *h);
    snprintf (h->dir, sizeof h->dir, "/tmp/parta-test-XXXXXX");
    if (!mkdtemp (h->dir))
        return -1;
    snprintf (h->bus, sizeof h->bus, "ipc://%s/bus.sock", h->dir);
    snprintf (h->events_in, sizeof h->events_in, "ipc://%s/events-in.sock", h->dir);
    snprintf (h->events_out, sizeof h->events_out, "ipc://%s/events-out.sock", h->dir);
    char err[128];
    h->cfg = config_new ("test", NULL, 0, NULL, err, sizeof err);
    config_set (h->cfg, "bus", h->bus);
    config_set (h->cfg, "events_in", h->events_in);
    config_set (h->cfg, "events_out", h->events_out);
    config_set (h->cfg, "data", h->dir);
    config_set (h->cfg, "heartbeat_ms", "200");
    config_set (h->cfg, "liveness", "3");
    return 0;
}

void
harness_fini (harness_t *h)
{
    for (int i = 0; i < h->n; i++)
        if (h->pids[i] > 0 && harness_alive (h->pids[i]))
            harness_kill (h, h->pids[i], SIGKILL);
    config_destroy (&h->cfg);
    if (getenv ("PARTA_KEEP_TEST_DIR"))
        return;
    char cmd[400];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", h->dir);
    if (system (cmd) != 0)
        fprintf (stderr, "harness: could not remove %s\n", h->dir);
}

pid_t
harness_spawn (harness_t *h, const char *binary, const char *const *args)
{
    if (h->n >= HARNESS_MAX_PROCS)
        return -1;
    const char *bin = getenv ("PARTA_BIN");
    char path[512], log[512];
    snprintf (path, sizeof path, "%s/%s", bin && *bin ? bin : "build/bin", binary);
    snprintf (log, sizeof log, "%s/%s.%d.log", h->dir, binary, h->n);
    fflush (NULL);
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setenv ("PARTA_BUS", h->bus, 1);
        setenv ("PARTA_EVENTS_IN", h->events_in, 1);
        setenv ("PARTA_EVENTS_OUT", h->events_out, 1);
        setenv ("PARTA_DATA", h->dir, 1);
        setenv ("PARTA_HEARTBEAT_MS", "200", 1);
        setenv ("PARTA_LIVENESS", "3", 1);
        if (!getenv ("PARTA_LOG"))
            setenv ("PARTA_LOG", "info", 1);
        for (int i = 0; i < 16 && h->extra_env[i]; i++)
            putenv ((char *) h->extra_env[i]);
        FILE *f = freopen (log, "a", stderr);
        (void) f;
        char *argv[32];
        int argc = 0;
        argv[argc++] = path;
        for (int i = 0; args && args[i] && argc < 31; i++)
            argv[argc++] = (char *) args[i];
        argv[argc] = NULL;
        execv (path, argv);
        fprintf (stderr, "harness: cannot run %s\n", path);
        _exit (127);
    }
    h->pids[h->n] = pid;
    snprintf (h->names[h->n], sizeof h->names[0], "%s", binary);
    h->n++;
    return pid;
}

int
harness_alive (pid_t pid)
{
    int status;
    return waitpid (pid, &status, WNOHANG) == 0;
}

void
harness_kill (harness_t *h, pid_t pid, int sig)
{
    (void) h;
    kill (pid, sig);
    int status;
    waitpid (pid, &status, 0);
    for (int i = 0; i < h->n; i++)
        if (h->pids[i] == pid)
            h->pids[i] = -1;
}

void
harness_print_log (harness_t *h, int i, int status)
{
    fprintf (stderr, "%s ended with status %d; its log:\n", h->names[i], status);
    char path[600], line[1024];
    snprintf (path, sizeof path, "%s/%s.%d.log", h->dir, h->names[i], i);
    FILE *f = fopen (path, "r");
    while (f && fgets (line, sizeof line, f))
        fprintf (stderr, "  %s", line);
    if (f)
        fclose (f);
}

int
harness_stop (harness_t *h, int i)
{
    pid_t pid = h->pids[i];
    if (pid <= 0)
        return 0;
    kill (pid, SIGTERM);
    int status = 0;
    pid_t done = 0;
    for (int64_t until = clock_mono_ms () + 10000; !done && clock_mono_ms () < until;) {
        done = waitpid (pid, &status, WNOHANG);
        if (!done)
            zclock_sleep (20);
    }
    if (done != pid) {
        fprintf (stderr, "%s did not stop on SIGTERM\n", h->names[i]);
        return -1;      /* harness_fini kills it */
    }
    h->pids[i] = -1;
    if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
        return 0;
    harness_print_log (h, i, status);
    return -1;
}

bus_client_t *
harness_client (harness_t *h)
{
    return bus_client_new_from_config (h->cfg);
}

int
harness_wait_broker (harness_t *h, int timeout_ms)
{
    bus_client_t *client = harness_client (h);
    int64_t until = clock_mono_ms () + timeout_ms;
    status_t st = ST_UNAVAILABLE;
    while (st != ST_OK && clock_mono_ms () < until) {
        bus_call_opts_t opts = {.timeout_ms = 300};
        st = bus_client_call (client, "mmi", "mmi.stats", NULL, &opts, NULL, NULL, NULL, NULL);
    }
    bus_client_destroy (&client);
    return st == ST_OK ? 0 : -1;
}

int
harness_wait_workers (harness_t *h, const char *service, int n, int timeout_ms)
{
    bus_client_t *client = harness_client (h);
    int64_t until = clock_mono_ms () + timeout_ms;
    int rc = -1;
    while (rc && clock_mono_ms () < until) {
        arena_t *arena = arena_new ();
        Bus__MmiServices *list = NULL;
        bus_call_opts_t opts = {.timeout_ms = 500};
        if (bus_client_call (client, "mmi", "mmi.services", NULL, &opts,
                             &bus__mmi_services__descriptor, arena, (ProtobufCMessage **) &list,
                             NULL)
                == ST_OK
            && list)
            for (size_t i = 0; i < list->n_items; i++)
                if (strcmp (list->items[i]->name, service) == 0
                    && (int) list->items[i]->workers == n)
                    rc = 0;
        arena_destroy (&arena);
        if (rc)
            zclock_sleep (50);
    }
    bus_client_destroy (&client);
    return rc;
}
