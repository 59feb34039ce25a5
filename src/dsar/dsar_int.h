/* Inside the dsar module only. */
#ifndef CD_DSAR_INT_H
#define CD_DSAR_INT_H

#include <pthread.h>
#include "dsar.h"

#define CD__DSAR_ID_MAX 32      /* a regime id, with its terminator */
#define CD__DSAR_CODE_MAX 16    /* a jurisdiction code, with its terminator */
#define CD__DSAR_TEXT_MAX 4000  /* details and explanations, in bytes */

/* The periods of one type of request under one regime. */
struct cd__dsar_periods {
    bool has_ack, has_ext;
    struct cd_period ack, answer, ext;
};

struct cd__dsar_regime {
    char id[CD__DSAR_ID_MAX];
    char *name, *authority, *basis;
    const struct cd_calendar *cal;
    bool is_default;
    /* The answer's days count from the day of receipt (CCPA: "beginning on the day the
     * business receives the request"), not from the day after (EU Regulation 1182/71). */
    bool answer_counts_receipt_day;
    char (*match)[CD__DSAR_CODE_MAX];
    size_t nmatch;
    struct cd__dsar_periods p[CD_DSAR_TYPE__COUNT];
};

struct cd_dsar_rules {
    struct cd__dsar_regime *r;
    size_t n;
    size_t def;
    int due_soon_days;
};

struct cd_dsar {
    struct cd_store *store;
    struct cd_core *core;
    struct cd_dsar_rules *rules;
    /* the watcher (watch.c) */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stopping, counted;
    unsigned interval_ms;
    struct cd_dsar_counts counts;
};

/* Stops the watcher if it runs (cd_dsar_close). */
void cd__dsar_stop(struct cd_dsar *d);

const struct cd__dsar_regime *cd__dsar_regime(const struct cd_dsar_rules *r, struct cd_str id);

#endif
