/* base — the generic layer every other module stands on.
 *
 * Owns: the error type (enum cd_err) and its thread-local detail message, the allocation
 * wrapper (all heap memory goes through cd_malloc & co so tests can fail the Nth allocation),
 * capped growable buffers, borrowed string views, a request arena, clocks, random ids,
 * base64url/hex, JSON glue over jansson and the structured logger.
 *
 * Must never: know about customers, HTTP or the store. Must never log personal data: the
 * logger takes only values the caller vouches for (ids, codes, counts).
 *
 * Threads: everything here is thread-safe; the error detail and the allocation fault counter
 * are per thread. The clock override (base_testing.h) is process-wide and exists in test builds
 * only. */
#ifndef CD_BASE_H
#define CD_BASE_H

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* ---- errors ------------------------------------------------------------------------------ */

/* One error type for the whole code base. CD_OK is 0, so `if ((err = f()) != CD_OK) goto out;`
 * reads naturally. The HTTP edge maps each value to one problem+json type (src/http/problem.c). */
enum cd_err {
    CD_OK = 0,
    CD_ERR_NOMEM,              /* an allocation failed */
    CD_ERR_INVALID,            /* malformed or semantically invalid input */
    CD_ERR_TOO_BIG,            /* input above a hard limit */
    CD_ERR_NOT_FOUND,          /* the named thing does not exist */
    CD_ERR_CONFLICT,           /* the request conflicts with current state */
    CD_ERR_IDEMPOTENCY,        /* Idempotency-Key reused with a different request */
    CD_ERR_UNAUTHENTICATED,    /* no or bad credentials */
    CD_ERR_FORBIDDEN,          /* authenticated, but the role may not do this */
    CD_ERR_PURPOSE_MISSING,    /* a read of personal data without Candor-Purpose */
    CD_ERR_PURPOSE_UNKNOWN,    /* Candor-Purpose names no known purpose */
    CD_ERR_PURPOSE_DENIED,     /* the purpose is not permitted here (policy, restriction) */
    CD_ERR_CONSENT_DENIED,     /* the consent engine said deny */
    CD_ERR_GUARD_BLOCKED,      /* the communication guard blocked a message */
    CD_ERR_PURPOSE_MISMATCH,   /* a message's content does not fit its declared purpose */
    CD_ERR_UNSUPPORTED,        /* e.g. a media type we do not accept */
    CD_ERR_STORE,              /* the database failed (I/O error, disk full, corrupt) */
    CD_ERR_BUSY,               /* the database or a queue is temporarily unavailable */
    CD_ERR_RATE_LIMITED,       /* too many attempts from one client for now */
    CD_ERR_SCHEMA,             /* the database schema is newer than this binary */
    CD_ERR_IO,                 /* a file or socket operation failed */
    CD_ERR_CRYPTO,             /* decryption/verification failed or a key is missing */
    CD_ERR_INTEGRITY,          /* tamper evidence: a hash chain or signature did not verify */
    CD_ERR_INTERNAL,           /* a bug: an invariant did not hold */
    CD_ERR__COUNT
};

/* Returns a short, stable, lower-case name for err ("nomem", "not-found", ...). */
const char *cd_err_name(enum cd_err err);

/* Records a human-readable detail for err in this thread and returns err, so a failure site can
 * write `return cd_err_set(CD_ERR_INVALID, "field 'channel' must be a string");`.
 * The detail must not contain personal data: it is shown to API callers and may be logged. */
enum cd_err cd_err_set(enum cd_err err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The detail last recorded in this thread, or "" if none. Valid until the next cd_err_set. */
const char *cd_err_detail(void);

/* Forgets this thread's detail (called at the start of each request). */
void cd_err_clear(void);

/* ---- allocation -------------------------------------------------------------------------- */

/* The only heap allocator. Each returns NULL on failure (never aborts); cd_free(NULL) is fine.
 * In builds with CD_FAULT_INJECTION, cd_alloc_fail_nth(n) makes the nth allocation from now in
 * the calling thread fail (n >= 1; 0 disables), which the tests use to prove that every
 * failure path is clean. cd_alloc_fault_hit() tells whether the injected failure happened. */
void *cd_malloc(size_t n);
void *cd_calloc(size_t count, size_t size);
void *cd_realloc(void *p, size_t n);
void cd_free(void *p);
char *cd_strndup(const char *s, size_t n);
char *cd_strdup(const char *s);
void cd_alloc_fail_nth(long n);
bool cd_alloc_fault_hit(void);
/* Moves this thread's pending fault (countdown and hit flag) out, leaving none; a worker
 * thread acting for the caller installs it with cd_alloc_fault_put and hands it back the same
 * way, so the Nth allocation of a request fails whichever thread makes it. */
struct cd_alloc_fault {
    long countdown;
    bool hit;
};
struct cd_alloc_fault cd_alloc_fault_take(void);
void cd_alloc_fault_put(struct cd_alloc_fault f);

/* ---- string views and buffers ------------------------------------------------------------ */

/* Room for a directory of up to PATH_MAX bytes plus a file name in it: the size of every buffer
 * that holds a file name built from a configured directory. */
#define CD_PATH_MAX 4200

/* A borrowed byte range. Never owns memory; valid as long as the owner says. */
struct cd_str {
    const char *p;
    size_t len;
};
#define CD_STR(lit) ((struct cd_str){(lit), sizeof(lit) - 1})
#define CD_STR_NULL ((struct cd_str){NULL, 0})
/* A macro's value as a string literal, for defaults that tables hold as text. */
#define CD_XSTR(x) CD_XSTR_(x)
#define CD_XSTR_(x) #x
struct cd_str cd_str_c(const char *s); /* s may be NULL */
/* Invariants. assert() is on in every build: the release build does not define NDEBUG, because
 * the invariants it states are cheap to check and a server that keeps ledgers should stop
 * rather than go on writing from a state it knows is wrong. CD_DEBUG_ASSERT states one that
 * costs time to check (a walk, a recount, a check on a hot path): the test builds (ASan and
 * fuzz, which define CD_DEBUG) check it, the release build compiles it to nothing and does not
 * evaluate it. */
#ifdef CD_DEBUG
#define CD_DEBUG_ASSERT(x) assert(x)
#else
#define CD_DEBUG_ASSERT(x) ((void)sizeof(x))
#endif

/* Lists of names kept as X-macros, LIST(X) calling X(ENUMERATOR, "name") once per entry (see
 * CD_ROLES in policy/policy.h). CD_NAME_ARRAY makes the initialiser of an array of the names in
 * list order (LIST(CD_NAME_ITEM) the same entries inside a longer initialiser); CD_NAME_LIST the
 * string literal "a, b, c" (an address constant, so it may initialise static tables). */
#define CD_NAME_ARRAY(LIST) {LIST(CD_NAME_ITEM)}
#define CD_NAME_ITEM(id, name) name,
/* The literal from its third byte, past the leading ", ", written as an element's address
 * (clang's -Wstring-plus-int takes "literal" + 2 for a mistake). */
#define CD_NAME_LIST(LIST) (&(LIST(CD_NAME_LIST_ITEM_))[2])
#define CD_NAME_LIST_ITEM_(id, name) ", " name
bool cd_str_eq(struct cd_str a, struct cd_str b);
bool cd_str_eq_c(struct cd_str a, const char *s);

/* A growable byte buffer with a hard maximum set at init: CD_BUF_INIT(max) holds at most max
 * bytes, CD_BUF_INIT(CD_BUF_UNBOUNDED) has no limit (only for bytes whose size was bounded
 * where they came from, such as a row the store holds; say so where it is used). p is always
 * NUL-terminated when non-NULL (the terminator is not counted in len). On failure the contents
 * are unchanged. */
struct cd_buf {
    char *p;
    size_t len;
    size_t cap;
    size_t max;
};
#define CD_BUF_INIT(maxbytes) ((struct cd_buf){NULL, 0, 0, (maxbytes)})
#define CD_BUF_UNBOUNDED SIZE_MAX

/* Each returns CD_OK, CD_ERR_TOO_BIG (the result would exceed max) or CD_ERR_NOMEM. */
enum cd_err cd_buf_append(struct cd_buf *b, const void *p, size_t n);
enum cd_err cd_buf_puts(struct cd_buf *b, const char *s);
enum cd_err cd_buf_putc(struct cd_buf *b, char c);
enum cd_err cd_buf_printf(struct cd_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
enum cd_err cd_buf_reserve(struct cd_buf *b, size_t extra);
void cd_buf_reset(struct cd_buf *b); /* len = 0, memory kept */
void cd_buf_free(struct cd_buf *b);  /* back to empty; max kept */
/* Hands the bytes to the caller (who frees them with cd_free) and empties b. */
char *cd_buf_take(struct cd_buf *b, size_t *len);
/* Appends the whole file at path (b's max caps it; b->p is set even for an empty file).
 * Errors: CD_ERR_IO ("PATH: cannot open: why", read errors), CD_ERR_TOO_BIG, CD_ERR_NOMEM;
 * then b is as it was. */
enum cd_err cd_buf_read_file(struct cd_buf *b, const char *path);

/* ---- arena ------------------------------------------------------------------------------- */

/* A bump allocator for request-scoped memory, freed all at once. */
struct cd_arena_block;
struct cd_arena {
    struct cd_arena_block *head;
    size_t total;
    size_t max; /* 0 = unlimited */
};
#define CD_ARENA_INIT(maxbytes) ((struct cd_arena){NULL, 0, (maxbytes)})
/* Returns 16-byte aligned memory or NULL (out of memory or over max). */
void *cd_arena_alloc(struct cd_arena *a, size_t n);
char *cd_arena_strndup(struct cd_arena *a, const char *s, size_t n);
char *cd_arena_printf(struct cd_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cd_arena_free(struct cd_arena *a);

/* ---- time -------------------------------------------------------------------------------- */

/* Wall-clock milliseconds since the Unix epoch. Tests may replace the clock (base_testing.h). */
int64_t cd_now_ms(void);
/* Monotonic nanoseconds, for durations. */
uint64_t cd_mono_ns(void);

#define CD_TIME_STRLEN 32
/* Formats ms as RFC 3339 UTC with milliseconds: "2026-11-25T19:16:09.123Z". */
void cd_time_format(int64_t ms, char out[CD_TIME_STRLEN]);
/* Parses RFC 3339 (with 'Z' or a numeric offset, optional fraction) into ms since the epoch.
 * Errors: CD_ERR_INVALID. */
enum cd_err cd_time_parse(struct cd_str s, int64_t *ms);

/* ---- random, ids, encodings -------------------------------------------------------------- */

/* n bytes from a cryptographically secure generator (libsodium's), through a per-thread pool
 * so small requests make no system call; thread-safe and fork-safe. */
void cd_random_bytes(void *out, size_t n);
/* A new time-ordered id "<prefix>_<26 chars Crockford base32>" (48-bit ms time + 80 random
 * bits, like a ULID), so ids sort by creation and index inserts stay local. */
#define CD_ID_MAX 40
/* An id's digits: its 128 bits, big-endian, as 26 Crockford base32 digits (the leading two of
 * 130 bits zero). A prefix longer than CD_ID_PREFIX_MAX is cut there. */
#define CD_ID_DIGITS 26
#define CD_ID_PREFIX_MAX (CD_ID_MAX - CD_ID_DIGITS - 2)
/* Room for the digits and the scratch bytes the fast encoder stores after them. */
#define CD_ID_DIGITS_ROOM 32
void cd_id_new(const char *prefix, char out[CD_ID_MAX]);
/* True if s looks like an id with that prefix (shape only). */
bool cd_id_valid(struct cd_str s, const char *prefix);
/* Writes the CD_ID_DIGITS digits of raw to out[0..25] and overwrites out[26..31] with
 * unspecified bytes (no terminator). Branch-free table or AVX-512 VBMI code, chosen once at
 * start: a consent decision formats its event id with it. */
void cd_id_digits(const uint8_t raw[16], char out[CD_ID_DIGITS_ROOM]);
/* Writes "<prefix>_<digits of raw>", terminated. */
void cd_id_format(const uint8_t raw[16], const char *prefix, char out[CD_ID_MAX]);
/* The 128 bits of the id s with that prefix into out: the inverse of cd_id_format. False,
 * with out unspecified, when s is not such an id in canonical form (upper case, first digit
 * at most 7). */
bool cd_id_bits(struct cd_str s, const char *prefix, uint8_t out[16]);

/* Hex and unpadded base64url. out must have room for the encoded length + 1. */
void cd_hex_encode(const void *in, size_t n, char *out);
enum cd_err cd_hex_decode(struct cd_str in, void *out, size_t outlen);
size_t cd_b64url_len(size_t n);
void cd_b64url_encode(const void *in, size_t n, char *out);
/* Decodes into out (capacity outcap), setting *outlen. Errors: CD_ERR_INVALID. */
enum cd_err cd_b64url_decode(struct cd_str in, void *out, size_t outcap, size_t *outlen);

/* Standard base64 with padding (RFC 4648 section 4), as the Standard Webhooks signatures and
 * secrets are written. cd_b64_len is the encoded length without the terminator; out must have
 * room for it + 1. Decoding accepts exactly that form. Errors: CD_ERR_INVALID. */
size_t cd_b64_len(size_t n);
void cd_b64_encode(const void *in, size_t n, char *out);
enum cd_err cd_b64_decode(struct cd_str in, void *out, size_t outcap, size_t *outlen);

/* True if the n bytes are valid UTF-8 (no overlongs, no surrogates). */
bool cd_utf8_valid(const char *p, size_t n);

/* Constant-time comparison of equal-length secrets. */
bool cd_ct_eq(const void *a, const void *b, size_t n);

/* ---- JSON glue --------------------------------------------------------------------------- */

/* Routes jansson's allocations through cd_malloc; call once at start-up. */
void cd_json_init(void);

/* Parses exactly one JSON value from p[0..n). Errors: CD_ERR_INVALID with a detail naming the
 * line and column (invalid UTF-8 included), CD_ERR_NOMEM. The caller owns *out (json_decref). */
enum cd_err cd_json_parse(const char *p, size_t n, json_t **out);
/* Same, and the value must be an object. */
enum cd_err cd_json_parse_object(const char *p, size_t n, json_t **out);

/* Rejects members of obj not listed in allowed (a NULL-terminated list).
 * Errors: CD_ERR_INVALID naming the first unknown member. */
enum cd_err cd_json_only(const json_t *obj, const char *const *allowed);

/* Typed member access. Each returns CD_ERR_INVALID naming the member when it has the wrong type
 * or, if required, is missing; an optional missing member leaves *out untouched and returns
 * CD_OK. Strings are borrowed from obj. */
enum cd_err cd_json_str(const json_t *obj, const char *key, bool required, struct cd_str *out);
enum cd_err cd_json_int(const json_t *obj, const char *key, bool required, int64_t *out);
enum cd_err cd_json_bool(const json_t *obj, const char *key, bool required, bool *out);
enum cd_err cd_json_obj(const json_t *obj, const char *key, bool required, json_t **out);
enum cd_err cd_json_arr(const json_t *obj, const char *key, bool required, json_t **out);

/* Appends s as a JSON string literal, escaped exactly as jansson's json_dumps does with
 * JSON_ENSURE_ASCII: \" \\ \b \f \n \r \t, other control characters and every non-ASCII
 * code point as \u with four upper-case hex digits (surrogate pairs above U+FFFF). For hot
 * paths that write JSON directly, and for bytes that are hashed and must never change.
 * Errors: CD_ERR_INVALID (s is not valid UTF-8; b unchanged), CD_ERR_TOO_BIG, CD_ERR_NOMEM. */
enum cd_err cd_buf_json_string(struct cd_buf *b, struct cd_str s);
/* The same, with non-ASCII characters written as they are (UTF-8), as cd_json_dump writes
 * them: for answers, where \u escapes would only triple the size of non-Latin text. */
enum cd_err cd_buf_json_text(struct cd_buf *b, struct cd_str s);

/* Serialises v compactly into a new cd_malloc'ed string. Errors: CD_ERR_NOMEM. */
enum cd_err cd_json_dump(const json_t *v, char **out, size_t *len);
/* Sets obj[key] to a new string of n bytes; returns CD_ERR_NOMEM on failure. */
enum cd_err cd_json_set_strn(json_t *obj, const char *key, const char *p, size_t n);
/* Sets obj[key] to v, which it steals (freed on failure; a NULL v, as a failed json_string
 * gives, is out of memory too). Errors: CD_ERR_NOMEM, and then obj lacks the key. */
enum cd_err cd_json_set_new(json_t *obj, const char *key, json_t *v);
/* Sets dst[key] to src[key] (a shared reference) when src has the key; nothing otherwise.
 * Errors: CD_ERR_NOMEM. */
enum cd_err cd_json_copy_key(json_t *dst, const json_t *src, const char *key);

/* ---- YAML documents (src/base/yaml.c) ------------------------------------------------------
 * The loaders of rule and policy files share how a document is read and how its mistakes are
 * reported: "NAME:LINE: what". Nodes are libyaml's (include <yaml.h> to walk them). */
struct yaml_document_s;
struct yaml_node_s;
struct cd_yaml {
    const char *name;             /* the file's name in messages (borrowed) */
    struct yaml_document_s *doc;  /* NULL until parsed, and after cd_yaml_free */
};
/* Parses the first document of data[0..len), naming it `name` (borrowed) in messages.
 * Errors: CD_ERR_INVALID ("NAME:LINE: YAML: problem"), CD_ERR_NOMEM; then y holds nothing. */
enum cd_err cd_yaml_parse(struct cd_yaml *y, const char *name, const char *data, size_t len);
/* Reads the file at path (at most max bytes) and parses it, named by its path.
 * Errors: CD_ERR_IO (cannot open or read), CD_ERR_TOO_BIG, as cd_yaml_parse. */
enum cd_err cd_yaml_load_file(struct cd_yaml *y, const char *path, size_t max);
void cd_yaml_free(struct cd_yaml *y);
struct yaml_node_s *cd_yaml_root(const struct cd_yaml *y); /* NULL: an empty document */
struct yaml_node_s *cd_yaml_node(const struct cd_yaml *y, int index);
size_t cd_yaml_line(const struct yaml_node_s *n); /* 1-based; 1 when n is NULL */
/* CD_ERR_INVALID with the detail "NAME:LINE: what" (the line of n). */
enum cd_err cd_yaml_bad(const struct cd_yaml *y, const struct yaml_node_s *n, const char *what);
/* A scalar's text, borrowed from the document (CD_STR_NULL when n is not a scalar). */
struct cd_str cd_yaml_scalar(const struct yaml_node_s *n);
bool cd_yaml_scalar_is(const struct yaml_node_s *n, const char *s);

/* One key a mapping may hold, and what to do with its value: set(y, value, key, ctx), where key
 * is this entry, so one handler can serve several keys through arg (an offset, an index). */
struct cd_yaml_key {
    const char *name;
    bool required;
    enum cd_err (*set)(const struct cd_yaml *y, struct yaml_node_s *value,
                       const struct cd_yaml_key *key, void *ctx);
    intptr_t arg;
};
/* Walks the mapping m (called `what` in messages): for each key, calls the handler of the
 * matching entry of keys[0..nkeys) (at most 64) with the value, in document order.
 * Errors: CD_ERR_INVALID "NAME:LINE: ..." when m is not a mapping, a key is unknown (the
 * message lists the allowed keys), given twice, or a required key is missing; a handler's
 * error stops the walk and is returned as it is. */
enum cd_err cd_yaml_map(const struct cd_yaml *y, struct yaml_node_s *m, const char *what,
                        const struct cd_yaml_key *keys, size_t nkeys, void *ctx);
/* Calls each(y, item, index, ctx) for every item of the list s, in order.
 * Errors: CD_ERR_INVALID when s is not a list; the handler's error. */
typedef enum cd_err (*cd_yaml_item_fn)(const struct cd_yaml *y, struct yaml_node_s *item,
                                       size_t index, void *ctx);
enum cd_err cd_yaml_seq(const struct cd_yaml *y, struct yaml_node_s *s, const char *what,
                        cd_yaml_item_fn each, void *ctx);
/* Typed scalars, each CD_ERR_INVALID "NAME:LINE: WHAT must be ..." otherwise.
 * cd_yaml_str: non-empty UTF-8 text of at most max bytes, borrowed from the document.
 * cd_yaml_int: a decimal integer within [min, max]. cd_yaml_bool: true or false. */
enum cd_err cd_yaml_str(const struct cd_yaml *y, struct yaml_node_s *n, const char *what,
                        size_t max, struct cd_str *out);
enum cd_err cd_yaml_int(const struct cd_yaml *y, struct yaml_node_s *n, const char *what,
                        int64_t min, int64_t max, int64_t *out);
enum cd_err cd_yaml_bool(const struct cd_yaml *y, struct yaml_node_s *n, const char *what,
                         bool *out);

/* ---- operations in flight (src/base/pending.c) ------------------------------------------- */

/* Counts operations a thread has handed to others (asynchronous store writes) and not yet seen
 * finish, so it can queue many before it waits for all of them: a batch's items share group
 * commits instead of each waiting for its own. */
struct cd_pending {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;
};
#define CD_PENDING_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0}
/* One more operation in flight; call before handing it on. */
void cd_pending_add(struct cd_pending *p);
/* One fewer: an operation that was added finished (on any thread), or was never started.
 * What the finishing thread wrote before this call is seen by the thread cd_pending_wait
 * returns on. */
void cd_pending_done(struct cd_pending *p);
/* Waits until every operation added has finished. */
void cd_pending_wait(struct cd_pending *p);
/* Frees p's lock and condition; nothing may be in flight. */
void cd_pending_destroy(struct cd_pending *p);

/* ---- logging ----------------------------------------------------------------------------- */

/* Structured JSON lines on stderr: {"ts":...,"level":...,"msg":...,<fields>}.
 * fields_fmt produces the inner members (without braces), e.g. "\"status\":%d". The caller
 * guarantees the values are not personal data and are JSON-safe (use cd_log_safe for strings
 * from outside). */
enum cd_log_level { CD_LOG_DEBUG, CD_LOG_INFO, CD_LOG_WARN, CD_LOG_ERROR };
void cd_log_set_level(enum cd_log_level min);
void cd_log(enum cd_log_level level, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for a line that may wait a few milliseconds to be written with others (the access
 * line of every request), once cd_log_batch_start ran; until then, and after
 * cd_log_batch_stop, it is written at once. Lines keep the order of the calls. */
void cd_log_batched(enum cd_log_level level, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Starts / stops (writing what is held) the thread that writes batched lines. Called by the
 * process's main thread only. Errors: CD_ERR_INTERNAL (no thread: lines stay unbatched). */
enum cd_err cd_log_batch_start(void);
void cd_log_batch_stop(void);
/* Copies s into out (capacity n) keeping only [A-Za-z0-9._:/-], so it can be logged verbatim. */
const char *cd_log_safe(const char *s, char *out, size_t n);

/* ---- integrity failures ------------------------------------------------------------------ */

/* Tamper evidence met while serving, by where it was found: an audit row whose index columns
 * disagree with its hashed entry, a consent event that does not match its ledger entry or its
 * signed receipt, a sealed field that does not open under its row's binding. */
enum cd_integrity_kind {
    CD_INTEGRITY_AUDIT_ROW,
    CD_INTEGRITY_CONSENT_EVENT,
    CD_INTEGRITY_SEALED_FIELD,
    CD_INTEGRITY_TREE_HEAD,
    CD_INTEGRITY__COUNT
};

/* Counts one failure of that kind (process-wide, for /metrics) and logs it as an error line
 * {"msg":"integrity.error","kind":...,<fields>}; fields_fmt as cd_log's (ids and codes only,
 * never personal data). Thread-safe. */
void cd_integrity_report(enum cd_integrity_kind kind, const char *fields_fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The failures of that kind counted since the process started. */
uint64_t cd_integrity_total(enum cd_integrity_kind kind);
/* The kind's stable name ("audit_row", "consent_event", "sealed_field", "tree_head"). */
const char *cd_integrity_kind_name(enum cd_integrity_kind kind);

#endif
