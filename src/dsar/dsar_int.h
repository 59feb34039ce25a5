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
    struct cd_dsar_links links;
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

/* A request as stored. */
struct cd__dsar_row {
    bool found;
    char id[CD_ID_MAX], customer_id[CD_ID_MAX], interaction_id[CD_ID_MAX];
    enum cd_dsar_type type;
    enum cd_dsar_state state;
    char regime[CD__DSAR_ID_MAX], intake[16], ext_reason[32], refusal_reason[32];
    int64_t received_at, created_at, updated_at, ack_due_at, acknowledged_at, due_at,
        original_due_at, unrolled_due_at, extended_at, closed_at, verified_at;
    struct cd_buf ext_note, refusal_note, details; /* sealed, as stored */
    bool has_ext_note, has_refusal_note, has_details;
};
void cd__dsar_row_init(struct cd__dsar_row *r);
void cd__dsar_row_free(struct cd__dsar_row *r);
/* Loads request id inside tx; r->found tells whether it exists. Errors: CD_ERR_STORE,
 * CD_ERR_INTEGRITY (an unknown type or state), CD_ERR_NOMEM. */
enum cd_err cd__dsar_load(struct cd_tx *tx, const char *id, struct cd__dsar_row *r);
/* Reads request id in a transaction of its own, for what a change must know before its write
 * (whose customer's key seals a text, which identity a code goes to). Errors: CD_ERR_NOT_FOUND
 * (no such request), those of cd__dsar_load. */
enum cd_err cd__dsar_read(struct cd_dsar *d, const char *id, struct cd__dsar_row *r);
/* A request id ("dsr_...") into out. Errors: CD_ERR_NOT_FOUND (malformed). */
enum cd_err cd__dsar_copy_id(struct cd_str id, char out[CD_ID_MAX]);
/* True for received, verifying, in_progress and extended. */
bool cd__dsar_open_state(enum cd_dsar_state s);
/* Appends a change of request req_id to its history and the ledger (action, e.g. dsar.open),
 * from state `from` (NULL at opening) to `to`, with a reason code or NULL. */
enum cd_err cd__dsar_record(struct cd_tx *tx, const struct cd_actor *a, const char *req_id,
                            const char *customer_id, const char *action, const char *from,
                            const char *to, const char *reason, int64_t now);

const struct cd__dsar_regime *cd__dsar_regime(const struct cd_dsar_rules *r, struct cd_str id);

/* Queues an event (taking payload; NULL is out of memory) when an outbox is wired; without one
 * it does nothing (nothing subscribes). Errors: those of the outbox, CD_ERR_NOMEM. */
enum cd_err cd__dsar_tell(struct cd_dsar *d, struct cd_tx *tx, const char *type,
                          const char *customer_id, json_t *payload);
/* An instant as an RFC 3339 JSON string (NULL when out of memory). */
json_t *cd__dsar_time(int64_t ms);

/* ---- the streaming ZIP writer (zip.c) ---- */

#define CD__ZIP_MAX_ENTRIES 32

/* Where the archive's bytes go, in order. Errors are the sink's (the export stops). */
typedef enum cd_err (*cd__zip_sink)(void *ctx, const void *p, size_t n);

struct cd__zip_entry {
    char name[64];
    uint32_t crc;
    uint64_t csize, usize, offset;
};

struct z_stream_s;
struct cd__zip {
    cd__zip_sink sink;
    void *sink_ctx;
    uint64_t offset;
    struct cd__zip_entry e[CD__ZIP_MAX_ENTRIES];
    size_t n;
    bool open;
    unsigned long crc;
    struct z_stream_s *zs;
    unsigned char out[1 << 16];
};

/* Starts an archive written to sink. Then, per file: begin (a name of up to 63 bytes), write
 * any number of times, end; last, finish writes the central directory. Errors: the sink's,
 * CD_ERR_TOO_BIG (past 4 GiB), CD_ERR_NOMEM, CD_ERR_INTERNAL (misuse). free releases what an
 * unfinished archive holds. */
void cd__zip_init(struct cd__zip *z, cd__zip_sink sink, void *ctx);
enum cd_err cd__zip_begin(struct cd__zip *z, const char *name);
enum cd_err cd__zip_write(struct cd__zip *z, const void *p, size_t n);
enum cd_err cd__zip_end(struct cd__zip *z);
enum cd_err cd__zip_finish(struct cd__zip *z);
void cd__zip_free(struct cd__zip *z);

#endif
