/* Inside the retention module only. */
#ifndef CD_RETENTION_INT_H
#define CD_RETENTION_INT_H

#include "calendar/calendar.h"
#include "retention.h"

/* The data sets a rule may name (rules.c). */
enum cd__ret_set {
    CD__RET_INTERACTIONS,
    CD__RET_CUSTOMERS,
    CD__RET_IDEMPOTENCY,
    CD__RET_DELIVERIES,
    CD__RET_EVENTS,
    CD__RET_LEDGER,
    CD__RET_CONSENT,
    CD__RET__COUNT
};

struct cd__ret_data {
    const char *name;
    const char *afters[2]; /* what "after" may name; NULL-padded */
    bool purpose_ok;       /* a rule may be for one purpose */
    bool forever_only;     /* kept for good: the rule must say keep: forever */
    bool required;         /* the rules must cover it */
};
extern const struct cd__ret_data cd__ret_data[CD__RET__COUNT];

struct cd__ret_rule {
    int data;    /* enum cd__ret_set */
    int purpose; /* enum cd_purpose, or -1: every purpose without a rule of its own */
    bool forever;
    struct cd_period period; /* days, weeks or months (a year is twelve) */
    int after;               /* index into the data set's afters */
    char keep[48];           /* as written */
    char why[512];
};

struct cd_retention_rules {
    struct cd__ret_rule *v;
    size_t n;
};

/* The instant before which data under rule r has expired, at now. */
int64_t cd__ret_cutoff(const struct cd__ret_rule *r, int64_t now);
/* A rule as JSON {"data","purpose","keep","after","why"}. Errors: CD_ERR_NOMEM. */
enum cd_err cd__ret_rule_json(const struct cd__ret_rule *r, json_t **out);

/* The customers held now (surviving ids, sorted), for a run. The caller frees *ids with
 * cd_free (and each string it holds). Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
struct cd__held {
    char (*ids)[CD_ID_MAX];
    size_t n;
};
enum cd_err cd__ret_held(struct cd_store *s, struct cd__held *out);
bool cd__ret_is_held(const struct cd__held *h, const char *customer_id);

#endif
