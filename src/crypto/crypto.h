/* crypto — keys, hashing, field sealing, blind indexes and signatures.
 *
 * Owns: every use of libsodium and OpenSSL libcrypto in Candor. SHA-256 for the audit ledger
 * (one-shot: OpenSSL's SHA256_* calls; two messages at once: our own code on the CPU's SHA
 * extensions where it has them; incremental: EVP); key files in the data directory
 * (created 0600, refused when readable by group or others); the master key (a key file or the
 * CANDOR_MASTER_KEY environment variable); per-customer data keys wrapped by the master key;
 * AEAD sealing of personal fields (XChaCha20-Poly1305, associated data binding customer and
 * field, and in format 2 the field's row); keyed blind indexes for exact-match lookups;
 * Ed25519 signing keys and public-key export (raw, hex, PEM SubjectPublicKeyInfo).
 * docs/crypto.md describes the key hierarchy and the byte formats.
 *
 * Must never: log or put key material or plaintext in an error detail; keep a secret in memory
 * it owns past the matching wipe or free call (secrets are cleared with sodium_memzero). Callers
 * that hold keys in their own arrays clear them with cd_crypto_wipe.
 *
 * Threads: call cd_crypto_init once before starting threads. After that every function is
 * thread-safe; a struct cd_crypto_sha256 belongs to one thread at a time. The one-shot SHA-256
 * keeps one digest context per thread (freed when the thread exits). */
#ifndef CD_CRYPTO_H
#define CD_CRYPTO_H

#include "base/base.h"
#include <stddef.h>
#include <stdint.h>

#define CD_CRYPTO_KEY_LEN 32   /* master, data, index keys */
#define CD_CRYPTO_HASH_LEN 32  /* SHA-256, blind index */
#define CD_CRYPTO_NONCE_LEN 24 /* XChaCha20-Poly1305 */
#define CD_CRYPTO_TAG_LEN 16
#define CD_CRYPTO_SEAL_VERSION 1 /* first byte of a sealed field bound to customer and field */
#define CD_CRYPTO_SEAL_VERSION_BOUND 2 /* ... bound to its row as well (cd_crypto_seal_bound) */
/* Sealed field = version (1) || nonce (24) || ciphertext (len of plaintext) || tag (16). */
#define CD_CRYPTO_SEAL_OVERHEAD (1 + CD_CRYPTO_NONCE_LEN + CD_CRYPTO_TAG_LEN)
#define CD_CRYPTO_WRAP_VERSION 1
/* Wrapped data key = version (1) || nonce (24) || ciphertext (32) || tag (16). */
#define CD_CRYPTO_WRAPPED_LEN (1 + CD_CRYPTO_NONCE_LEN + CD_CRYPTO_KEY_LEN + CD_CRYPTO_TAG_LEN)
#define CD_CRYPTO_MASTER_KEY_ENV "CANDOR_MASTER_KEY"
#define CD_CRYPTO_MASTER_KEY_FILE "master.key"
#define CD_CRYPTO_SIGNING_KEY_FILE "signing.key"
#define CD_CRYPTO_SIG_LEN 64
#define CD_CRYPTO_PK_LEN 32
#define CD_CRYPTO_PK_HEX_LEN (2 * CD_CRYPTO_PK_LEN)

/* ---- set-up and helpers ------------------------------------------------------------------ */

/* Initialises libsodium and fetches the SHA-256 implementation. Idempotent and safe to call
 * again from any thread once the first call returned.
 * Errors: CD_ERR_CRYPTO (libsodium could not initialise or SHA-256 is unavailable). */
enum cd_err cd_crypto_init(void);

/* Clears n bytes at p in a way the compiler cannot elide. p may be NULL when n is 0. */
void cd_crypto_wipe(void *p, size_t n);

/* ---- SHA-256 ----------------------------------------------------------------------------- */

/* SHA-256 of p[0..n) into out. Uses a digest context cached per thread, so no allocation
 * happens after the thread's first call.
 * Errors: CD_ERR_NOMEM (first call in a thread), CD_ERR_CRYPTO (OpenSSL failure). */
enum cd_err cd_crypto_sha256(const void *p, size_t n, uint8_t out[CD_CRYPTO_HASH_LEN]);

/* SHA-256 of the concatenation of nparts borrowed byte ranges, without copying them.
 * Errors: as cd_crypto_sha256. */
enum cd_err cd_crypto_sha256v(const struct cd_str *parts, size_t nparts,
                              uint8_t out[CD_CRYPTO_HASH_LEN]);

/* SHA-256(pa || body) into oa and SHA-256(pb || body) into ob: one body behind two prefixes, as
 * the audit ledger hashes each entry (chain hash and Merkle leaf). With the CPU's SHA extensions
 * the two are computed together, in about 0.75 of the time of two calls. All inputs are
 * borrowed; na and nb may be 0; oa and ob may alias pa or pb.
 * Errors: as cd_crypto_sha256 (never with the SHA extensions). */
enum cd_err cd_crypto_sha256_pair(const void *pa, size_t na, const void *pb, size_t nb,
                                  const void *body, size_t n, uint8_t oa[CD_CRYPTO_HASH_LEN],
                                  uint8_t ob[CD_CRYPTO_HASH_LEN]);

/* An incremental SHA-256. The struct owns one OpenSSL digest context, allocated by _init and
 * released by _free; _final leaves the context ready for a new message, so one struct can hash
 * any number of messages without allocating. */
struct cd_crypto_sha256 {
    void *ctx; /* private: EVP_MD_CTX */
};

/* Prepares h for a new message. Errors: CD_ERR_NOMEM, CD_ERR_CRYPTO; h is then empty and
 * _free is still safe to call. */
enum cd_err cd_crypto_sha256_init(struct cd_crypto_sha256 *h);

/* Feeds p[0..n) (borrowed) into the message. Errors: CD_ERR_CRYPTO. */
enum cd_err cd_crypto_sha256_update(struct cd_crypto_sha256 *h, const void *p, size_t n);

/* Writes the digest of everything fed since _init (or the last _final) into out and starts
 * a new message. Errors: CD_ERR_CRYPTO. */
enum cd_err cd_crypto_sha256_final(struct cd_crypto_sha256 *h, uint8_t out[CD_CRYPTO_HASH_LEN]);

/* Releases the context. Safe on a zeroed or already freed struct. */
void cd_crypto_sha256_free(struct cd_crypto_sha256 *h);

/* HMAC-SHA256 (RFC 2104, libsodium's) of the concatenation of parts[0..nparts) under
 * key[0..keylen) into out, without copying the parts: the signature of a webhook delivery.
 * All inputs are borrowed. Cannot fail. */
void cd_crypto_hmac_sha256(const uint8_t *key, size_t keylen, const struct cd_str *parts,
                           size_t nparts, uint8_t out[CD_CRYPTO_HASH_LEN]);

/* ---- key files and the master key -------------------------------------------------------- */

/* Loads len bytes of key material from the file at path, or, if the file does not exist,
 * creates it with fresh random bytes: written to a temporary file created 0600 with
 * O_CREAT|O_EXCL, fsynced, linked into place without ever replacing an existing file, and the
 * directory fsynced. Two processes racing to create the same file end up with the same key.
 * The loaded file must be a regular file (symlinks refused), readable by its owner only, and
 * exactly len bytes long.
 * Errors: CD_ERR_CRYPTO (the file is group/world-accessible, or has the wrong length; the
 * detail names the path and the fix), CD_ERR_IO (cannot read, create or sync), CD_ERR_INVALID
 * (len is 0 or above 4096). out is written only on success. */
enum cd_err cd_crypto_keyfile_load_or_create(const char *path, size_t len, uint8_t *out);

/* Loads the master key: from the environment variable CANDOR_MASTER_KEY (exactly 64 hex
 * digits) when it is set, else from DIR/master.key via cd_crypto_keyfile_load_or_create
 * (created on first use). data_dir is borrowed. *from_env (may be NULL) tells which source won.
 * Errors: CD_ERR_CRYPTO (the variable is set but malformed; the detail never echoes its value),
 * and those of cd_crypto_keyfile_load_or_create. The caller wipes out with cd_crypto_wipe. */
enum cd_err cd_crypto_master_key_load(const char *data_dir, uint8_t out[CD_CRYPTO_KEY_LEN],
                                      bool *from_env);

/* Derives an independent subkey from a root key (libsodium crypto_kdf, BLAKE2b): context is
 * exactly 8 characters naming the use (e.g. "cdbidx01" for the blind-index key), id numbers
 * keys within that use. Deterministic, cannot fail. */
void cd_crypto_derive_key(const uint8_t root[CD_CRYPTO_KEY_LEN], const char context[8], uint64_t id,
                          uint8_t out[CD_CRYPTO_KEY_LEN]);

/* ---- per-customer data keys -------------------------------------------------------------- */

/* Fills out with a fresh random 32-byte data key. */
void cd_crypto_data_key_new(uint8_t out[CD_CRYPTO_KEY_LEN]);

/* Wraps (encrypts) data_key under master with XChaCha20-Poly1305 and a random nonce. The
 * associated data binds the result to customer_id and key_version, so a wrapped key copied to
 * another customer or version does not unwrap. customer_id is borrowed. Cannot fail once
 * cd_crypto_init succeeded. */
void cd_crypto_key_wrap(const uint8_t master[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                        uint32_t key_version, const uint8_t data_key[CD_CRYPTO_KEY_LEN],
                        uint8_t out[CD_CRYPTO_WRAPPED_LEN]);

/* Unwraps a key made by cd_crypto_key_wrap. wrapped[0..len) is borrowed.
 * Errors: CD_ERR_CRYPTO (wrong length or version, wrong master key, customer or version, or
 * tampered bytes). out is written only on success; the caller wipes it after use. */
enum cd_err cd_crypto_key_unwrap(const uint8_t master[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                                 uint32_t key_version, const uint8_t *wrapped, size_t len,
                                 uint8_t out[CD_CRYPTO_KEY_LEN]);

/* ---- field sealing ----------------------------------------------------------------------- */

/* Encrypts plaintext under the customer's data key and APPENDS the sealed field
 * (CD_CRYPTO_SEAL_OVERHEAD + plaintext.len bytes, see the format above) to out. The associated
 * data binds customer_id and field_name (length-prefixed, so no two different pairs collide),
 * so a sealed value moved to another customer, row or column fails to open. All cd_str
 * arguments are borrowed. Errors: CD_ERR_TOO_BIG (out's max), CD_ERR_NOMEM; out is unchanged
 * on failure. */
enum cd_err cd_crypto_seal(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                           struct cd_str field_name, struct cd_str plaintext, struct cd_buf *out);

/* Checks and decrypts a sealed field, APPENDING the plaintext to out. Arguments are borrowed.
 * Errors: CD_ERR_CRYPTO (unknown version, too short, wrong key, customer or field, or any
 * changed byte), CD_ERR_TOO_BIG, CD_ERR_NOMEM; out is unchanged on failure. The plaintext is
 * personal data: the caller clears it (cd_crypto_wipe on out.p) before freeing when it can. */
enum cd_err cd_crypto_open(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                           struct cd_str field_name, struct cd_str sealed, struct cd_buf *out);

/* The row a format-2 sealed value is bound to: a digest of the parts that identify the row
 * (its id) and the row's metadata whose change must be detected, in an order the caller fixes.
 * Computed once per row, so sealing or opening several fields of a row hashes the parts once. */
struct cd_crypto_row {
    uint8_t digest[CD_CRYPTO_HASH_LEN];
};

/* Fills *out from parts[0..n) (borrowed). Cannot fail. */
void cd_crypto_row_bind(const struct cd_str *parts, size_t n, struct cd_crypto_row *out);

/* Format 2: cd_crypto_seal, with the associated data binding the sealed value also to its row
 * (cd_crypto_row_bind). A value copied onto another row, or left on a row whose bound metadata
 * changed, no longer opens. Errors: as cd_crypto_seal. */
enum cd_err cd_crypto_seal_bound(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                                 struct cd_str field_name, const struct cd_crypto_row *row,
                                 struct cd_str plaintext, struct cd_buf *out);

/* Opens a format-2 value made by cd_crypto_seal_bound with the same customer, field and row. A
 * format-1 value is refused (CD_ERR_CRYPTO, unknown format): callers that still accept format
 * 1 ask cd_crypto_sealed_format first. Errors: as cd_crypto_open. */
enum cd_err cd_crypto_open_bound(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                                 struct cd_str field_name, const struct cd_crypto_row *row,
                                 struct cd_str sealed, struct cd_buf *out);

/* The format of a sealed value (its first byte): CD_CRYPTO_SEAL_VERSION,
 * CD_CRYPTO_SEAL_VERSION_BOUND, or 0 when it is neither or too short to be sealed. */
int cd_crypto_sealed_format(struct cd_str sealed);

/* ---- blind index ------------------------------------------------------------------------- */

/* Computes the blind index of a normalised value: keyed BLAKE2b-256 under index_key over a
 * domain tag, the length-prefixed kind ("email", "phone", ...) and the value, so equal values of
 * different kinds never share an index. Normalisation (case, spaces, E.164) is the caller's.
 * Arguments are borrowed. Deterministic, cannot fail. */
void cd_crypto_blind_index(const uint8_t index_key[CD_CRYPTO_KEY_LEN], struct cd_str kind,
                           struct cd_str normalized_value, uint8_t out[CD_CRYPTO_HASH_LEN]);

/* Whether a[0..n) equals b[0..n), in time that does not depend on where they differ (for
 * secrets: codes, MACs). */
bool cd_crypto_equal(const void *a, const void *b, size_t n);

/* ---- Ed25519 signatures ------------------------------------------------------------------ */

/* An Ed25519 key pair. The secret half is cleared by cd_crypto_signer_wipe. */
struct cd_crypto_signer {
    uint8_t pk[CD_CRYPTO_PK_LEN];
    uint8_t sk[64]; /* private: libsodium's seed || public key */
};

/* Loads the signing key from the 32-byte seed file at path, creating it (0600, as
 * cd_crypto_keyfile_load_or_create) with a fresh seed if missing. path is borrowed.
 * Errors: those of cd_crypto_keyfile_load_or_create. out is written only on success. */
enum cd_err cd_crypto_signer_load_or_create(const char *path, struct cd_crypto_signer *out);

/* Makes a signer from a 32-byte seed (tests, key import). Cannot fail. */
void cd_crypto_signer_from_seed(const uint8_t seed[32], struct cd_crypto_signer *out);

/* Clears the key pair. */
void cd_crypto_signer_wipe(struct cd_crypto_signer *s);

/* Signs msg[0..n) (borrowed) with a pure Ed25519 signature (RFC 8032). Cannot fail. */
void cd_crypto_sign(const struct cd_crypto_signer *s, const void *msg, size_t n,
                    uint8_t sig[CD_CRYPTO_SIG_LEN]);

/* Verifies an Ed25519 signature of msg[0..n) under pk. Arguments are borrowed.
 * Errors: CD_ERR_INTEGRITY (the signature does not verify, or pk is not a valid key). */
enum cd_err cd_crypto_verify(const uint8_t pk[CD_CRYPTO_PK_LEN], const void *msg, size_t n,
                             const uint8_t sig[CD_CRYPTO_SIG_LEN]);

/* Writes pk as 64 lower-case hex digits and a NUL. */
void cd_crypto_pubkey_hex(const uint8_t pk[CD_CRYPTO_PK_LEN], char out[CD_CRYPTO_PK_HEX_LEN + 1]);

/* Appends pk as a PEM "PUBLIC KEY" (DER SubjectPublicKeyInfo, OID 1.3.101.112, RFC 8410) to
 * out, ending in a newline, so `openssl pkeyutl -verify -pubin -inkey FILE -rawin` accepts it.
 * Errors: CD_ERR_TOO_BIG, CD_ERR_NOMEM; out is unchanged on failure. */
enum cd_err cd_crypto_pubkey_pem(const uint8_t pk[CD_CRYPTO_PK_LEN], struct cd_buf *out);

/* Parses a public key given as 64 hex digits or as the PEM written by cd_crypto_pubkey_pem
 * (surrounding whitespace allowed). text is borrowed.
 * Errors: CD_ERR_INVALID (neither form, or not an Ed25519 SubjectPublicKeyInfo). */
enum cd_err cd_crypto_pubkey_parse(struct cd_str text, uint8_t pk[CD_CRYPTO_PK_LEN]);

/* The key id of pk: SHA-256 of its DER SubjectPublicKeyInfo (as RFC 9162 log ids).
 * Errors: as cd_crypto_sha256. */
enum cd_err cd_crypto_pubkey_id(const uint8_t pk[CD_CRYPTO_PK_LEN],
                                uint8_t out[CD_CRYPTO_HASH_LEN]);

/* ---- bearer secrets ---------------------------------------------------------------------- */

/* Length of a bearer secret: a 4-character prefix ("cnd_", "css_") and 43 base64url characters
 * of 256 random bits. */
#define CD_CRYPTO_SECRET_LEN 47

/* Makes a new bearer secret (API token, console session) into out (CD_CRYPTO_SECRET_LEN + 1
 * bytes, NUL-terminated) with its SHA-256 in hash, the only form that is stored: a stolen
 * database cannot be replayed as credentials. prefix has 4 characters.
 * Errors: as cd_crypto_sha256. */
enum cd_err cd_crypto_secret_new(const char prefix[5], char out[CD_CRYPTO_SECRET_LEN + 1],
                                 uint8_t hash[CD_CRYPTO_HASH_LEN]);

/* Length of a token derived from a bearer secret: 43 base64url characters. */
#define CD_CRYPTO_DERIVED_LEN 43

/* The token derived from secret under label (SHA-256 of the label and the secret, base64url)
 * into out (CD_CRYPTO_DERIVED_LEN + 1 bytes): a session's anti-forgery token, which needs no
 * storage and cannot be had without the secret. Errors: as cd_crypto_sha256. */
enum cd_err cd_crypto_derived(const char *label, struct cd_str secret,
                              char out[CD_CRYPTO_DERIVED_LEN + 1]);

/* True when presented is the token derived from secret under label (constant time). */
bool cd_crypto_derived_check(const char *label, struct cd_str secret, struct cd_str presented);

/* ---- one-time codes ---------------------------------------------------------------------- */

#define CD_CRYPTO_CODE_DIGITS 8

/* A uniformly random code of CD_CRYPTO_CODE_DIGITS decimal digits into out (NUL-terminated),
 * for a person to read and type back. */
void cd_crypto_code_new(char out[CD_CRYPTO_CODE_DIGITS + 1]);

/* True when s is CD_CRYPTO_CODE_DIGITS decimal digits (the shape of a code, not its value). */
bool cd_crypto_code_shaped(struct cd_str s);

/* ---- passwords --------------------------------------------------------------------------- */

/* Room for an encoded password hash ("$argon2id$v=19$m=...,t=...,p=1$salt$hash" and its NUL). */
#define CD_CRYPTO_PWHASH_MAX 128

/* Hashes a password with Argon2id (libsodium's crypto_pwhash_str_alg, its interactive limits:
 * 64 MiB and 2 passes) into out, a self-describing string with a random salt. Takes about a
 * tenth of a second on purpose; call it off the event threads. At most two hashes or
 * verifications run at once in a process; more wait their turn.
 * Errors: CD_ERR_NOMEM (the 64 MiB could not be had), CD_ERR_CRYPTO. */
enum cd_err cd_crypto_pwhash(struct cd_str password, char out[CD_CRYPTO_PWHASH_MAX]);

/* True when password matches the encoded hash (cd_crypto_pwhash); false for a wrong password
 * or a hash that is not one. The comparison takes the same time whatever the password. */
bool cd_crypto_pwhash_verify(const char *hash, struct cd_str password);

#endif
