/* Inside the cli module only. */
#ifndef CD_CLI_INT_H
#define CD_CLI_INT_H

#include "cli.h"
#include "core/core.h"
#include "outbox/outbox.h"
#include "store/store.h"

/* In a data directory whose database is PostgreSQL: the database's URL (candor init --db). */
#define CD__CLI_DB_URL_FILE "database.url"

/* How often the server counts data-subject requests for /metrics. */
#define CD__CLI_DSAR_WATCH_MS 5000

/* The environment variable naming the shared-files directory (it holds rules/). */
#define CD_CLI_SHARE_ENV "CANDOR_SHARE_DIR"

struct cd_outbox;

struct cd__cli_env {
    struct cd_store *store;
    struct cd_core *core;
    struct cd_outbox *outbox; /* events written by this process seal their personal members */
    uint8_t master[32];
};

struct cd_guard;
struct cd_cases;
struct cd_policy;

/* The in-path checks installed into core (hooks.c). Members are borrowed; any may be NULL.
 * The consent engine plugs in through its three hook functions (same shapes as core's). */
struct cd__cli_hooks {
    struct cd_store *store;
    struct cd_guard *guard;
    const struct cd_policy *policy; /* role x purpose on sends; promotional purposes */
    void *consent;
    enum cd_err (*consent_outbound)(void *ctx, const struct cd_actor *actor,
                                    const char *customer_id, const char *channel,
                                    const char *purpose, struct cd_str topic,
                                    struct cd_str body, const struct cd_core_overrides *ov,
                                    json_t **annotation);
    enum cd_err (*consent_read)(void *ctx, const char *customer_id, const char *purpose);
    void (*consent_changed)(void *ctx, const char *customer_id);
    struct cd_cases *cases; /* cases opened, answered and reopened by interactions */
    /* What the outbox's worker asks before a delivery carries personal members. */
    struct cd_outbox_hooks outbox;
};
void cd__cli_hooks_install(struct cd__cli_hooks *h, struct cd_core *core);

/* Checks that data_dir is a directory its owner alone may use (no group or other bits, owned
 * by this user). Errors: CD_ERR_IO with a detail that says what to do. */
enum cd_err cd__cli_data_dir_check(const char *data_dir);
/* The database of an initialised data directory into out (n bytes): the URL in
 * DIR/database.url, else the path DIR/candor.db. db_url (--db, may be NULL) must name that
 * same database: a directory's keys read one database only. Errors: CD_ERR_IO (neither file:
 * not initialised), CD_ERR_CONFLICT (both files, or db_url names another database),
 * CD_ERR_INVALID (database.url is not a PostgreSQL URL). */
enum cd_err cd__cli_db_url(const char *data_dir, const char *db_url, char *out, size_t n);
/* Opens the keys and the database of an initialised data directory (cd__cli_data_dir_check,
 * then cd__cli_db_url). opts may be NULL. */
enum cd_err cd__cli_env_open(const char *data_dir, const char *db_url,
                             const struct cd_store_options *opts, struct cd__cli_env *env);
/* Opens the keys of data_dir with the database at url, as given (candor init). */
enum cd_err cd__cli_env_open_url(const char *data_dir, const char *url,
                                 const struct cd_store_options *opts, struct cd__cli_env *env);
void cd__cli_env_close(struct cd__cli_env *env);
/* Creates a 0600 file holding text; fails if it exists. */
enum cd_err cd__cli_write_secret_file(const char *path, const char *text);
/* Prints "candor CMD: detail" and returns the exit code for err. */
int cd__cli_fail(const char *cmd, enum cd_err err);

/* The subcommands, in the order `candor --help` and candor(1) list them; ends with a NULL name.
 * about is the one-line summary (the NAME line of the command's manual page). */
struct cd__cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *about;
};
extern const struct cd__cli_command cd__cli_commands[];
/* The command called name, or NULL. */
const struct cd__cli_command *cd__cli_find(const char *name);
/* `candor --help`: every command with its summary. */
void cd__cli_usage_all(void);
/* `candor help [CMD]`, `help --man [CMD]` (candor(1) or the command's page on stdout) and
 * `help --commands` (the names, one a line, for the build). argv is what follows "help".
 * Returns the exit code. */
int cd__cli_help(int argc, char **argv);

/* What the build recorded (build.c): "0.1.0", `git describe` of the commit ("unknown (built
 * outside git)" when neither git nor an archive told), the commit's date (YYYY-MM-DD), and the
 * compiled-in shared-files directory ($(PREFIX)/share/candor). */
extern const char cd__cli_build_version[];
extern const char cd__cli_build_commit[];
extern const char cd__cli_build_date[];
extern const char cd__cli_build_sharedir[];

/* Prints "candor VERSION (commit C, DATE)"; verbose adds the rule packs found and the version
 * of every library as loaded. */
void cd__cli_print_version(bool verbose);

/* Finds the guard's rule packs directory, first match wins:
 *   1. explicit_dir (--rules DIR), used as given;
 *   2. $CANDOR_SHARE_DIR/rules, used as given;
 *   3. BIN/../share/candor/rules, BIN being the executable's directory (an installed tree,
 *      wherever it was moved or staged with DESTDIR);
 *   4. ROOT/rules when the executable is ROOT/build/candor or ROOT/build/FLAVOUR/candor in a
 *      source checkout;
 *   5. the compiled-in $(PREFIX)/share/candor/rules.
 * 3 to 5 are taken only if the directory exists. The path goes to out (n bytes) and *from names
 * the step that found it (a static string). Never depends on the working directory.
 * Errors: CD_ERR_IO when 3 to 5 all fail (the detail says where it looked and what to do). */
enum cd_err cd__cli_rules_dir(const char *explicit_dir, char *out, size_t n, const char **from);

/* Manual pages (opts.c). cd__cli_man_begin(summary) switches cd_cli_usage to writing the page
 * of the command it is called for, with summary as its NAME line. The writers below put text
 * into roff safely: escapes, no accidental requests, non-ASCII as glyph names. */
void cd__cli_man_begin(const char *summary);
void cd__cli_man_header(const char *page);
void cd__cli_man_text(const char *s, size_t n);
void cd__cli_man_str(const char *s);
void cd__cli_man_paragraphs(const char *text);
/* The sections every page ends with: exit status, environment, and the other pages of the
 * manual (cmd: the page's own command, NULL for candor(1)). */
void cd__cli_man_tail(const char *cmd);

#endif
