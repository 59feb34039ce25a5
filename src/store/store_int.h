/* Inside the store module only: the migration lists each backend applies in order. */
#ifndef CD_STORE_INT_H
#define CD_STORE_INT_H

/* Migration i (0-based) brings the schema from version i to i+1. Never edit a migration that
 * has shipped; append a new one. */
extern const char *const cd__store_sqlite_migrations[];
extern const int cd__store_sqlite_migrations_count;

#endif
