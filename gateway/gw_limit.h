/*  gw_limit: applies a rate-limit class to a subject (an IP, a phone, a
    user) through Redis when it is up and the per-process fallback when it
    is not (the same GCRA either way, gw_ratelimit.h). */
#ifndef PARTA_GW_LIMIT_H
#define PARTA_GW_LIMIT_H

#include "gw.h"

typedef void (gw_limit_done_fn) (gw_t *gw, uint64_t req_id, int allowed, int64_t retry_after_ms);

/*  Returns 1 (allowed) or 0 (refused, *retry_after_ms set) when decided at
    once, or -1 when Redis will answer: `done` runs then, exactly once. An
    unknown class allows (and logs once). Refusals are counted in metrics. */
int gw_limit_check (gw_t *gw, const char *cls, const char *subject, uint64_t req_id,
                    gw_limit_done_fn *done, int64_t *retry_after_ms);

#endif
