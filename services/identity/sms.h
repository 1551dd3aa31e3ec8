/*  sms: how one-time codes reach people. A sender is chosen by
    configuration (PARTA_SMS): "outbox" (the default) appends each message
    as one JSON line {"to","text","at"} to <data>/sms.outbox, which is how
    local runs and tests read codes; "exec:<program>" runs the program with
    the phone as its argument and the text on its standard input (a site's
    bridge to its SMS provider), gives it ten seconds and counts exit status
    0 as sent. */
#ifndef PARTA_SMS_H
#define PARTA_SMS_H

#include <stdint.h>

typedef struct sms_sender_t sms_sender_t;

/*  NULL (logged) when `spec` names no known sender. */
sms_sender_t *sms_sender_new (const char *spec, const char *data_dir);
void sms_sender_destroy (sms_sender_t **self_p);
/*  0 when handed over, -1 when it could not be. */
int sms_send (sms_sender_t *self, const char *to, const char *text, int64_t at_ms);

#endif
