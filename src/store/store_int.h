/* Inside the store module only: the migration lists each backend applies in order. */
#ifndef CD_STORE_INT_H
#define CD_STORE_INT_H

#include <stddef.h>

/* Migration i (0-based) brings the schema from version i to i+1. Never edit a migration that
 * has shipped; append a new one. Each SQLite migration has a PostgreSQL twin with the same
 * number that makes the same tables, columns and indexes (tests/unit/test_store.c compares
 * the two lists and the schemas they make). */
extern const char *const cd__store_sqlite_migrations[];
extern const int cd__store_sqlite_migrations_count;
extern const char *const cd__store_pg_migrations[];
extern const int cd__store_pg_migrations_count;

/* The slot of a statement's SQL text in a backend's statement cache of n slots. */
unsigned cd__store_sql_slot(const char *sql, size_t len, unsigned n);

#endif
