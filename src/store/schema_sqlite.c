/* The SQLite schema as forward-only migrations. Each domain module owns its tables; their
 * definitions live here so the whole schema can be read in one place and in order.
 * Personal data columns are BLOBs: they hold ciphertext once sealed (see docs/architecture.md). */
#include "store_int.h"

const char *const cd__store_sqlite_migrations[] = {
    /* 1: core — tokens, customers, identities, interactions, idempotency, merges. */
    "CREATE TABLE tokens("
    "  id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, role TEXT NOT NULL,"
    "  name TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER);"
    "CREATE TABLE customers("
    "  id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    "  merged_into TEXT, merged_at INTEGER, display_name BLOB, attributes BLOB,"
    "  locale TEXT, time_zone TEXT, jurisdiction TEXT, key_wrapped BLOB,"
    "  restricted INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE identities("
    "  kind TEXT NOT NULL, lookup BLOB NOT NULL, customer_id TEXT NOT NULL,"
    "  value BLOB NOT NULL, network TEXT, created_at INTEGER NOT NULL,"
    "  PRIMARY KEY(kind, lookup)) WITHOUT ROWID;"
    "CREATE INDEX identities_by_customer ON identities(customer_id);"
    "CREATE TABLE interactions("
    "  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, channel TEXT NOT NULL,"
    "  direction TEXT NOT NULL, thread_id TEXT, occurred_at INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL, purpose TEXT NOT NULL, subject BLOB, body BLOB,"
    "  metadata BLOB, guard BLOB);"
    "CREATE INDEX interactions_timeline ON interactions(customer_id, occurred_at DESC, id DESC);"
    "CREATE TABLE idempotency("
    "  scope TEXT NOT NULL, key TEXT NOT NULL, request_hash BLOB NOT NULL,"
    "  resource_id TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  PRIMARY KEY(scope, key)) WITHOUT ROWID;"
    "CREATE TABLE merges("
    "  merged_id TEXT PRIMARY KEY, survivor_id TEXT NOT NULL, merged_at INTEGER NOT NULL,"
    "  actor TEXT NOT NULL, request_id TEXT);"
    /* audit: entry holds the canonical JSON bytes that hash is computed over. */
    "CREATE TABLE audit_events("
    "  seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, entry BLOB NOT NULL,"
    "  prev_hash BLOB NOT NULL, hash BLOB NOT NULL, customer_id TEXT, action TEXT,"
    "  actor_token TEXT);"
    "CREATE INDEX audit_by_customer ON audit_events(customer_id, seq);",
    /* 2: audit — the RFC 9162 Merkle tree over audit_events (the hash of every complete perfect
     * subtree: level 0 = leaf hashes, leaf i = entry seq i+1) and the signed tree heads. */
    "CREATE TABLE audit_nodes("
    "  level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,"
    "  PRIMARY KEY(level, idx)) WITHOUT ROWID;"
    "CREATE TABLE audit_tree_heads("
    "  tree_size INTEGER PRIMARY KEY, ts INTEGER NOT NULL, root BLOB NOT NULL,"
    "  signature BLOB NOT NULL, key_id BLOB NOT NULL);",
    /* 3: consent (src/consent) — the event-sourced consent ledger (one row per event, with its
     * signed receipt), content-addressed notices, preferences and one-click unsubscribe
     * nonces. */
    "CREATE TABLE consent_events("
    "  seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, customer_id TEXT NOT NULL,"
    "  purpose TEXT NOT NULL, channel TEXT NOT NULL, state TEXT NOT NULL,"
    "  state_code INTEGER NOT NULL, legal_basis TEXT NOT NULL, jurisdiction TEXT,"
    "  notice_id TEXT, notice_sha256 BLOB, method TEXT NOT NULL, collector TEXT NOT NULL,"
    "  evidence TEXT, expires_at INTEGER, occurred_at INTEGER NOT NULL,"
    "  recorded_at INTEGER NOT NULL, request_id TEXT, actor_token TEXT,"
    "  flags INTEGER NOT NULL DEFAULT 0, receipt BLOB NOT NULL, signature BLOB NOT NULL,"
    "  language TEXT NOT NULL, purchase_at INTEGER);"
    "CREATE INDEX consent_events_by_customer ON consent_events(customer_id, seq);"
    "CREATE TABLE consent_notices("
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,"
    "  sha256 BLOB NOT NULL UNIQUE, material INTEGER NOT NULL, language TEXT NOT NULL,"
    "  text BLOB NOT NULL, published_at INTEGER NOT NULL, UNIQUE(name, version));"
    "CREATE TABLE consent_preferences("
    "  customer_id TEXT PRIMARY KEY, quiet_start INTEGER, quiet_end INTEGER,"
    "  topics_out TEXT NOT NULL DEFAULT '[]', caps TEXT NOT NULL DEFAULT '[]',"
    "  updated_at INTEGER NOT NULL);"
    "CREATE TABLE consent_unsub_nonces("
    "  nonce BLOB PRIMARY KEY, customer_id TEXT NOT NULL, purpose TEXT NOT NULL,"
    "  channel TEXT NOT NULL, created_at INTEGER NOT NULL, used_at INTEGER,"
    "  used_event TEXT) WITHOUT ROWID;",
    /* 4: consent — the consent engine follows customer changes (jurisdiction, time zone) by
     * updated_at, so that scan must be an index range, not a table scan. */
    "CREATE INDEX customers_by_updated ON customers(updated_at);",
    /* 5: core — crypto-shredding: when a customer's data key was destroyed. */
    "ALTER TABLE customers ADD COLUMN erased_at INTEGER;",
    /* 6: audit — the Merkle subtrees below level 4 (16 leaves) are no longer stored: they were
     * seven rows in eight of audit_nodes, written with every append, and any of them is
     * recomputed from at most 8 entries (CD__AUDIT_NODE_MIN_LEVEL in src/audit). */
    "DELETE FROM audit_nodes WHERE level < 4;",
    /* 7: audit — audit_by_customer cost a random B-tree page per event in every commit (a
     * third of the writer's time per audited ingest) and no query used it: the listing's
     * optional filters ("$2 = '' OR customer_id = $2") make SQLite walk audit_events by seq. */
    "DROP INDEX audit_by_customer;",
    /* 8: audit — the customer's access log (reads of their data, newest first) needs its
     * events without walking the whole ledger. Only read events are indexed: ingestion appends
     * none, so its writes pay nothing for this index. Building it reads the ledger once, on
     * the first start after the upgrade (0.25 s for a million events, warm cache). */
    "CREATE INDEX audit_reads_by_customer ON audit_events(customer_id, seq)"
    " WHERE action LIKE '%.read';",
    /* 9: auth, core — secrets and identities.
     * Tokens may expire; every revocation bumps auth_epoch, which servers' token caches read
     * to learn of revocations made by another process.
     * Idempotency keys and thread ids can hold personal data (an email address as a thread
     * id): only a keyed hash of an Idempotency-Key is kept, and a thread id is sealed for its
     * customer (thread) with a keyed hash beside it for lookups (thread_hash). The plaintext
     * of a database made before is converted by core at its next start, which needs the
     * master key: idempotency_plain and thread_reseal list what is left to convert, and core
     * empties them (docs/crypto.md). interactions.thread_id stays, always NULL.
     * Identities carry the keyed hash of their confusable skeleton (UTS #39) and whether
     * their normalised value is beyond ASCII, to find look-alikes; a look-alike becomes an
     * identity_links row a supervisor merges or dismisses. The skeleton's hash names its kind,
     * so its index needs no kind (with one, SQLite searched by the primary key's kind prefix:
     * every identity of the kind). identity_reindex lists the
     * identities core must normalise again (NFKC, case fold, default ignorables). */
    "ALTER TABLE tokens ADD COLUMN expires_at INTEGER;"
    "CREATE TABLE auth_epoch(id INTEGER PRIMARY KEY, revocations INTEGER NOT NULL);"
    "INSERT INTO auth_epoch(id, revocations) VALUES(1, 0);"
    "ALTER TABLE idempotency RENAME TO idempotency_plain;"
    "CREATE TABLE idempotency("
    "  scope TEXT NOT NULL, key_hash BLOB NOT NULL, request_hash BLOB NOT NULL,"
    "  resource_id TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  PRIMARY KEY(scope, key_hash)) WITHOUT ROWID;"
    "ALTER TABLE interactions ADD COLUMN thread BLOB;"
    "ALTER TABLE interactions ADD COLUMN thread_hash BLOB;"
    "CREATE TABLE thread_reseal(seq INTEGER PRIMARY KEY, id TEXT NOT NULL);"
    "INSERT INTO thread_reseal(id) SELECT id FROM interactions WHERE thread_id IS NOT NULL;"
    "ALTER TABLE identities ADD COLUMN skeleton BLOB;"
    "ALTER TABLE identities ADD COLUMN beyond_ascii INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX identities_by_skeleton ON identities(skeleton);"
    "CREATE TABLE identity_reindex(seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
    "  lookup BLOB NOT NULL);"
    "INSERT INTO identity_reindex(kind, lookup) SELECT kind, lookup FROM identities;"
    "CREATE TABLE identity_links("
    "  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, other_id TEXT NOT NULL,"
    "  kind TEXT NOT NULL, lookup BLOB NOT NULL, other_lookup BLOB NOT NULL,"
    "  reason TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  resolved_at INTEGER, resolved_by TEXT);"
    "CREATE INDEX identity_links_by_status ON identity_links(status, created_at);"
    "CREATE INDEX identity_links_by_customer ON identity_links(customer_id);"
    "CREATE INDEX identity_links_by_other ON identity_links(other_id);",
    /* 10: consent — each event names its ledger entry (whose data_sha256 is the digest of the
     * event's columns), so an edited row no longer matches the hashed ledger. Events recorded
     * before have none; the consent engine binds them at start when their signed receipts
     * agree with their columns (src/consent/bind.c). */
    "ALTER TABLE consent_events ADD COLUMN audit_seq INTEGER;",
    /* 11: core — interaction fields are sealed in format 2, with the row's id and metadata in
     * the associated data. Rows sealed before are marked; `candor serve` re-seals them at start
     * (cd_core_reseal_legacy) and clears the mark. The partial index holds only marked rows, so
     * new rows (never marked) cost nothing in it. */
    "ALTER TABLE interactions ADD COLUMN legacy_seal INTEGER;"
    "UPDATE interactions SET legacy_seal = 1 WHERE subject IS NOT NULL OR body IS NOT NULL"
    " OR metadata IS NOT NULL OR thread IS NOT NULL;"
    "CREATE INDEX interactions_legacy_seal ON interactions(id) WHERE legacy_seal IS NOT NULL;",
    /* 12: outbox, retention — the durable outbox of events (written in the transaction of
     * the change that causes it; the members the event table marks personal are sealed in
     * `personal`), webhook subscriptions (their signing secret sealed under a key derived from
     * the master key), one delivery row per event and subscription (the worker claims a row by
     * moving next_at past a lease, so a crash leaves it due again; only the oldest pending
     * delivery of a subscription and customer is due, which keeps each customer's events in
     * order), the recipients a customer's data goes to and the notices they were sent
     * (GDPR Art. 19), legal holds, and the retention runs (their counts, bound to the run's
     * ledger entry by its digest). */
    "CREATE TABLE outbox_events("
    "  seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
    "  customer_id TEXT, created_at INTEGER NOT NULL, payload TEXT NOT NULL, personal BLOB);"
    "CREATE INDEX outbox_events_by_customer ON outbox_events(customer_id, seq);"
    "CREATE INDEX outbox_events_by_time ON outbox_events(created_at);"
    "CREATE TABLE webhook_subscriptions("
    "  id TEXT PRIMARY KEY, url TEXT NOT NULL, description TEXT NOT NULL, events TEXT NOT NULL,"
    "  purpose TEXT NOT NULL, secret BLOB NOT NULL, status TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, created_by TEXT NOT NULL,"
    "  deleted_at INTEGER);"
    "CREATE TABLE webhook_deliveries("
    "  seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, event_seq INTEGER NOT NULL,"
    "  subscription_id TEXT NOT NULL, customer_id TEXT, status TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL, next_at INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    "  claimed_at INTEGER, finished_at INTEGER, last_status INTEGER, last_error TEXT);"
    "CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_at)"
    " WHERE status = 'pending';"
    "CREATE INDEX webhook_deliveries_order ON webhook_deliveries(subscription_id, customer_id, seq)"
    " WHERE status = 'pending';"
    "CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries(status, finished_at);"
    "CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries(event_seq);"
    "CREATE TABLE recipients("
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, subscription_id TEXT,"
    "  contact TEXT, purposes TEXT NOT NULL, categories TEXT NOT NULL, scope TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, removed_at INTEGER);"
    "CREATE TABLE recipient_customers("
    "  recipient_id TEXT NOT NULL, customer_id TEXT NOT NULL, since INTEGER NOT NULL,"
    "  PRIMARY KEY(recipient_id, customer_id));"
    "CREATE INDEX recipient_customers_by_customer ON recipient_customers(customer_id);"
    "CREATE TABLE recipient_notices("
    "  id TEXT PRIMARY KEY, recipient_id TEXT NOT NULL, customer_id TEXT NOT NULL,"
    "  event_id TEXT NOT NULL, event_type TEXT NOT NULL, request_id TEXT,"
    "  delivery_id TEXT, status TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  told_at INTEGER, told_by TEXT, note TEXT);"
    "CREATE INDEX recipient_notices_by_customer ON recipient_notices(customer_id, created_at);"
    "CREATE INDEX recipient_notices_by_request ON recipient_notices(request_id);"
    "CREATE INDEX recipient_notices_by_delivery ON recipient_notices(delivery_id);"
    "CREATE TABLE legal_holds("
    "  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, reason TEXT NOT NULL,"
    "  legal_basis TEXT NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL,"
    "  expires_at INTEGER, released_at INTEGER, released_by TEXT, release_reason TEXT);"
    "CREATE INDEX legal_holds_by_customer ON legal_holds(customer_id, created_at);"
    "CREATE TABLE retention_runs("
    "  id TEXT PRIMARY KEY, started_at INTEGER NOT NULL, finished_at INTEGER NOT NULL,"
    "  dry_run INTEGER NOT NULL, started_by TEXT NOT NULL, counts TEXT NOT NULL,"
    "  audit_seq INTEGER);",
    /* 13: audit — the access log shows refused attempts on the customer's data too
     * (access.denied), so its partial index holds them beside the reads. */
    "DROP INDEX audit_reads_by_customer;"
    "CREATE INDEX audit_access_by_customer ON audit_events(customer_id, seq)"
    " WHERE action LIKE '%.read' OR action = 'access.denied';",
    /* 14: outbox — the due deliveries are found by (status, next_at): with the partial index
     * on next_at alone the planner preferred (status, finished_at) and sorted every pending
     * row on each claim, so a long queue made each claim slower. */
    "DROP INDEX webhook_deliveries_due;"
    "CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_at);",
    /* 15: dsar — data-subject requests (one row each, with their deadlines) and the history of
     * every change of their state. The partial index holds open requests only, by deadline, for
     * the overdue and due-soon lists. Sealed columns (details, notes) are under the customer's
     * key and go with it on erasure. A tombstone proves an erasure: which customer, by which
     * request, when, and how many rows of each kind went (no personal data). A verification
     * is the pending one-time code of a request, as a keyed hash under a random key of its
     * own, deleted once the decision is made. */
    "CREATE TABLE dsar_requests("
    "  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, type TEXT NOT NULL, state TEXT NOT NULL,"
    "  regime TEXT NOT NULL, intake TEXT NOT NULL, interaction_id TEXT,"
    "  received_at INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    "  ack_due_at INTEGER, acknowledged_at INTEGER, due_at INTEGER NOT NULL,"
    "  original_due_at INTEGER NOT NULL, unrolled_due_at INTEGER, extended_at INTEGER,"
    "  extension_reason TEXT, extension_note BLOB, closed_at INTEGER, refusal_reason TEXT,"
    "  refusal_note BLOB, details BLOB, due_soon_at INTEGER,"
    "  verification_sends INTEGER NOT NULL DEFAULT 0, verified_at INTEGER);"
    "CREATE INDEX dsar_requests_by_customer ON dsar_requests(customer_id, received_at);"
    "CREATE INDEX dsar_requests_by_received ON dsar_requests(received_at, id);"
    "CREATE INDEX dsar_requests_open ON dsar_requests(due_at, id) WHERE closed_at IS NULL;"
    "CREATE TABLE dsar_history("
    "  request_id TEXT NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL, from_state TEXT,"
    "  to_state TEXT NOT NULL, actor_role TEXT NOT NULL, actor_token TEXT NOT NULL,"
    "  reason TEXT, PRIMARY KEY(request_id, seq)) WITHOUT ROWID;"
    "CREATE TABLE dsar_tombstones("
    "  customer_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, erased_at INTEGER NOT NULL,"
    "  regime TEXT NOT NULL, counts TEXT NOT NULL, actor_role TEXT NOT NULL,"
    "  actor_token TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE dsar_verifications("
    "  request_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, channel TEXT NOT NULL,"
    "  hash_key BLOB NOT NULL, code_hash BLOB NOT NULL, attempts INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX dsar_verifications_by_customer ON dsar_verifications(customer_id);",
    /* 16: staff — people's accounts for the web console (the password as an Argon2id hash,
     * failed sign-ins in a row and the lockout they caused) and their sessions (the SHA-256 of
     * the cookie's secret, the last use for the idle limit, the purpose declared). */
    "CREATE TABLE staff("
    "  id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, name TEXT NOT NULL, role TEXT NOT NULL,"
    "  password_hash TEXT NOT NULL, created_at INTEGER NOT NULL, disabled_at INTEGER,"
    "  failed_count INTEGER NOT NULL, locked_until INTEGER, last_sign_in_at INTEGER);"
    "CREATE TABLE staff_sessions("
    "  id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, staff_id TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, ended_at INTEGER, purpose TEXT);"
    "CREATE INDEX staff_sessions_by_staff ON staff_sessions(staff_id);",
    /* 17: portal — the customer's self-service sign-in: a challenge is one code asked for (the
     * code as a keyed hash under a random key of its own, both cleared once it is decided; no
     * customer when the identity was not on file), kept an hour to count the codes sent; a
     * session is the SHA-256 of the cookie's secret, the customer and the last use. */
    "CREATE TABLE portal_challenges("
    "  id TEXT PRIMARY KEY, customer_id TEXT, channel TEXT NOT NULL, hash_key BLOB,"
    "  code_hash BLOB, attempts INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL);"
    "CREATE INDEX portal_challenges_by_customer ON portal_challenges(customer_id, created_at);"
    "CREATE INDEX portal_challenges_by_created ON portal_challenges(created_at);"
    "CREATE TABLE portal_sessions("
    "  id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, customer_id TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, ended_at INTEGER);"
    "CREATE INDEX portal_sessions_by_customer ON portal_sessions(customer_id);",
    /* 18: core, cases (src/cases) — complaints and service levels.
     * core: a new interaction learns the earlier interactions of its thread (the case they
     * belong to continues) by the thread's keyed hash; only threaded rows are in the index.
     * cases: one row per case, its clocks as columns (first response fr_, next response nr_,
     * resolution rs_; due instants, when met, when breached) so the queue and the due-soon and
     * breached lists are index ranges: queue_due is the earliest deadline of a running clock,
     * watch_at the earliest not yet marked breached (the sweeper's next look), queue_rank
     * orders the cases waiting for an agent (queued = 1): queue_due, or a time after every
     * deadline when no clock runs (NULL sorts first in SQLite and last in PostgreSQL). sla
     * keeps the policy that applied, as JSON. sealed holds what is sensitive (vulnerability
     * flags, customer value) sealed for the customer.
     * case_events is the case's history, each row bound to its ledger entry (audit_seq, the
     * entry's data_sha256 is the digest of the row). case_agents are the people the queue
     * serves (teams and skills). ETAs read resolved cases by type (cases_resolved). */
    "CREATE INDEX interactions_by_thread ON interactions(thread_hash)"
    " WHERE thread_hash IS NOT NULL;"
    "CREATE TABLE cases("
    "  id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, type TEXT NOT NULL,"
    "  status TEXT NOT NULL, priority INTEGER NOT NULL, impact TEXT NOT NULL,"
    "  channel TEXT NOT NULL, team TEXT NOT NULL, skill TEXT, assignee TEXT,"
    "  tags TEXT NOT NULL, source TEXT NOT NULL, complaint_rules TEXT, incident_id TEXT,"
    "  follows TEXT, priority_why TEXT NOT NULL, sla TEXT, created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL, opened_at INTEGER NOT NULL,"
    "  fr_due INTEGER, fr_at INTEGER, fr_breached INTEGER,"
    "  nr_start INTEGER, nr_due INTEGER, nr_breaches INTEGER NOT NULL DEFAULT 0,"
    "  nr_breached INTEGER, rs_due INTEGER, rs_paused_ms INTEGER NOT NULL DEFAULT 0,"
    "  rs_paused_since INTEGER, rs_breached INTEGER, queue_due INTEGER, watch_at INTEGER,"
    "  breached INTEGER NOT NULL DEFAULT 0,"
    "  queued INTEGER NOT NULL, queue_rank INTEGER NOT NULL, queue_len INTEGER NOT NULL,"
    "  resolved_at INTEGER,"
    "  closed_at INTEGER, reopened INTEGER NOT NULL DEFAULT 0, remedy TEXT,"
    "  remedy_amount INTEGER, remedy_currency TEXT, outcome TEXT, sealed BLOB,"
    "  flagged TEXT, version INTEGER NOT NULL);"
    "CREATE INDEX cases_by_customer ON cases(customer_id, created_at);"
    "CREATE INDEX cases_queue ON cases(team, queue_rank, priority, id) WHERE queued = 1;"
    "CREATE INDEX cases_running ON cases(queue_due) WHERE queue_due IS NOT NULL;"
    "CREATE INDEX cases_watch ON cases(watch_at) WHERE watch_at IS NOT NULL;"
    "CREATE INDEX cases_breached ON cases(created_at) WHERE breached <> 0"
    " AND resolved_at IS NULL;"
    "CREATE INDEX cases_by_created ON cases(created_at);"
    "CREATE INDEX cases_by_status ON cases(status);"
    "CREATE INDEX cases_to_close ON cases(resolved_at) WHERE status = 'resolved';"
    "CREATE INDEX cases_resolved ON cases(type, resolved_at) WHERE resolved_at IS NOT NULL;"
    "CREATE INDEX cases_by_assignee ON cases(assignee, status) WHERE assignee IS NOT NULL;"
    "CREATE INDEX cases_by_incident ON cases(incident_id) WHERE incident_id IS NOT NULL;"
    "CREATE TABLE case_interactions("
    "  interaction_id TEXT NOT NULL, case_id TEXT NOT NULL, direction TEXT NOT NULL,"
    "  occurred_at INTEGER NOT NULL, PRIMARY KEY(interaction_id, case_id));"
    "CREATE INDEX case_interactions_by_case ON case_interactions(case_id, occurred_at);"
    "CREATE TABLE case_events("
    "  seq INTEGER PRIMARY KEY, case_id TEXT NOT NULL, at INTEGER NOT NULL,"
    "  action TEXT NOT NULL, actor TEXT NOT NULL, data TEXT NOT NULL, audit_seq INTEGER);"
    "CREATE INDEX case_events_by_case ON case_events(case_id, seq);"
    "CREATE TABLE case_agents("
    "  id TEXT PRIMARY KEY, token_id TEXT UNIQUE, name TEXT NOT NULL, teams TEXT NOT NULL,"
    "  skills TEXT NOT NULL, active INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);",
    /* 19: cases (src/cases) — incidents and the customers they affect. An incident holds no
     * personal data; incident_customers links each affected customer (by id) to the incident
     * and to their follow-up case, with what became of their notice: pending, told (channel,
     * time, reason, basis), deferred by quiet hours (the sweeper's partial index) or withheld
     * with the reason. */
    "CREATE TABLE incidents("
    "  id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, severity TEXT NOT NULL,"
    "  channel TEXT NOT NULL, title TEXT NOT NULL, description TEXT, team TEXT,"
    "  tags TEXT NOT NULL, legal_notice INTEGER NOT NULL, legal_basis TEXT,"
    "  started_at INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    "  resolved_at INTEGER, version INTEGER NOT NULL);"
    "CREATE INDEX incidents_by_created ON incidents(created_at, id);"
    "CREATE TABLE incident_customers("
    "  incident_id TEXT NOT NULL, customer_id TEXT NOT NULL, case_id TEXT,"
    "  added_by TEXT NOT NULL, added_at INTEGER NOT NULL, notice_status TEXT NOT NULL,"
    "  notice_channel TEXT, notice_at INTEGER, notice_reason TEXT, notice_basis TEXT,"
    "  attempts INTEGER NOT NULL, PRIMARY KEY(incident_id, customer_id));"
    "CREATE INDEX incident_customers_by_customer ON incident_customers(customer_id);"
    "CREATE INDEX incident_customers_deferred ON incident_customers(incident_id)"
    " WHERE notice_status = 'deferred';",
    /* 20: cases — how many cases wait for an agent in each team, kept by every write of a
     * case in its own transaction, so the queue's length is one row rather than a count over
     * the team's whole queue (a preview of the next case and each new case's queue length at
     * opening read it). Filled from the cases waiting now. */
    "CREATE TABLE case_queue_counts(team TEXT PRIMARY KEY, waiting INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "INSERT INTO case_queue_counts(team, waiting)"
    " SELECT team, count(*) FROM cases WHERE queued = 1 GROUP BY team;",
    /* 21: staff — when an administrator last set a temporary password; until the person
     * chooses their own, their sessions may do nothing else. */
    "ALTER TABLE staff ADD COLUMN password_reset_at INTEGER;",
};

const int cd__store_sqlite_migrations_count =
    (int)(sizeof cd__store_sqlite_migrations / sizeof cd__store_sqlite_migrations[0]);
