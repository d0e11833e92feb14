/*
 * storage/storage.h: the content-addressed blob store and its LMDB index.
 * Sections follow the files: digest.c (SHA-256 via OpenSSL EVP),
 * blobstore.c (files under <data>/blobs/sha256/ab/<hex>, temp files under
 * <data>/tmp), db.c (the only LMDB user).  No OpenSSL or LMDB type appears
 * here.  Nothing in storage/ knows about HTTP or upstreams.
 */
#ifndef STORAGE_H
#define STORAGE_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

/* digest.c ---------------------------------------------------------------- */

#define DIGEST_LEN 32
#define DIGEST_STRLEN (sizeof("sha256:") - 1 + 2 * DIGEST_LEN + 1)

/* A sha256 digest; the only algorithm the store accepts. */
struct digest {
	unsigned char b[DIGEST_LEN];
};

/*
 * Parses "sha256:<64 lowercase hex>" (the string must end there).  Returns 0,
 * or -1 for anything else, including other algorithms.
 */
int digest_parse(struct digest *, const char *);
/* As digest_parse, but for the first len bytes of s (no NUL needed). */
int digest_parsen(struct digest *, const char *s, size_t len);
/* Writes "sha256:<hex>" into out (DIGEST_STRLEN bytes). */
void digest_format(const struct digest *, char *out);
int digest_equal(const struct digest *, const struct digest *);
/* One-shot hash of a buffer. */
void digest_buf(const void *, size_t, struct digest *);

/* Incremental hashing: new, update*, final, free.  Fatal on OOM. */
struct digest_ctx;
struct digest_ctx *digest_ctx_new(void);
void digest_ctx_update(struct digest_ctx *, const void *, size_t);
/* Finishes into out; the context may then only be reset or freed. */
void digest_ctx_final(struct digest_ctx *, struct digest *out);
void digest_ctx_reset(struct digest_ctx *);
/* The digest of what was hashed so far; the context carries on. */
void digest_ctx_peek(const struct digest_ctx *, struct digest *out);
void digest_ctx_free(struct digest_ctx *);

/* blobstore.c -------------------------------------------------------------- */

struct blobstore;

/*
 * Opens (creating as needed) <dir>/blobs/sha256 and <dir>/tmp, and removes
 * temp files left by an earlier run.  NULL with a logged reason on error.
 */
struct blobstore *blobstore_open(const char *dir);
/* As blobstore_open, but leaves tmp/ alone (offline verify reports it). */
struct blobstore *blobstore_open_keep_tmp(const char *dir);
void blobstore_free(struct blobstore *);

/*
 * Opens a stored blob read-only.  Returns a new fd (caller closes) and sets
 * *size, or -1 with errno (ENOENT when absent).
 */
int blobstore_open_blob(struct blobstore *, const struct digest *, off_t *size);
/* 1 if the blob's file exists, 0 if not. */
int blobstore_has(struct blobstore *, const struct digest *);
/* Removes a stored blob's file; 0, or -1 with errno. */
int blobstore_remove(struct blobstore *, const struct digest *);
/* Writes the stored path of d into buf; -1 if it does not fit. */
int blobstore_path(
    struct blobstore *, const struct digest *, char *buf, size_t len);

/*
 * A temp file being filled while it is hashed.  Readers may open the same
 * inode through blobstore_tmp_fd() and read [0, size) while it grows; after
 * a successful commit the fd refers to the stored file.
 */
struct blobstore_tmp;

struct blobstore_tmp *blobstore_tmp_new(struct blobstore *);
/*
 * The per-digest temp file for d: what an interrupted fill of d left there
 * (kept across restarts for a day) is hashed and kept, and writing carries
 * on after it.  Freed unfinished with bytes in it, it stays for the next.
 */
struct blobstore_tmp *blobstore_tmp_resume(
    struct blobstore *, const struct digest *);
/* 1 if what blobstore_tmp_resume found already hashes to its digest. */
int blobstore_tmp_complete(const struct blobstore_tmp *);
/* Appends and hashes; 0, or -1 on an I/O error (logged). */
int blobstore_tmp_write(struct blobstore_tmp *, const void *, size_t);
/* Throws away what was written (for a restart from byte 0). */
int blobstore_tmp_reset(struct blobstore_tmp *);
/*
 * Allocates the file's blocks up to total bytes (the declared length) ahead
 * of the writes, keeping its size; best effort: nothing on failure.
 */
void blobstore_tmp_reserve(struct blobstore_tmp *, uint64_t total);
int blobstore_tmp_fd(const struct blobstore_tmp *); /* borrowed */
uint64_t blobstore_tmp_size(const struct blobstore_tmp *);
/*
 * Finishes the hash into *got.  If it equals want: fsync, rename into place,
 * return 0.  Otherwise unlink and return -1 (*got says what arrived).  An
 * I/O failure also returns -1 and leaves *got zeroed.
 */
int blobstore_tmp_commit(
    struct blobstore_tmp *, const struct digest *want, struct digest *got);
/*
 * The two halves of commit, so that the slow half can run off the event
 * loop: verify finishes the hash and compares (a mismatch unlinks, -1);
 * persist (fsync, rename into place, fsync the directory) touches only this
 * temp file and the file system, so it may run on a worker thread.
 */
int blobstore_tmp_verify(
    struct blobstore_tmp *, const struct digest *want, struct digest *got);
int blobstore_tmp_persist(struct blobstore_tmp *);
/* Closes; unlinks the temp file unless committed.  NULL-safe. */
void blobstore_tmp_free(struct blobstore_tmp *);
/*
 * 1 if the last write or create failed for lack of space (ENOSPC, EDQUOT);
 * such a partial file is removed on free instead of kept for resuming.
 */
int blobstore_tmp_nospace(const struct blobstore_tmp *);

/* Store lifecycle (evict, gc, verify). */

/* Size and free space of the store's file system (statvfs), in bytes. */
int blobstore_statfs(struct blobstore *, uint64_t *total, uint64_t *avail);
/* A kept partial fill tmp/partial-<hex>: what it holds and its age. */
struct blobstore_partial {
	struct digest digest;
	uint64_t size; /* bytes on disk */
	int64_t mtime; /* wall seconds of the last write */
};
/* The partial files now in tmp/ (new array, caller frees); 0 or -1. */
int blobstore_partials(
    struct blobstore *, struct blobstore_partial **out, size_t *n);
/* Removes d's partial file; 0, or -1 with errno. */
int blobstore_partial_remove(struct blobstore *, const struct digest *);
/*
 * Calls fn for every file under blobs/sha256: d set for a well-named file
 * (d NULL for anything else, with its path).  0 or -1.
 */
int blobstore_walk(struct blobstore *,
    void (*fn)(void *arg, const struct digest *d, const char *path), void *arg);
/*
 * Calls fn for each leftover in tmp/: anything but a partial file younger
 * than the resume window.  0 or -1.
 */
int blobstore_walk_tmp(
    struct blobstore *, void (*fn)(void *arg, const char *path), void *arg);
/* Moves a stored file (or any path) into <dir>/quarantine/; 0 or -1. */
int blobstore_quarantine(struct blobstore *, const char *path);
/* Hashes a stored blob's file into *out; 0, or -1 (logged). */
int blobstore_hash(
    struct blobstore *, const struct digest *, struct digest *out);

/* db.c --------------------------------------------------------------------- */

#define DB_MEDIA_TYPE_MAX 128
#define DB_UPSTREAM_MAX 64

struct db;

/* What the index knows about one stored digest (blob or manifest). */
struct db_blob {
	uint64_t size;
	int64_t stored_at;		    /* wall seconds */
	int64_t last_access;		    /* wall seconds */
	uint32_t pins;			    /* derived from the pins database */
	char media_type[DB_MEDIA_TYPE_MAX]; /* "" for plain blobs */
	char upstream[DB_UPSTREAM_MAX];	    /* where it came from */
};

/* A tag -> digest mapping, keyed by (upstream, repository, tag). */
struct db_tag {
	struct digest digest;
	int64_t confirmed_at; /* wall seconds of the last upstream check */
	char media_type[DB_MEDIA_TYPE_MAX];
};

/*
 * Opens (creating) the LMDB environment in dir.  NULL with a logged reason
 * on error.
 */
struct db *db_open(const char *dir);
void db_free(struct db *); /* flushes pending touches; NULL-safe */
/* Sets the LMDB map size (the index's upper bound; 1 GiB by default),
 * with no transaction open.  0 or -1 (logged). */
int db_set_map_size(struct db *, uint64_t bytes);

/* 0 found (copied into *out), 1 absent, -1 error (logged). */
int db_blob_get(struct db *, const struct digest *, struct db_blob *out);
/*
 * Inserts or replaces; 0 or -1.  The pin count is derived, never taken from
 * the argument: a replace keeps the record's, a new record gets one per pin
 * list naming the digest.
 */
int db_blob_put(struct db *, const struct digest *, const struct db_blob *);
/* 0 deleted, 1 absent, -1 error. */
int db_blob_del(struct db *, const struct digest *);
/* Number of blobs and their total size. */
int db_blob_totals(struct db *, uint64_t *count, uint64_t *bytes);
/*
 * All of them and those with a pin count above zero: totals walked once at
 * open and kept by every write since (O(1); a scrape of /metrics reads it).
 */
struct db_totals {
	uint64_t blobs, bytes;
	uint64_t pinned_blobs, pinned_bytes;
};
int db_totals(struct db *, struct db_totals *);
/* How many times the blob records were walked for the totals: once, at
 * open (db_totals reads the totals kept since; tests check it). */
uint64_t db_walks(struct db *);
/* Digests with a pin count above zero (new array; 0 or -1). */
int db_pinned(struct db *, struct digest **, size_t *n);

/* As db_blob_get: 0 found, 1 absent, -1 error.  db_tag_put: 0 or -1. */
int db_tag_get(struct db *, const char *upstream, const char *repo,
    const char *tag, struct db_tag *out);
int db_tag_put(struct db *, const char *upstream, const char *repo,
    const char *tag, const struct db_tag *);

/*
 * Records an access in memory; db_flush() writes all pending ones in one
 * write transaction (called from a timer every few seconds and at exit).
 */
void db_touch(struct db *, const struct digest *, int64_t now);
int db_flush(struct db *);

/* Store-lifetime counters, by name.  0 or -1. */
int db_counter_add(struct db *, const char *name, uint64_t delta);
int db_counter_get(struct db *, const char *name, uint64_t *out);

/*
 * Pins: (recipe, version) -> the digests of its closure.  Setting a list
 * replaces the old one and adjusts each blob's pin count in the same
 * transaction.  0 or -1; db_pins_del: 0, 1 if the recipe had none, -1.
 */
int db_pins_set(struct db *, const char *recipe, const char *version,
    const struct digest *, size_t n);
int db_pins_del(struct db *, const char *recipe);
/* One version's pins only: 0, 1 if it had none, -1.  The blobs stay. */
int db_pins_unset(struct db *, const char *recipe, const char *version);

/*
 * Store lifecycle.  db_store_bytes: the running total of the sizes of all
 * blob records (read once at open, kept up to date by put and delete).
 * db_blob_list: every blob record, copied out (new array, caller frees);
 * safe on a worker thread (read-only).  db_blob_evict: deletes d's record
 * only if it is still unpinned and was not used after last_access (pending
 * touches included): 0 deleted (*out has the record), 1 kept, -1 error.
 * db_tags_drop: deletes every tag mapping to one of d[0..n); 0 or -1.
 * db_pins_check: compares each blob's pin count with the pins table; fn is
 * called for each difference (with repair, the count is rewritten first).
 * Returns the number of differences, or -1.
 */
struct db_entry {
	struct digest digest;
	struct db_blob b;
};
uint64_t db_store_bytes(struct db *);
uint64_t db_store_count(struct db *);
int db_blob_list(struct db *, struct db_entry **out, size_t *n);
int db_blob_evict(struct db *, const struct digest *, int64_t last_access,
    struct db_blob *out);
int db_tags_drop(struct db *, const struct digest *, size_t n);
int db_pins_check(struct db *, int repair,
    void (*fn)(void *arg, const struct digest *, uint32_t have, uint32_t want),
    void *arg);

/* Durable jobs: opaque records by id, encoded by prewarm/. */
int db_job_put(struct db *, const char *id, const void *, size_t);
int db_job_del(struct db *, const char *id);
/* Calls fn for every job, outside any transaction. */
int db_job_list(struct db *,
    void (*fn)(void *arg, const char *id, const void *val, size_t len),
    void *arg);

/*
 * Run records (`ccprewarm run`): opaque bytes encoded by prewarm/record.c, by
 * name. db_run_get: 0 and a new *val (caller frees), 1 absent, -1 error.
 * db_run_del: 0, 1 absent, -1.  db_run_list as db_job_list.
 */
int db_run_put(struct db *, const char *name, const void *, size_t);
int db_run_get(struct db *, const char *name, void **val, size_t *len);
int db_run_del(struct db *, const char *name);
int db_run_list(struct db *,
    void (*fn)(void *arg, const char *name, const void *val, size_t len),
    void *arg);
/* The run `runs compare` measures against: set 0/-1; get 0 (name copied
 * into buf), 1 none set, -1 error. */
int db_run_baseline_set(struct db *, const char *name);
int db_run_baseline_get(struct db *, char *buf, size_t len);
/* verify.c: the store checked against its index ------------------------ */

enum verify_kind {
	VERIFY_CORRUPT, /* file's bytes (or size) do not match its name */
	VERIFY_MISSING, /* index entry without a file */
	VERIFY_ORPHAN,	/* well-named file without an index entry */
	VERIFY_STRAY,	/* a file under blobs/ that no digest names */
	VERIFY_PINS,	/* pin count differs from the pins table */
	VERIFY_TEMP,	/* leftover temp file */
};

struct verify_problem {
	enum verify_kind kind;
	struct digest digest; /* all but STRAY and TEMP */
	char *path;	      /* owned; NULL for MISSING and PINS */
	uint32_t have, want;  /* PINS */
	int ignore;	      /* the caller knows why (a fill in flight) */
	int repaired;
};

struct verify_report {
	struct verify_problem *p;
	size_t n;
	uint64_t blobs;	       /* index entries checked */
	uint64_t files;	       /* files under blobs/ */
	uint64_t hashed_bytes; /* with VERIFY_REHASH */
};

enum verify_flags {
	VERIFY_REHASH = (1 << 0),	  /* read and hash every stored file */
	VERIFY_DELETE_ORPHANS = (1 << 1), /* start-up: not quarantined */
};

/*
 * Compares files, index and pins (read-only: may run on a worker thread,
 * never alongside verify_repair).  Sizes are always compared; contents with
 * VERIFY_REHASH.  0, or -1 if the store could not be read.
 */
int verify_scan(
    struct blobstore *, struct db *, enum verify_flags, struct verify_report *);
/*
 * Fixes what scan found (but ignored ones): corrupt and stray files and
 * orphans go to quarantine/ (orphans are deleted with
 * VERIFY_DELETE_ORPHANS), index entries without files are dropped with the
 * tags pointing at them, pin counts are recomputed, temp leftovers
 * removed.  Returns how many could not be fixed.
 */
int verify_repair(
    struct blobstore *, struct db *, enum verify_flags, struct verify_report *);
/* Problems not ignored. */
size_t verify_count(const struct verify_report *);
const char *verify_kind_name(enum verify_kind);
void verify_report_release(struct verify_report *);

/* lru.c: which bytes to give back, in which order ----------------------- */

/*
 * The budget: max_bytes caps what the store holds (blobs, manifests and
 * kept partial files); the floor keeps min_free_bytes and min_free_percent
 * of the file system free.  0 is off.  Crossing either starts eviction,
 * which goes on down to the low water mark: low_water_percent of max_bytes,
 * and the floor plus (100 - low_water_percent)% of the floor.
 */
struct lru_budget {
	uint64_t max_bytes;
	uint64_t min_free_bytes;
	unsigned min_free_percent;
	unsigned low_water_percent; /* 1..100; 0 means the default, 90 */
};

/* What the store holds now. */
struct lru_usage {
	uint64_t used; /* store bytes + partial bytes */
	uint64_t fs_total;
	uint64_t fs_avail;
};

/* 1 if the budget has a limit at all. */
int lru_budget_on(const struct lru_budget *);
/* The free-space floor in bytes on a file system of fs_total bytes. */
uint64_t lru_floor(const struct lru_budget *, uint64_t fs_total);
/*
 * Bytes to free so that incoming more bytes stay within the budget: 0 while
 * neither mark would be crossed, else enough to reach the low water mark.
 * With force (gc), the low water mark counts even if nothing is crossed.
 */
uint64_t lru_need(const struct lru_budget *, const struct lru_usage *,
    uint64_t incoming, int force);

enum lru_kind { LRU_PARTIAL, LRU_BLOB, LRU_MANIFEST };

/* One thing that could be given back. */
struct lru_item {
	enum lru_kind kind;
	struct digest digest;
	uint64_t size;
	int64_t last_access; /* partials: mtime */
	int64_t stored_at;
	uint32_t pins;
	int busy;   /* in flight or being read: never chosen */
	int chosen; /* set by lru_plan */
};

/*
 * Orders items for eviction: partial files first (oldest first), then
 * blobs and manifests by last access (oldest first; ties by stored_at,
 * then digest), pinned ones last (never chosen).
 */
void lru_sort(struct lru_item *, size_t n);
/*
 * Marks, in order, the items to give back until need bytes are freed:
 * never a pinned or busy item; with all_partials every partial that is not
 * busy as well.  Returns the bytes chosen (may be < need).
 */
uint64_t lru_plan(struct lru_item *, size_t n, uint64_t need, int all_partials);
/*
 * Every candidate, sorted: the partial files and every index entry (one
 * read-only walk; fine on a worker thread).  *items is a new array;
 * *pinned_bytes the size of the pinned ones.  0 or -1.
 */
int lru_collect(struct blobstore *, struct db *, struct lru_item **items,
    size_t *n, uint64_t *pinned_bytes);

#endif
