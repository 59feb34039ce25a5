/* transfer — moving a deployment's data out and in: the records of `candor export` and
 * `candor import`, the readers that turn other files into those records (CSV with a column
 * mapping, a Zendesk ticket export), and the import and export themselves.
 *
 * Owns: the interchange format (one JSON record a line: customers with their identities,
 * interactions; docs/import-export.md), its parsers, and the drivers that walk a file or the
 * store. Owns no table: every read and write goes through core's interface, so an import passes
 * the same validation, sealing (per customer) and ledger as the API, on either backend.
 * Must never: write a record's personal data anywhere but the export's output (no logs; errors
 * name the line and the member, never a value); read personal data without a named purpose.
 *
 * Threads: the parsers are pure and reentrant. An import or export runs on the caller's thread
 * (it queues interaction writes ahead so they share group commits). */
#ifndef CD_TRANSFER_H
#define CD_TRANSFER_H

#include "base/base.h"
#include "core/core.h"

/* The longest source id a record may carry (an id of Candor or of another system), in bytes. */
#define CD_TRANSFER_ID_MAX 200
/* The longest line of a file an import reads, in bytes (a record with a long message). */
#define CD_TRANSFER_LINE_MAX ((size_t)4 * 1024 * 1024)

enum cd_transfer_kind { CD_TRANSFER_CUSTOMER, CD_TRANSFER_INTERACTION };

/* One record, ready for core. body is what core's create or ingest takes: for a customer
 * {"display_name","attributes","locale","time_zone","jurisdiction","identities"}, for an
 * interaction {"identity"?,"channel","direction","occurred_at","thread_id","subject","body",
 * "metadata","purpose"} (the importer adds "customer_id" when customer is set). */
struct cd_transfer_record {
    enum cd_transfer_kind kind;
    char id[CD_TRANSFER_ID_MAX + 1];       /* the source's id: what makes a re-run a replay */
    char customer[CD_TRANSFER_ID_MAX + 1]; /* interaction: the source customer's id, or "" when
                                            * it names an identity instead */
    bool restricted;                       /* customer: processing restricted (GDPR Art. 18) */
    json_t *body;
};

/* Parses one record from a JSON object (a line of an export, or what a reader made):
 * {"type":"customer","id",...} or {"type":"interaction","id","customer_id"|"identity",...}.
 * Types are checked, and names from closed lists (channel, direction, purpose, identity type),
 * and occurred_at as RFC 3339; unknown members are refused. *rec is reset first; free it with
 * cd_transfer_record_free (also after an error). Errors: CD_ERR_INVALID (the detail names the
 * member, never its value), CD_ERR_NOMEM. */
enum cd_err cd_transfer_record_from_json(const json_t *o, struct cd_transfer_record *rec);
/* The same from one line of text (NDJSON; a trailing "\r" is allowed). Errors: as above, and
 * CD_ERR_INVALID for text that is not one JSON object. */
enum cd_err cd_transfer_record_parse(struct cd_str line, struct cd_transfer_record *rec);
void cd_transfer_record_free(struct cd_transfer_record *rec);

/* ---- CSV (RFC 4180) ---- */

/* True when text holds a whole CSV record: its quotes are balanced, so a line break in it is
 * the end of the record, not part of a quoted field. */
bool cd_transfer_csv_complete(struct cd_str text);
/* Splits one record (without its line break) into fields: a new JSON array of strings.
 * Quoted fields may hold the delimiter, line breaks and doubled quotes.
 * Errors: CD_ERR_INVALID (a quote inside an unquoted field, text after a closing quote, an
 * unterminated quote, not UTF-8), CD_ERR_NOMEM. */
enum cd_err cd_transfer_csv_split(struct cd_str rec, char delim, json_t **fields);

/* A column mapping: which CSV column fills which member of an interaction record. The file is
 * JSON: {"delimiter"?: ",", "columns": {"CSV column": "field", ...}, "values"?: {"field":
 * "constant", ...}} where a field is id, customer_id, identity.type, identity.value,
 * identity.network, channel, direction, occurred_at, thread_id, subject, body, purpose or
 * metadata.NAME. id must be mapped (it makes re-runs replays). */
struct cd_transfer_map;
/* Errors: CD_ERR_INVALID (the detail names what is wrong), CD_ERR_NOMEM. */
enum cd_err cd_transfer_map_parse(struct cd_str text, struct cd_transfer_map **out);
void cd_transfer_map_free(struct cd_transfer_map *m);
char cd_transfer_map_delimiter(const struct cd_transfer_map *m);
/* Binds the mapping to a file's header row (its fields, as cd_transfer_csv_split gives them).
 * Errors: CD_ERR_INVALID (a mapped column the header lacks, or a column named twice). */
enum cd_err cd_transfer_map_header(struct cd_transfer_map *m, const json_t *header);
/* Makes a record of a data row (after cd_transfer_map_header). An empty cell leaves its field
 * out. Errors: as cd_transfer_record_from_json, and CD_ERR_INVALID for a row whose number of
 * fields differs from the header's. */
enum cd_err cd_transfer_map_row(const struct cd_transfer_map *m, const json_t *row,
                                struct cd_transfer_record *rec);

/* ---- Zendesk ---- */

/* Turns one ticket of a Zendesk JSON export (one ticket a line, with its "comments") into
 * interaction records, as docs/import-export.md maps them: each public comment becomes an
 * interaction (inbound when its author is the requester), identified as
 * {"type":"external","network":"zendesk","value":requester_id}, threaded by ticket. *out: a new
 * JSON array of record objects (for cd_transfer_record_from_json). Errors: CD_ERR_INVALID (the
 * detail names the member), CD_ERR_NOMEM. */
enum cd_err cd_transfer_zendesk_ticket(const json_t *ticket, json_t **out);

/* ---- import and export ---- */

enum cd_transfer_format { CD_TRANSFER_NDJSON, CD_TRANSFER_CSV, CD_TRANSFER_ZENDESK };

/* What an import did, by record. */
struct cd_transfer_counts {
    uint64_t lines;    /* lines (CSV: records) read */
    uint64_t created;  /* records stored by this run */
    uint64_t existing; /* records a previous run had stored (replays) */
    uint64_t failed;   /* records refused (each reported) */
};

/* Called for each record refused, with its line and why (no personal data). */
typedef void (*cd_transfer_report_fn)(void *ctx, uint64_t line, enum cd_err err,
                                      const char *detail);
/* Called now and then with the bytes read (import) or records written (export). */
typedef void (*cd_transfer_progress_fn)(void *ctx, uint64_t done, uint64_t total);

struct cd_transfer_import {
    enum cd_transfer_format format;
    const struct cd_transfer_map *map; /* CSV */
    cd_transfer_report_fn report;
    cd_transfer_progress_fn progress; /* may be NULL */
    void *ctx;
};

/* Checks every record of in (a seekable file, read from its start) without storing anything:
 * each refused record is reported. *bad counts them. Errors: CD_ERR_IO, CD_ERR_NOMEM; a file
 * with bad records is CD_OK with *bad > 0. */
enum cd_err cd_transfer_check(const struct cd_transfer_import *im, FILE *in, uint64_t *bad);

/* Imports in: each record through core as the actor a (customers created with their
 * identities, interactions ingested with their times), idempotent by the record's id: a record
 * a previous run stored is a replay, never a second copy, for as long as core keeps its
 * Idempotency-Key records. A record core refuses is reported and the rest go on; each record
 * is stored whole or not at all. Errors: CD_ERR_IO, CD_ERR_STORE (the store failed: stop),
 * CD_ERR_NOMEM. */
enum cd_err cd_transfer_import_run(struct cd_core *core, const struct cd_actor *a,
                                   const struct cd_transfer_import *im, FILE *in,
                                   struct cd_transfer_counts *n);

/* Exports every live customer (or those in ids, a JSON array of strings, when not NULL) with
 * their identities and interactions to out, one record a line, as the actor a reads them
 * (a->purpose names why; fields are what it may see): every customer's read is recorded in the
 * ledger, and a customer the purpose may not read is reported and left out. *written counts the
 * records. Errors: CD_ERR_IO (out failed), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_transfer_export_run(struct cd_core *core, const struct cd_actor *a,
                                   unsigned fields, const json_t *ids, FILE *out,
                                   cd_transfer_report_fn report, cd_transfer_progress_fn progress,
                                   void *ctx, uint64_t *written);

#endif
