/*  harness: starts Parta processes for service tests on unix sockets in a
    fresh temporary directory, and stops them (and removes the directory)
    at the end. Binaries come from $PARTA_BIN (default build/bin). */
#ifndef PARTA_HARNESS_H
#define PARTA_HARNESS_H

#include "bus_client.h"
#include "config.h"

#include <sys/types.h>

#define HARNESS_MAX_PROCS 32

typedef struct {
    char dir[256];
    char bus[320], events_in[320], events_out[320];
    pid_t pids[HARNESS_MAX_PROCS];
    char names[HARNESS_MAX_PROCS][64];
    int n;
    config_t *cfg;              /* for in-process clients, workers, consumers */
    const char *extra_env[16];  /* "NAME=value" added to every spawned process */
} harness_t;

/*  Makes the directory and the endpoints; heartbeats of 200 ms so that
    failures are noticed quickly. */
int harness_init (harness_t *h);
/*  Kills every process still running and removes the directory. */
void harness_fini (harness_t *h);

/*  Starts build/bin/<binary> with the harness's environment plus `args`
    (NULL-terminated, may be NULL). Its stderr goes to <dir>/<binary>.N.log. */
pid_t harness_spawn (harness_t *h, const char *binary, const char *const *args);
/*  Sends `sig` and waits for the process to end. */
void harness_kill (harness_t *h, pid_t pid, int sig);
/*  Stops process `i` with SIGTERM, as an operator would, and returns 0
    when it exited with status 0 within 10 s. Under the sanitizers that is
    also where leaks and late errors are reported (exit status 1 or 23);
    the process's log is printed then. */
int harness_stop (harness_t *h, int i);
/*  Prints process `i`'s log on stderr, with how it ended (`status` as
    waitpid gave it). */
void harness_print_log (harness_t *h, int i, int status);
int harness_alive (pid_t pid);

bus_client_t *harness_client (harness_t *h);
/*  Waits (at most timeout_ms) until the broker answers. 0 when it did. */
int harness_wait_broker (harness_t *h, int timeout_ms);
/*  Waits (at most timeout_ms) until the broker lists `n` workers of
    `service`. 0 when it happened. */
int harness_wait_workers (harness_t *h, const char *service, int n, int timeout_ms);

#endif
