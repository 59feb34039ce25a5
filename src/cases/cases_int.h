/* Inside the cases module only: names, settings, SLA policies, the case row, clocks. */
#ifndef CD_CASES_INT_H
#define CD_CASES_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include "calendar/calendar.h"
#include "cases.h"

#define CD__CASES_NAME_MAX 48   /* team, skill, tag, policy id, agent name parts */
#define CD__CASES_MAX_POLICIES 32
#define CD__CASES_MAX_TARGETS 32
#define CD__CASES_MAX_ROUTES 32
#define CD__CASES_MAX_TIERS 16
#define CD__CASES_MAX_LIST 8     /* names in one "when" list */
#define CD__CASES_MAX_TAGS 16    /* tags on one case */
#define CD__CASES_MAX_FILE (256 * 1024)
#define CD__CASES_MS_NEVER 253402300800000LL /* 10000-01-01: after every deadline */

/* ---- names (index = enum value) ---- */

enum cd__case_type { CT_QUESTION, CT_COMPLAINT, CT_REQUEST, CT_INCIDENT, CT__COUNT };
enum cd__case_status {
    CS_NEW,
    CS_OPEN,
    CS_PENDING_CUSTOMER,
    CS_PENDING_THIRD_PARTY,
    CS_RESOLVED,
    CS_CLOSED,
    CS_REOPENED,
    CS__COUNT
};
enum cd__impact { CI_LOW, CI_NORMAL, CI_HIGH, CI_CRITICAL, CI__COUNT };
enum cd__clock { CK_FIRST, CK_NEXT, CK_RESOLUTION, CK__COUNT };

extern const char *const cd__case_types[CT__COUNT + 1];     /* NULL-terminated */
extern const char *const cd__case_statuses[CS__COUNT + 1];
extern const char *const cd__case_impacts[CI__COUNT + 1];
extern const char *const cd__case_clocks[CK__COUNT + 1];
extern const char *const cd__case_channels[];  /* core's channels, NULL-terminated */
extern const char *const cd__case_remedies[];
extern const char *const cd__case_outcomes[];
extern const char *const cd__case_vulnerabilities[];

/* The index of s in a NULL-terminated list, or -1. */
int cd__cases_name_index(const char *const *list, struct cd_str s);
/* "a, b or c" of a NULL-terminated list, for messages (static storage per list). */
const char *cd__cases_name_list(const char *const *list, char *buf, size_t n);
/* The optional member key of body, one of the names of list, as its index into *out (left as
 * it is when the member is absent). Errors: CD_ERR_INVALID naming the member and the names. */
enum cd_err cd__cases_name_member(const json_t *body, const char *key, const char *const *list,
                                  int *out);
/* True if s is a slug: 1..47 bytes of a-z, 0-9, '-', '_' (teams, skills, tags, ids). */
bool cd__cases_slug(struct cd_str s);

/* True if the status machine allows from -> to. */
bool cd__cases_transition_ok(enum cd__case_status from, enum cd__case_status to);

/* ---- settings and policies (config.c) ---- */

/* A condition on a case; an empty mask or list matches anything. */
struct cd__when {
    unsigned types, channels, priorities; /* bit masks: type index, channel index, 1 << prio */
    char tags[CD__CASES_MAX_LIST][CD__CASES_NAME_MAX];
    size_t ntags;
    char teams[CD__CASES_MAX_LIST][CD__CASES_NAME_MAX];
    size_t nteams;
};

/* What a case is matched on. tags/ntags may be NULL/0. */
struct cd__case_facts {
    int type, channel, priority;
    const char *team;
    const char (*tags)[CD__CASES_NAME_MAX];
    size_t ntags;
};
bool cd__when_matches(const struct cd__when *w, const struct cd__case_facts *f);

struct cd__sla_target {
    struct cd__when when;
    bool has[CK__COUNT];
    struct cd_period p[CK__COUNT];
};

struct cd__sla_policy {
    char id[CD__CASES_NAME_MAX];
    char name[160];
    char calendar[CD_CALENDAR_ID_MAX];
    char version[13]; /* the first 12 hex digits of the SHA-256 of the file */
    const struct cd_calendar *cal;
    struct cd__when applies;
    unsigned pause_on; /* statuses (bit per enum cd__case_status) that pause the resolution */
    struct cd_period due_soon;
    struct cd__sla_target targets[CD__CASES_MAX_TARGETS];
    size_t ntargets;
};

struct cd__route {
    struct cd__when when;
    char team[CD__CASES_NAME_MAX], skill[CD__CASES_NAME_MAX];
};

struct cd__settings {
    /* intake */
    bool open_from_inbound, recognise_complaints;
    unsigned intake_channels;
    int default_type;
    char default_team[CD__CASES_NAME_MAX];
    struct cd_period reopen_window;
    /* priority: 1 (most urgent) .. 4; base by type, steps added (negative: more urgent) */
    int base[CT__COUNT];
    int impact_step[CI__COUNT];
    int vulnerability_step;
    struct {
        bool on;
        char tiers[CD__CASES_MAX_TIERS][CD__CASES_NAME_MAX];
        int steps[CD__CASES_MAX_TIERS];
        size_t n;
        char disclosure[1024];
    } value;
    struct cd__route routes[CD__CASES_MAX_ROUTES];
    size_t nroutes;
    bool blind;
    /* ETAs */
    int eta_min_sample, eta_max_sample, eta_history_days;
};

/* Fills s with the built-in defaults (what settings.yaml ships with). */
void cd__settings_defaults(struct cd__settings *s);
/* Parses settings YAML over the defaults. Errors: CD_ERR_INVALID "NAME:LINE: what". */
enum cd_err cd__settings_parse(struct cd__settings *s, const char *name, const char *data,
                               size_t len);
/* Parses one SLA policy, resolving its calendar in cals. Errors: CD_ERR_INVALID. */
enum cd_err cd__sla_policy_parse(struct cd__sla_policy *p, const struct cd_calendars *cals,
                                 const char *name, const char *data, size_t len);
/* The settings and policies as JSON (cd_cases_policies_json). */
json_t *cd__policy_json(const struct cd__sla_policy *p);

/* ---- the module ---- */

struct cd__cases_stats {
    /* what /metrics shows, computed by the sweeper */
    int64_t at;
    long by_status[CS__COUNT];
    long due_soon, breached_open;
    long breaches_total[CK__COUNT];
    /* quantiles over cases resolved in the last 30 days, seconds */
    double fr_q[3], rs_q[3]; /* p50, p90, p99 */
    long fr_n, rs_n;
};

struct cd_cases {
    struct cd_store *store;
    struct cd_core *core;
    struct cd_consent *consent; /* decides incident notices (may be NULL) */
    const struct cd_calendars *cals;
    const struct cd_calendar *always; /* "24x7": elapsed time */
    struct cd__settings set;
    struct cd__sla_policy *policies;
    size_t npolicies;
    /* the sweeper */
    pthread_t sweeper;
    bool sweeper_running;
    unsigned sweep_ms;
    pthread_mutex_t mu; /* stop flag and stats */
    pthread_cond_t cv;
    bool stop;
    struct cd__cases_stats stats;
};

/* ---- the case row ---- */

/* The policy and targets that applied to a case, as recorded in its sla column. */
struct cd__applied {
    bool has_policy;
    char policy[CD__CASES_NAME_MAX], version[13], calendar[CD_CALENDAR_ID_MAX];
    int target;
    bool has[CK__COUNT];
    struct cd_period p[CK__COUNT];
    unsigned pause_on;
    struct cd_period due_soon;
    const struct cd_calendar *cal; /* resolved (24x7 when the calendar is no longer loaded) */
    /* The calendar each clock's time is measured in: the policy's for business units, 24x7
     * (elapsed time) otherwise. */
    const struct cd_calendar *measure[CK__COUNT];
};

struct cd__case {
    char id[CD_ID_MAX], customer_id[CD_ID_MAX];
    int type, status, priority, impact, channel;
    char team[CD__CASES_NAME_MAX], skill[CD__CASES_NAME_MAX], assignee[CD_ID_MAX];
    char tags[CD__CASES_MAX_TAGS][CD__CASES_NAME_MAX];
    size_t ntags;
    char source[16];
    char complaint_rules[512]; /* JSON array text, or "" */
    char incident_id[CD_ID_MAX], follows[CD_ID_MAX];
    char priority_why[1024]; /* JSON object text */
    struct cd__applied sla;
    int64_t created_at, updated_at, opened_at;
    /* clocks: 0 means "none" for every instant below (no case predates 1970) */
    int64_t fr_due, fr_at, fr_breached;
    int64_t nr_start, nr_due, nr_breached;
    long nr_breaches;
    int64_t rs_due, rs_paused_ms, rs_paused_since, rs_breached;
    int64_t queue_due; /* the earliest deadline of a running clock (0: none runs) */
    int64_t watch_at;  /* ... of those not yet marked breached: the sweeper's next look */
    unsigned breached; /* bit per clock breached at least once */
    bool queued;
    long queue_len;
    int64_t resolved_at, closed_at;
    long reopened;
    int remedy; /* -1: none recorded */
    int64_t remedy_amount;
    bool has_amount;
    char remedy_currency[4];
    int outcome; /* -1: none */
    struct cd_buf sealed; /* the sealed column as stored */
    char flagged[64];
    long version;
    /* What the stored row holds of the queue (set when it is read or written): a store that
     * moves the case into, out of or between teams' queues changes their waiting counts. */
    bool stored, stored_queued;
    char stored_team[CD__CASES_NAME_MAX];
};

/* Sensitive values of a case (sealed for the customer). */
struct cd__sensitive {
    unsigned vulnerability; /* bit per cd__case_vulnerabilities index */
    bool has_value;
    char tier[CD__CASES_NAME_MAX];
    bool has_spend;
    int64_t spend_minor;
    char currency[4];
};

void cd__case_init(struct cd__case *k);
void cd__case_free(struct cd__case *k);
/* The columns every case query selects, in the order cd__case_row reads them. A macro: the
 * store caches statements by their text's address, so SQL is always a literal. */
#define CD__CASE_COLS                                                                             \
    "id, customer_id, type, status, priority, impact, channel, team, skill, assignee, tags,"      \
    " source, complaint_rules, incident_id, follows, priority_why, sla, created_at, updated_at,"  \
    " opened_at, fr_due, fr_at, fr_breached, nr_start, nr_due, nr_breaches, nr_breached, rs_due," \
    " rs_paused_ms, rs_paused_since, rs_breached, queue_due, watch_at, breached, queued,"         \
    " queue_rank, queue_len, resolved_at, closed_at, reopened, remedy, remedy_amount,"            \
    " remedy_currency, outcome, sealed, flagged, version"
/* Row callback over cd__case_cols: reads one case into r->k (r->found set). */
struct cd__case_read {
    const struct cd_cases *cs;
    struct cd__case *k;
    bool found;
};
enum cd_err cd__case_row(void *ctx, const struct cd_val *cols, size_t n);
/* Reads case id inside tx. Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd__case_load(struct cd_cases *cs, struct cd_tx *tx, struct cd_str id,
                          struct cd__case *k);
/* Inserts (insert true) or updates the case row, and keeps the waiting count of each team's
 * queue (case_queue_counts) in step, in the same transaction. */
enum cd_err cd__case_store(struct cd_tx *tx, struct cd__case *k, bool insert);
/* Ids read by a query (its first column) before anything is written for them: a write inside
 * a row callback would interleave with the rows still arriving (PostgreSQL's pipeline). */
struct cd__id_list {
    char (*ids)[CD_ID_MAX]; /* cd_free when done */
    size_t n, cap;
};
/* A row callback appending column 0 to a struct cd__id_list. Errors: CD_ERR_NOMEM. */
enum cd_err cd__cases_id_row(void *ctx, const struct cd_val *c, size_t n);

/* Appends a history row and its ledger event for a change of k made by a (actor "system"
 * when a is NULL). data: a JSON object (borrowed), the change. */
enum cd_err cd__case_event(struct cd_tx *tx, const struct cd_actor *a, const struct cd__case *k,
                           const char *action, const json_t *data, int64_t at);
/* Records each clock newly breached (bits, one per enum cd__clock) of k, noticed at `at`: a
 * history row and its ledger entry, and a case.breached event on the outbox (webhooks), all
 * in tx. */
enum cd_err cd__case_breaches(struct cd_tx *tx, const struct cd__case *k, unsigned bits,
                              int64_t at);
/* Links an interaction to a case. Errors: CD_ERR_STORE. */
enum cd_err cd__case_link(struct cd_tx *tx, const char *case_id, const char *interaction_id,
                          const char *direction, int64_t at);

/* The case as JSON for view v (sensitive: opened values, or NULL when they are not shown).
 * Errors: CD_ERR_NOMEM. */
enum cd_err cd__case_json(const struct cd__case *k, const struct cd__sensitive *sens,
                          const struct cd_cases_view *v, int64_t now, json_t **out);

/* ---- clocks (sla.c) ---- */

/* Chooses the policy and target row for a case's facts into *ap (has_policy false when no
 * policy applies). */
void cd__sla_choose(const struct cd_cases *cs, const struct cd__case_facts *f,
                    struct cd__applied *ap);
/* The sla column's JSON text for ap (cd_malloc'ed), and back. */
enum cd_err cd__sla_dump(const struct cd__applied *ap, char **out);
void cd__sla_load(const struct cd_cases *cs, const char *json, struct cd__applied *ap);
/* When a clock of ap that started at start ends, given paused_ms of the clock's own time
 * (working time for business units, elapsed otherwise) during which it stood still.
 * *due = 0 when ap has no target for the clock. Errors: CD_ERR_INVALID (a calendar without
 * working time). */
enum cd_err cd__sla_due(const struct cd__applied *ap, enum cd__clock ck, int64_t start,
                        int64_t paused_ms, int64_t *due);
/* The time of the clock's own kind between from and to (for pauses). */
int64_t cd__sla_between(const struct cd__applied *ap, enum cd__clock ck, int64_t from,
                        int64_t to);
/* The instant a running clock counts as due soon (due minus the policy's due_soon window). */
int64_t cd__sla_soon(const struct cd__applied *ap, int64_t due);

/* What happened to a case, for the clocks. */
enum cd__clock_event {
    CE_OPEN,         /* the case opened at `at` (clocks start) */
    CE_INBOUND,      /* the customer wrote */
    CE_OUTBOUND,     /* the company answered */
    CE_STATUS,       /* the status changed (k->status is the new one; from is the old) */
    CE_RETARGET,     /* type or priority changed: dues recomputed with new targets */
    CE_REFRESH,      /* the owner changed: only whether it waits in the queue */
    CE_SWEEP,        /* time passed: deadlines before `at` that no one met are breached */
};
/* Moves k's clocks for event ev at instant at (from: the previous status for CE_STATUS), and
 * sets queue_due and queued. Breaches of clocks met late are marked (their *_breached set);
 * *breached (may be NULL) gets a bit per clock newly breached. */
enum cd_err cd__clocks_apply(struct cd__case *k, enum cd__clock_event ev, int from, int64_t at,
                             unsigned *breached);

/* ---- priority and routing (cases.c) ---- */

/* The priority of the issue and its explanation (JSON text into why[n]). */
int cd__priority(const struct cd_cases *cs, int type, int impact, unsigned vulnerability,
                 const char *tier, char *why, size_t n);
/* Team and skill by the routing rules (the settings' default team when none says). */
void cd__route(const struct cd_cases *cs, const struct cd__case_facts *f, char *team,
               char *skill);

/* Opens a new case row k (id, customer, type, channel, impact set by the caller; the rest
 * here) at instant at: priority, routing, SLA, clocks, queue length. */
enum cd_err cd__case_new(struct cd_cases *cs, struct cd_tx *tx, struct cd__case *k,
                         const struct cd__sensitive *sens, int64_t at);
/* ---- cursors (queue.c) ---- */

/* A list's cursor: "<ms>.<id>" in base64url, id of the kind prefix ("cas", "inc"). */
void cd__cursor_make(int64_t ms, const char *id, char out[128]);
enum cd_err cd__cursor_parse(struct cd_str c, const char *prefix, int64_t *ms,
                             char id[CD_ID_MAX]);

/* ---- incidents (incidents.c) ---- */

extern const char *const cd__incident_kinds[];
extern const char *const cd__incident_statuses[];
/* Decides again the notices quiet hours deferred, telling those whose time has come; *told
 * (may be NULL) is increased by how many were told. Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd__incidents_sweep(struct cd_cases *cs, int64_t now, size_t *told);

/* Number of cases waiting for an agent in team (the queue length), as tx sees it: the count
 * every store of a case keeps (case_queue_counts). Errors: CD_ERR_STORE. */
enum cd_err cd__queue_len(struct cd_cases *cs, struct cd_tx *tx, const char *team, long *n);

/* Sealing of the sensitive values (cases.c). */
enum cd_err cd__sensitive_seal(struct cd_cases *cs, struct cd_tx *tx, const struct cd__case *k,
                               const struct cd__sensitive *s, struct cd_buf *out);
/* Opens k's sealed values; *ok false when they cannot be read (customer erased). */
enum cd_err cd__sensitive_open(struct cd_cases *cs, struct cd_tx *tx, const struct cd__case *k,
                               struct cd__sensitive *s, bool *ok);

/* Time formatting for answers: RFC 3339 or JSON null for 0. */
json_t *cd__time_json(int64_t ms);

#endif
