/*
 * storage/db.c: the LMDB index (the only file that includes <lmdb.h>).  One
 * environment, named databases for blob metadata, tags, pins, jobs, counters
 * and meta.  Values are explicit little-endian records with a leading version
 * byte, copied out before their transaction ends.  Access times are buffered
 * in memory and written in one transaction per flush.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "../common/common.h"
#include "storage.h"

#define DB_MAP_SIZE ((size_t)1 << 30)
#define DB_RECORD_VERSION 1

/* Pending touches: open addressing, at most half full. */
#define DB_TOUCH_MAX 4096
#define DB_TOUCH_SLOTS (2 * DB_TOUCH_MAX)

/* version, size, stored_at, last_access, pins, media type, upstream */
#define DB_BLOB_VAL_MAX \
	(1 + 8 + 8 + 8 + 4 + 2 + DB_MEDIA_TYPE_MAX + 2 + DB_UPSTREAM_MAX)
/* version, digest, confirmed_at, media type */
#define DB_TAG_VAL_MAX (1 + DIGEST_LEN + 8 + 2 + DB_MEDIA_TYPE_MAX)
/* version, value */
#define DB_COUNTER_VAL_LEN (1 + 8)
/* LMDB's default maximum key size is 511. */
#define DB_KEY_BUF 512

struct db_touch {
	struct digest digest;
	int64_t at;
	int used;
};

struct db {
	MDB_env *env;
	char *dir;
	size_t mapsize;
	MDB_dbi blobs, tags, pins, jobs, counters, meta, runs;
	/* Touches come from every event loop: the table is under touch_mu;
	 * a flush swaps it with spare and writes that (one flush at a time,
	 * flush_mu), so a hit never waits for the write. */
	pthread_mutex_t touch_mu, flush_mu;
	struct db_touch *touch; /* DB_TOUCH_SLOTS entries */
	struct db_touch *spare;
	size_t ntouch;
	/*
	 * Totals of the blob records (all, and those with pins > 0): walked
	 * once at open, then kept by every write to a record.  A write adds
	 * its change to pend inside its transaction (under LMDB's writer
	 * lock); db_txn_commit applies it with atomic adds once committed.
	 * One process owns a store (blobstore.c's lock), so nothing else
	 * changes the records under these totals.
	 */
	struct db_totals tot, pend;
	uint64_t walks; /* full walks of the blob records */
};

static const struct {
	const char *name;
	size_t off;
} db_tables[] = {
    {"blobs", offsetof(struct db, blobs)},
    {"tags", offsetof(struct db, tags)},
    {"pins", offsetof(struct db, pins)},
    {"jobs", offsetof(struct db, jobs)},
    {"counters", offsetof(struct db, counters)},
    {"meta", offsetof(struct db, meta)},
    {"runs", offsetof(struct db, runs)},
};

/* Encoding ----------------------------------------------------------------- */

/* Writer over a buffer sized for the largest record, so it cannot overflow. */
struct db_wr {
	unsigned char *p;
	size_t len;
};

/* Reader; any short or malformed field sets bad and reads as zero. */
struct db_rd {
	const unsigned char *p;
	size_t len, off;
	int bad;
};

static void
db_wr_uint(struct db_wr *w, uint64_t v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		w->p[w->len++] = (unsigned char)(v >> (8 * i));
}

static void
db_wr_bytes(struct db_wr *w, const void *p, size_t n)
{
	memcpy(w->p + w->len, p, n);
	w->len += n;
}

/* Length-prefixed (u16) string, at most max-1 bytes of s. */
static void
db_wr_str(struct db_wr *w, const char *s, size_t max)
{
	size_t n = strnlen(s, max - 1);

	db_wr_uint(w, n, 2);
	db_wr_bytes(w, s, n);
}

static uint64_t
db_rd_uint(struct db_rd *r, size_t n)
{
	uint64_t v = 0;
	size_t i;

	if (r->bad || r->len - r->off < n) {
		r->bad = 1;
		return 0;
	}
	for (i = 0; i < n; i++)
		v |= (uint64_t)r->p[r->off + i] << (8 * i);
	r->off += n;
	return v;
}

static void
db_rd_bytes(struct db_rd *r, void *out, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = 1;
		memset(out, 0, n);
		return;
	}
	memcpy(out, r->p + r->off, n);
	r->off += n;
}

static void
db_rd_str(struct db_rd *r, char *out, size_t size)
{
	size_t n;

	n = (size_t)db_rd_uint(r, 2);
	if (r->bad || n >= size || r->len - r->off < n) {
		r->bad = 1;
		out[0] = '\0';
		return;
	}
	memcpy(out, r->p + r->off, n);
	out[n] = '\0';
	r->off += n;
}

static void
db_rd_init(struct db_rd *r, const MDB_val *v)
{
	r->p = v->mv_data;
	r->len = v->mv_size;
	r->off = 0;
	r->bad = 0;
	if (db_rd_uint(r, 1) != DB_RECORD_VERSION)
		r->bad = 1;
}

/* 0, or -1 if the record was short, long or of another version. */
static int
db_rd_done(const struct db_rd *r)
{
	return r->bad || r->off != r->len ? -1 : 0;
}

static size_t
db_blob_encode(const struct db_blob *b, unsigned char *buf)
{
	struct db_wr w = {buf, 0};

	db_wr_uint(&w, DB_RECORD_VERSION, 1);
	db_wr_uint(&w, b->size, 8);
	db_wr_uint(&w, (uint64_t)b->stored_at, 8);
	db_wr_uint(&w, (uint64_t)b->last_access, 8);
	db_wr_uint(&w, b->pins, 4);
	db_wr_str(&w, b->media_type, sizeof b->media_type);
	db_wr_str(&w, b->upstream, sizeof b->upstream);
	return w.len;
}

static int
db_blob_decode(const MDB_val *v, struct db_blob *b)
{
	struct db_rd r;

	db_rd_init(&r, v);
	b->size = db_rd_uint(&r, 8);
	b->stored_at = (int64_t)db_rd_uint(&r, 8);
	b->last_access = (int64_t)db_rd_uint(&r, 8);
	b->pins = (uint32_t)db_rd_uint(&r, 4);
	db_rd_str(&r, b->media_type, sizeof b->media_type);
	db_rd_str(&r, b->upstream, sizeof b->upstream);
	return db_rd_done(&r);
}

static size_t
db_tag_encode(const struct db_tag *t, unsigned char *buf)
{
	struct db_wr w = {buf, 0};

	db_wr_uint(&w, DB_RECORD_VERSION, 1);
	db_wr_bytes(&w, t->digest.b, DIGEST_LEN);
	db_wr_uint(&w, (uint64_t)t->confirmed_at, 8);
	db_wr_str(&w, t->media_type, sizeof t->media_type);
	return w.len;
}

static int
db_tag_decode(const MDB_val *v, struct db_tag *t)
{
	struct db_rd r;

	db_rd_init(&r, v);
	db_rd_bytes(&r, t->digest.b, DIGEST_LEN);
	t->confirmed_at = (int64_t)db_rd_uint(&r, 8);
	db_rd_str(&r, t->media_type, sizeof t->media_type);
	return db_rd_done(&r);
}

/* LMDB glue ---------------------------------------------------------------- */

/* LMDB never writes through a key or value pointer it is given. */
static MDB_val
db_val(const void *p, size_t n)
{
	MDB_val v;

	v.mv_size = n;
	v.mv_data = (void *)(uintptr_t)p;
	return v;
}

/* Logs an LMDB failure once; a full map gets an actionable message. */
static void
db_log(const struct db *db, const char *what, const char *subject, int err)
{
	if (err == MDB_MAP_FULL) {
		log_error(
		    "index full in '%s' (map size %zu MiB) while trying to %s '%s': run `ccprewarm gc` to drop unpinned entries, or raise index_map_bytes in the config and restart",
		    db->dir, db->mapsize >> 20, what, subject);
		return;
	}
	log_error("cannot %s '%s': %s", what, subject, mdb_strerror(err));
}

static int
db_txn_begin(struct db *db, unsigned int flags, MDB_txn **txn)
{
	int err;

	if ((err = mdb_txn_begin(db->env, NULL, flags, txn)) != 0) {
		*txn = NULL;
		db_log(db, "begin a transaction in", db->dir, err);
		return -1;
	}
	if (!(flags & MDB_RDONLY))
		memset(&db->pend, 0, sizeof db->pend);
	return 0;
}

/* Commits and always consumes *txn. */
static int
db_txn_commit(
    struct db *db, MDB_txn **txn, const char *what, const char *subject)
{
	struct db_totals d;
	int err;

	/*
	 * Taken while this transaction still holds LMDB's writer lock (the
	 * next writer's begin clears pend), added after the commit with atomic
	 * adds, so that writers on other threads cannot lose a change.
	 */
	d = db->pend;
	memset(&db->pend, 0, sizeof db->pend);
	err = mdb_txn_commit(*txn);
	*txn = NULL;
	if (err != 0) {
		db_log(db, what, subject, err);
		return -1;
	}
	__atomic_fetch_add(&db->tot.blobs, d.blobs, __ATOMIC_RELAXED);
	__atomic_fetch_add(&db->tot.bytes, d.bytes, __ATOMIC_RELAXED);
	__atomic_fetch_add(
	    &db->tot.pinned_blobs, d.pinned_blobs, __ATOMIC_RELAXED);
	__atomic_fetch_add(
	    &db->tot.pinned_bytes, d.pinned_bytes, __ATOMIC_RELAXED);
	return 0;
}

/*
 * A blob record changes from old to new inside a write transaction (NULL:
 * absent); the totals follow at commit.  Unsigned wrap-around makes the
 * subtractions exact once added.
 */
static void
db_totals_change(
    struct db *db, const struct db_blob *old, const struct db_blob *new)
{
	if (old != NULL) {
		db->pend.blobs--;
		db->pend.bytes -= old->size;
		if (old->pins > 0) {
			db->pend.pinned_blobs--;
			db->pend.pinned_bytes -= old->size;
		}
	}
	if (new != NULL) {
		db->pend.blobs++;
		db->pend.bytes += new->size;
		if (new->pins > 0) {
			db->pend.pinned_blobs++;
			db->pend.pinned_bytes += new->size;
		}
	}
}

static void
db_txn_abort(MDB_txn **txn)
{
	if (*txn != NULL)
		mdb_txn_abort(*txn);
	*txn = NULL;
}

/* Lifecycle ---------------------------------------------------------------- */

static int db_totals_walk(struct db *);

int
db_set_map_size(struct db *db, uint64_t bytes)
{
	int err;

	if ((err = mdb_env_set_mapsize(db->env, (size_t)bytes)) != 0) {
		db_log(db, "set the map size of index", db->dir, err);
		return -1;
	}
	db->mapsize = (size_t)bytes;
	return 0;
}

struct db *
db_open(const char *dir)
{
	struct db *db;
	MDB_txn *txn = NULL;
	MDB_dbi *dbi;
	size_t i;
	int dead, err, rc = -1;

	db = xcalloc(1, sizeof *db);
	db->dir = xstrdup(dir);
	db->mapsize = DB_MAP_SIZE;
	db->touch = xcalloc(DB_TOUCH_SLOTS, sizeof *db->touch);
	db->spare = xcalloc(DB_TOUCH_SLOTS, sizeof *db->spare);
	pthread_mutex_init(&db->touch_mu, NULL);
	pthread_mutex_init(&db->flush_mu, NULL);

	if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
		log_error(
		    "cannot create directory '%s': %s", dir, strerror(errno));
		goto out;
	}
	if ((err = mdb_env_create(&db->env)) != 0) {
		db->env = NULL;
		db_log(db, "create an lmdb environment for", dir, err);
		goto out;
	}
	if ((err = mdb_env_set_maxdbs(db->env, nitems(db_tables))) != 0 ||
	    (err = mdb_env_set_mapsize(db->env, db->mapsize)) != 0 ||
	    (err = mdb_env_open(db->env, dir, 0, 0644)) != 0) {
		db_log(db, "open index", dir, err);
		goto out;
	}
	/* Reader slots left by a crashed process would pin old pages. */
	if (mdb_reader_check(db->env, &dead) == 0 && dead > 0)
		log_info("cleared %d stale reader slots in '%s'", dead, dir);

	if (db_txn_begin(db, 0, &txn) == -1)
		goto out;
	for (i = 0; i < nitems(db_tables); i++) {
		dbi = (MDB_dbi *)(void *)((char *)db + db_tables[i].off);
		err = mdb_dbi_open(txn, db_tables[i].name, MDB_CREATE, dbi);
		if (err != 0) {
			db_log(db, "open database", db_tables[i].name, err);
			goto out;
		}
	}
	if (db_txn_commit(db, &txn, "create databases in", dir) == -1)
		goto out;
	if (db_totals_walk(db) == -1)
		goto out;
	rc = 0;
out:
	db_txn_abort(&txn);
	if (rc == -1) {
		db_free(db);
		return NULL;
	}
	return db;
}

void
db_free(struct db *db)
{
	if (db == NULL)
		return;
	if (db->env != NULL) {
		db_flush(db);
		mdb_env_close(db->env);
	}
	free(db->touch);
	free(db->spare);
	pthread_mutex_destroy(&db->touch_mu);
	pthread_mutex_destroy(&db->flush_mu);
	free(db->dir);
	free(db);
}

/* Pending touches ---------------------------------------------------------- */

/* The slot holding d, or the empty slot where it would go; touch_mu. */
static struct db_touch *
db_touch_slot(struct db *db, const struct digest *d)
{
	struct db_touch *e;
	size_t i;

	/* A digest's bytes are already uniformly distributed. */
	i = ((size_t)d->b[0] | (size_t)d->b[1] << 8 | (size_t)d->b[2] << 16) &
	    (DB_TOUCH_SLOTS - 1);
	for (;;) {
		e = &db->touch[i];
		if (!e->used || digest_equal(&e->digest, d))
			return e;
		i = (i + 1) & (DB_TOUCH_SLOTS - 1);
	}
}

/* The pending access time of d, 0 if none. */
static int64_t
db_touch_at(struct db *db, const struct digest *d)
{
	struct db_touch *e;
	int64_t at;

	pthread_mutex_lock(&db->touch_mu);
	e = db_touch_slot(db, d);
	at = e->used ? e->at : 0;
	pthread_mutex_unlock(&db->touch_mu);
	return at;
}

void
db_touch(struct db *db, const struct digest *d, int64_t now)
{
	struct db_touch *e;
	int full = 0;

	pthread_mutex_lock(&db->touch_mu);
	e = db_touch_slot(db, d);
	if (e->used) {
		if (now > e->at)
			e->at = now;
	} else {
		e->used = 1;
		e->digest = *d;
		e->at = now;
		full = ++db->ntouch >= DB_TOUCH_MAX;
	}
	pthread_mutex_unlock(&db->touch_mu);
	if (full)
		db_flush(db);
}

int
db_flush(struct db *db)
{
	unsigned char buf[DB_BLOB_VAL_MAX];
	char ds[DIGEST_STRLEN];
	struct db_touch *e;
	struct db_blob b;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	size_t i;
	int err, rc = -1;

	pthread_mutex_lock(&db->flush_mu);
	pthread_mutex_lock(&db->touch_mu);
	if (db->ntouch == 0) {
		pthread_mutex_unlock(&db->touch_mu);
		pthread_mutex_unlock(&db->flush_mu);
		return 0;
	}
	e = db->touch;
	db->touch = db->spare;
	db->spare = e;
	db->ntouch = 0;
	pthread_mutex_unlock(&db->touch_mu);
	if (db_txn_begin(db, 0, &txn) == -1)
		goto out;
	for (i = 0; i < DB_TOUCH_SLOTS; i++) {
		e = &db->spare[i];
		if (!e->used)
			continue;
		k = db_val(e->digest.b, DIGEST_LEN);
		err = mdb_get(txn, db->blobs, &k, &v);
		if (err == MDB_NOTFOUND)
			continue; /* evicted meanwhile, or never indexed */
		digest_format(&e->digest, ds);
		if (err != 0) {
			db_log(db, "read blob record", ds, err);
			goto out;
		}
		if (db_blob_decode(&v, &b) == -1) {
			log_warn(
			    "corrupt blob record '%s' in '%s'", ds, db->dir);
			continue;
		}
		if (e->at <= b.last_access)
			continue;
		b.last_access = e->at;
		v = db_val(buf, db_blob_encode(&b, buf));
		if ((err = mdb_put(txn, db->blobs, &k, &v, 0)) != 0) {
			db_log(db, "write blob record", ds, err);
			goto out;
		}
	}
	if (db_txn_commit(db, &txn, "flush access times in", db->dir) == -1)
		goto out;
	rc = 0;
out:
	db_txn_abort(&txn);
	/*
	 * Dropped even on failure: access times only guide eviction, and
	 * keeping them would let the table grow past its bound.
	 */
	memset(db->spare, 0, DB_TOUCH_SLOTS * sizeof *db->spare);
	pthread_mutex_unlock(&db->flush_mu);
	return rc;
}

/* Blobs -------------------------------------------------------------------- */

/*
 * One record read and decoded (copied out) in its own read transaction:
 * 0, 1 if absent, -1 (logged) on an error or a record that does not decode.
 */
static int
db_get1(struct db *db, MDB_dbi dbi, MDB_val k,
    int (*decode)(const MDB_val *, void *), void *out, const char *what,
    const char *subject)
{
	MDB_txn *txn = NULL;
	MDB_val v;
	int err, rc = -1;

	if (db_txn_begin(db, MDB_RDONLY, &txn) == -1)
		return -1;
	if ((err = mdb_get(txn, dbi, &k, &v)) == MDB_NOTFOUND) {
		rc = 1;
		goto out;
	}
	if (err != 0) {
		log_error("cannot read %s '%s' in '%s': %s", what, subject,
		    db->dir, mdb_strerror(err));
		goto out;
	}
	if (decode(&v, out) == -1) {
		log_error("corrupt %s '%s' in '%s'", what, subject, db->dir);
		goto out;
	}
	rc = 0;
out:
	db_txn_abort(&txn);
	return rc;
}

static int
db_blob_decode_cb(const MDB_val *v, void *out)
{
	return db_blob_decode(v, out);
}

static int
db_tag_decode_cb(const MDB_val *v, void *out)
{
	return db_tag_decode(v, out);
}

int
db_blob_get(struct db *db, const struct digest *d, struct db_blob *out)
{
	char ds[DIGEST_STRLEN];
	int64_t at;
	int rc;

	digest_format(d, ds);
	rc = db_get1(db, db->blobs, db_val(d->b, DIGEST_LEN), db_blob_decode_cb,
	    out, "blob record", ds);
	if (rc != 0)
		return rc;
	/* A touch not yet flushed is still the latest access. */
	if ((at = db_touch_at(db, d)) > out->last_access)
		out->last_access = at;
	return 0;
}

/* One record written in its own transaction; 0 or -1 (logged). */
static int
db_put1(struct db *db, MDB_dbi dbi, MDB_val k, MDB_val v, const char *what,
    const char *subject)
{
	MDB_txn *txn = NULL;
	int err, rc = -1;

	if (db_txn_begin(db, 0, &txn) == -1)
		return -1;
	if ((err = mdb_put(txn, dbi, &k, &v, 0)) != 0) {
		db_log(db, what, subject, err);
		goto out;
	}
	if (db_txn_commit(db, &txn, what, subject) == -1)
		goto out;
	rc = 0;
out:
	db_txn_abort(&txn);
	return rc;
}

/* One record deleted in its own transaction; 0, 1 if absent, -1. */
static int
db_del1(struct db *db, MDB_dbi dbi, MDB_val k, const char *what,
    const char *subject)
{
	MDB_txn *txn = NULL;
	int err, rc = -1;

	if (db_txn_begin(db, 0, &txn) == -1)
		return -1;
	if ((err = mdb_del(txn, dbi, &k, NULL)) == MDB_NOTFOUND) {
		rc = 1;
		goto out;
	}
	if (err != 0) {
		db_log(db, what, subject, err);
		goto out;
	}
	if (db_txn_commit(db, &txn, what, subject) == -1)
		goto out;
	rc = 0;
out:
	db_txn_abort(&txn);
	return rc;
}

/*
 * pins: how many pin lists name d.  A record written for the first time
 * (a blob fetched again after it was evicted) gets the count its pins
 * derive, so a pinned digest is never stored unpinned.
 */
static int
db_pins_count(
    struct db *db, MDB_txn *txn, const struct digest *d, uint32_t *out)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	const unsigned char *p;
	size_t i, n;
	int err;

	*out = 0;
	if ((err = mdb_cursor_open(txn, db->pins, &cur)) != 0) {
		db_log(db, "walk pins in", db->dir, err);
		return -1;
	}
	while ((err = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (v.mv_size < 5)
			continue;
		p = v.mv_data;
		n = (v.mv_size - 5) / DIGEST_LEN;
		for (i = 0; i < n; i++)
			if (memcmp(p + 5 + i * DIGEST_LEN, d->b, DIGEST_LEN) ==
			    0) {
				(*out)++;
				break;
			}
	}
	mdb_cursor_close(cur);
	if (err != MDB_NOTFOUND) {
		db_log(db, "walk pins in", db->dir, err);
		return -1;
	}
	return 0;
}

int
db_blob_put(struct db *db, const struct digest *d, const struct db_blob *b)
{
	unsigned char buf[DB_BLOB_VAL_MAX];
	char ds[DIGEST_STRLEN];
	struct db_blob old, nb = *b;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int err, had = 0, rc = -1;

	digest_format(d, ds);
	if (db_txn_begin(db, 0, &txn) == -1)
		return -1;
	k = db_val(d->b, DIGEST_LEN);
	err = mdb_get(txn, db->blobs, &k, &v);
	if (err == 0 && db_blob_decode(&v, &old) == 0) {
		had = 1;
	} else if (err != 0 && err != MDB_NOTFOUND) {
		db_log(db, "read blob record", ds, err);
		goto out;
	}
	/* the pin count is derived, never the caller's */
	if (had)
		nb.pins = old.pins;
	else if (db_pins_count(db, txn, d, &nb.pins) == -1)
		goto out;
	v = db_val(buf, db_blob_encode(&nb, buf));
	if ((err = mdb_put(txn, db->blobs, &k, &v, 0)) != 0) {
		db_log(db, "write blob record", ds, err);
		goto out;
	}
	db_totals_change(db, had ? &old : NULL, &nb);
	if (db_txn_commit(db, &txn, "write blob record", ds) == -1)
		goto out;
	rc = 0;
out:
	db_txn_abort(&txn);
	return rc;
}

/*
 * Deletes d's record; with evict, only if it is unpinned and was not used
 * after last_access.  0 deleted (*out set), 1 absent or kept, -1 error.
 */
static int
db_blob_del_if(struct db *db, const struct digest *d, int evict,
    int64_t last_access, struct db_blob *out)
{
	char ds[DIGEST_STRLEN];
	struct db_blob b;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int err, rc = -1;

	digest_format(d, ds);
	if (evict && db_touch_at(db, d) > last_access)
		return 1;
	if (db_txn_begin(db, 0, &txn) == -1)
		return -1;
	k = db_val(d->b, DIGEST_LEN);
	if ((err = mdb_get(txn, db->blobs, &k, &v)) == MDB_NOTFOUND) {
		rc = 1;
		goto out;
	}
	if (err != 0) {
		db_log(db, "read blob record", ds, err);
		goto out;
	}
	if (db_blob_decode(&v, &b) == -1)
		memset(&b, 0, sizeof b); /* corrupt: delete it all the same */
	else if (evict && (b.pins > 0 || b.last_access > last_access)) {
		rc = 1;
		goto out;
	}
	if ((err = mdb_del(txn, db->blobs, &k, NULL)) != 0) {
		db_log(db, "delete blob record", ds, err);
		goto out;
	}
	db_totals_change(db, &b, NULL);
	if (db_txn_commit(db, &txn, "delete blob record", ds) == -1)
		goto out;
	if (out != NULL)
		*out = b;
	rc = 0;
out:
	db_txn_abort(&txn);
	return rc;
}

int
db_blob_del(struct db *db, const struct digest *d)
{
	return db_blob_del_if(db, d, 0, 0, NULL);
}

int
db_blob_evict(struct db *db, const struct digest *d, int64_t last_access,
    struct db_blob *out)
{
	return db_blob_del_if(db, d, 1, last_access, out);
}

uint64_t
db_store_bytes(struct db *db)
{
	return __atomic_load_n(&db->tot.bytes, __ATOMIC_RELAXED);
}

uint64_t
db_store_count(struct db *db)
{
	return __atomic_load_n(&db->tot.blobs, __ATOMIC_RELAXED);
}

uint64_t
db_walks(struct db *db)
{
	return db->walks;
}

/* The totals from every record: once, at open. */
static int
db_totals_walk(struct db *db)
{
	struct db_blob b;
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int err, rc = -1;

	memset(&db->tot, 0, sizeof db->tot);
	db->walks++;
	if (db_txn_begin(db, MDB_RDONLY, &txn) == -1)
		return -1;
	if ((err = mdb_cursor_open(txn, db->blobs, &cur)) != 0) {
		db_log(db, "walk blob records in", db->dir, err);
		goto out;
	}
	while ((err = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (db_blob_decode(&v, &b) == -1) {
			log_error("corrupt blob record in '%s'", db->dir);
			goto out;
		}
		db->tot.blobs++;
		db->tot.bytes += b.size;
		if (b.pins > 0) {
			db->tot.pinned_blobs++;
			db->tot.pinned_bytes += b.size;
		}
	}
	if (err != MDB_NOTFOUND) {
		db_log(db, "walk blob records in", db->dir, err);
		goto out;
	}
	rc = 0;
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	db_txn_abort(&txn);
	return rc;
}

int
db_blob_list(struct db *db, struct db_entry **out, size_t *n)
{
	struct db_entry *list = NULL;
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	size_t len = 0, cap = 0;
	int err, rc = -1;

	*out = NULL;
	*n = 0;
	if (db_txn_begin(db, MDB_RDONLY, &txn) == -1)
		return -1;
	if ((err = mdb_cursor_open(txn, db->blobs, &cur)) != 0) {
		db_log(db, "walk blob records in", db->dir, err);
		goto out;
	}
	while ((err = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (k.mv_size != DIGEST_LEN)
			continue;
		if (len == cap) {
			cap = cap ? 2 * cap : 1024;
			list = xreallocarray(list, cap, sizeof *list);
		}
		memcpy(list[len].digest.b, k.mv_data, DIGEST_LEN);
		if (db_blob_decode(&v, &list[len].b) == -1)
			continue; /* verify reports it */
		len++;
	}
	if (err != MDB_NOTFOUND) {
		db_log(db, "walk blob records in", db->dir, err);
		goto out;
	}
	*out = list;
	*n = len;
	list = NULL;
	rc = 0;
out:
	free(list);
	if (cur != NULL)
		mdb_cursor_close(cur);
	db_txn_abort(&txn);
	return rc;
}

static int
db_digest_cmp(const void *a, const void *b)
{
	return memcmp(a, b, DIGEST_LEN);
}

int
db_tags_drop(struct db *db, const struct digest *d, size_t n)
{
	struct digest *sorted;
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	struct db_tag t;
	int err, rc = -1;

	if (n == 0)
		return 0;
	sorted = xreallocarray(NULL, n, sizeof *sorted);
	memcpy(sorted, d, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, db_digest_cmp);
	if (db_txn_begin(db, 0, &txn) == -1)
		goto out;
	if ((err = mdb_cursor_open(txn, db->tags, &cur)) != 0) {
		db_log(db, "walk tags in", db->dir, err);
		goto out;
	}
	while ((err = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (db_tag_decode(&v, &t) == -1 ||
		    bsearch(&t.digest, sorted, n, sizeof *sorted,
			db_digest_cmp) == NULL)
			continue;
		if ((err = mdb_cursor_del(cur, 0)) != 0) {
			db_log(db, "delete tag in", db->dir, err);
			goto out;
		}
	}
	if (err != MDB_NOTFOUND) {
		db_log(db, "walk tags in", db->dir, err);
		goto out;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	if (db_txn_commit(db, &txn, "delete tags in", db->dir) == -1)
		goto out;
	rc = 0;
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	db_txn_abort(&txn);
	free(sorted);
	return rc;
}

/*
 * One walk over every record gives all the totals (a /metrics scrape reads
 * them once).  If scrapes of a very large store get slow, keep them
 * incrementally in "meta" instead.
 */
int
db_totals(struct db *db, struct db_totals *t)
{
	t->blobs = __atomic_load_n(&db->tot.blobs, __ATOMIC_RELAXED);
	t->bytes = __atomic_load_n(&db->tot.bytes, __ATOMIC_RELAXED);
	t->pinned_blobs =
	    __atomic_load_n(&db->tot.pinned_blobs, __ATOMIC_RELAXED);
	t->pinned_bytes =
	    __atomic_load_n(&db->tot.pinned_bytes, __ATOMIC_RELAXED);
	return 0;
}

/*
 * The digests of every blob record with a pin count above zero, in key
 * order (new array, caller frees; *n may be 0).
 */
int
db_pinned(struct db *db, struct digest **out, size_t *n)
{
	struct db_blob b;
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int err, rc = -1;

	*out = NULL;
	*n = 0;
	if (db_txn_begin(db, MDB_RDONLY, &txn) == -1)
		return -1;
	if ((err = mdb_cursor_open(txn, db->blobs, &cur)) != 0) {
		db_log(db, "walk blob records in", db->dir, err);
		goto out;
	}
	while ((err = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (db_blob_decode(&v, &b) == -1 || k.mv_size != DIGEST_LEN) {
			log_error("corrupt blob record in '%s'", db->dir);
			goto out;
		}
		if (b.pins == 0)
			continue;
		*out = xreallocarray(*out, *n + 1, sizeof **out);
		memset(&(*out)[*n], 0, sizeof **out);
		memcpy((*out)[*n].b, k.mv_data, DIGEST_LEN);
		(*n)++;
	}
	if (err != MDB_NOTFOUND) {
		db_log(db, "walk blob records in", db->dir, err);
		goto out;
	}
	rc = 0;
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	db_txn_abort(&txn);
	if (rc == -1) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

int
db_blob_totals(struct db *db, uint64_t *count, uint64_t *bytes)
{
	struct db_totals t;

	if (db_totals(db, &t) == -1)
		return -1;
	*count = t.blobs;
	*bytes = t.bytes;
	return 0;
}

/* Tags --------------------------------------------------------------------- */

/*
 * Key: upstream \0 repo \0 tag, so that the same repository and tag on two
 * upstreams never collide.  Fills name with "upstream/repo:tag" for logs.
 */
static int
db_tag_key(struct db *db, const char *upstream, const char *repo,
    const char *tag, unsigned char *key, size_t *len, char *name, size_t namesz)
{
	size_t lu = strlen(upstream), lr = strlen(repo), lt = strlen(tag);
	size_t max = (size_t)mdb_env_get_maxkeysize(db->env);

	snprintf(name, namesz, "%s/%s:%s", upstream, repo, tag);
	if (max > DB_KEY_BUF)
		max = DB_KEY_BUF;
	if (lu + lr + lt + 2 > max) {
		log_error("tag key too long for the index: '%s'", name);
		return -1;
	}
	memcpy(key, upstream, lu + 1);
	memcpy(key + lu + 1, repo, lr + 1);
	memcpy(key + lu + lr + 2, tag, lt);
	*len = lu + lr + lt + 2;
	return 0;
}

int
db_tag_get(struct db *db, const char *upstream, const char *repo,
    const char *tag, struct db_tag *out)
{
	unsigned char key[DB_KEY_BUF];
	char name[DB_KEY_BUF + 8];
	size_t klen;

	if (db_tag_key(
		db, upstream, repo, tag, key, &klen, name, sizeof name) == -1)
		return -1;
	return db_get1(db, db->tags, db_val(key, klen), db_tag_decode_cb, out,
	    "tag record", name);
}

int
db_tag_put(struct db *db, const char *upstream, const char *repo,
    const char *tag, const struct db_tag *t)
{
	unsigned char key[DB_KEY_BUF], buf[DB_TAG_VAL_MAX];
	char name[DB_KEY_BUF + 8];
	size_t klen;

	if (db_tag_key(
		db, upstream, repo, tag, key, &klen, name, sizeof name) == -1)
		return -1;
	return db_put1(db, db->tags, db_val(key, klen),
	    db_val(buf, db_tag_encode(t, buf)), "write tag", name);
}

/* Counters ----------------------------------------------------------------- */

static int
db_counter_read(struct db *db, MDB_txn *txn, const char *name, uint64_t *out)
{
	MDB_val k, v;
	struct db_rd r;
	int err;

	k = db_val(name, strlen(name));
	if ((err = mdb_get(txn, db->counters, &k, &v)) == MDB_NOTFOUND) {
		*out = 0;
		return 0;
	}
	if (err != 0) {
		db_log(db, "read counter", name, err);
		return -1;
	}
	db_rd_init(&r, &v);
	*out = db_rd_uint(&r, 8);
	if (db_rd_done(&r) == -1) {
		log_error("corrupt counter '%s' in '%s'", name, db->dir);
		return -1;
	}
	return 0;
}

int
db_counter_add(struct db *db, const char *name, uint64_t delta)
{
	unsigned char buf[DB_COUNTER_VAL_LEN];
	struct db_wr w = {buf, 0};
	MDB_txn *txn = NULL;
	MDB_val k, v;
	uint64_t cur;
	int err, rc = -1;

	if (db_txn_begin(db, 0, &txn) == -1)
		return -1;
	if (db_counter_read(db, txn, name, &cur) == -1)
		goto out;
	db_wr_uint(&w, DB_RECORD_VERSION, 1);
	db_wr_uint(&w, cur + delta, 8);
	k = db_val(name, strlen(name));
	v = db_val(buf, w.len);
	if ((err = mdb_put(txn, db->counters, &k, &v, 0)) != 0) {
		db_log(db, "write counter", name, err);
		goto out;
	}
	if (db_txn_commit(db, &txn, "write counter", name) == -1)
		goto out;
	rc = 0;
out:
	db_txn_abort(&txn);
	return rc;
}

int
db_counter_get(struct db *db, const char *name, uint64_t *out)
{
	MDB_txn *txn = NULL;
	int rc;

	if (db_txn_begin(db, MDB_RDONLY, &txn) == -1)
		return -1;
	rc = db_counter_read(db, txn, name, out);
	db_txn_abort(&txn);
	return rc;
}

/* Pins ----------------------------------------------------------------------
 */

/*
 * pins: "recipe\0version" -> version byte, u32 count, count * 32 digest
 * bytes.  The pin count in each blob record is derived from these lists and
 * changed in the same transaction.
 */
static int
db_pins_adjust(
    struct db *db, MDB_txn *txn, const unsigned char *list, size_t n, int delta)
{
	unsigned char buf[DB_BLOB_VAL_MAX];
	struct db_blob b, old;
	MDB_val k, v;
	size_t i;
	int err;

	for (i = 0; i < n; i++) {
		k = db_val(list + i * DIGEST_LEN, DIGEST_LEN);
		if ((err = mdb_get(txn, db->blobs, &k, &v)) == MDB_NOTFOUND)
			continue; /* not stored (yet): nothing to count */
		if (err != 0 || db_blob_decode(&v, &b) == -1) {
			log_error("cannot update pin count in '%s'", db->dir);
			return -1;
		}
		old = b;
		if (delta < 0 && b.pins > 0)
			b.pins--;
		else if (delta > 0)
			b.pins++;
		v = db_val(buf, db_blob_encode(&b, buf));
		if ((err = mdb_put(txn, db->blobs, &k, &v, 0)) != 0) {
			db_log(db, "update pin count in", db->dir, err);
			return -1;
		}
		db_totals_change(db, &old, &b);
	}
	return 0;
}

static int
db_pins_old(struct db *db, MDB_txn *txn, MDB_val *k, int delta)
{
	MDB_val v;
	const unsigned char *p;
	uint32_t n;
	int err;

	if ((err = mdb_get(txn, db->pins, k, &v)) == MDB_NOTFOUND)
		return 0;
	if (err != 0 || v.mv_size < 5) {
		log_error("corrupt pin record in '%s'", db->dir);
		return -1;
	}
	p = v.mv_data;
	n = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 |
	    (uint32_t)p[4] << 24;
	if (v.mv_size != 5 + (size_t)n * DIGEST_LEN) {
		log_error("corrupt pin record in '%s'", db->dir);
		return -1;
	}
	return db_pins_adjust(db, txn, p + 5, n, delta);
}

int
db_pins_set(struct db *db, const char *recipe, const char *version,
    const struct digest *d, size_t n)
{
	char key[DB_KEY_BUF];
	unsigned char *buf = NULL;
	size_t klen, i;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	int err, rc = -1;

	klen =
	    (size_t)snprintf(key, sizeof key, "%s%c%s", recipe, '\0', version);
	if (klen >= sizeof key || n > UINT32_MAX / DIGEST_LEN) {
		log_error("pin key too long: '%s'", recipe);
		return -1;
	}
	buf = xmalloc(5 + n * DIGEST_LEN);
	buf[0] = DB_RECORD_VERSION;
	buf[1] = n & 0xff;
	buf[2] = (n >> 8) & 0xff;
	buf[3] = (n >> 16) & 0xff;
	buf[4] = (n >> 24) & 0xff;
	for (i = 0; i < n; i++)
		memcpy(buf + 5 + i * DIGEST_LEN, d[i].b, DIGEST_LEN);
	if (db_txn_begin(db, 0, &txn) == -1)
		goto out;
	k = db_val(key, klen);
	if (db_pins_old(db, txn, &k, -1) == -1)
		goto out;
	v = db_val(buf, 5 + n * DIGEST_LEN);
	if ((err = mdb_put(txn, db->pins, &k, &v, 0)) != 0) {
		db_log(db, "write pins of", recipe, err);
		goto out;
	}
	if (db_pins_adjust(db, txn, buf + 5, n, +1) == -1)
		goto out;
	if (db_txn_commit(db, &txn, "write pins of", recipe) == -1)
		goto out;
	rc = 0;
out:
	db_txn_abort(&txn);
	free(buf);
	return rc;
}

int
db_pins_unset(struct db *db, const char *recipe, const char *version)
{
	char key[DB_KEY_BUF];
	size_t klen;
	MDB_txn *txn = NULL;
	MDB_val k;
	int err, rc = -1;

	klen =
	    (size_t)snprintf(key, sizeof key, "%s%c%s", recipe, '\0', version);
	if (klen >= sizeof key) {
		log_error("pin key too long: '%s'", recipe);
		return -1;
	}
	if (db_txn_begin(db, 0, &txn) == -1)
		return -1;
	k = db_val(key, klen);
	if (db_pins_old(db, txn, &k, -1) == -1)
		goto out;
	if ((err = mdb_del(txn, db->pins, &k, NULL)) == MDB_NOTFOUND) {
		rc = 1;
		goto out;
	}
	if (err != 0) {
		db_log(db, "remove pins of", recipe, err);
		goto out;
	}
	if (db_txn_commit(db, &txn, "remove pins of", recipe) == -1)
		goto out;
	rc = 0;
out:
	db_txn_abort(&txn);
	return rc;
}

int
db_pins_del(struct db *db, const char *recipe)
{
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	size_t rlen = strlen(recipe);
	int err, rc = -1, found = 0;

	if (db_txn_begin(db, 0, &txn) == -1)
		return -1;
	if ((err = mdb_cursor_open(txn, db->pins, &cur)) != 0) {
		db_log(db, "walk pins in", db->dir, err);
		goto out;
	}
	k = db_val(recipe, rlen + 1); /* "recipe\0" sorts first */
	err = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (err == 0 && k.mv_size > rlen &&
	    memcmp(k.mv_data, recipe, rlen) == 0 &&
	    ((const char *)k.mv_data)[rlen] == '\0') {
		if (db_pins_old(db, txn, &k, -1) == -1 ||
		    (err = mdb_cursor_del(cur, 0)) != 0)
			goto out;
		found = 1;
		err = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
		if (err == MDB_NOTFOUND || err == EINVAL)
			break;
		if (err == 0 &&
		    !(k.mv_size > rlen && memcmp(k.mv_data, recipe, rlen) == 0))
			break;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	if (db_txn_commit(db, &txn, "remove pins of", recipe) == -1)
		goto out;
	rc = found ? 0 : 1;
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	db_txn_abort(&txn);
	return rc;
}

/*
 * What each blob's pin count should be: one per pin list naming it.  The
 * lists are read into a sorted array of (digest, count) first.
 */
struct db_pincount {
	struct digest d;
	uint32_t n;
};

static int
db_pincount_cmp(const void *a, const void *b)
{
	return memcmp(a, b, DIGEST_LEN);
}

int
db_pins_check(struct db *db, int repair,
    void (*fn)(void *, const struct digest *, uint32_t, uint32_t), void *arg)
{
	unsigned char buf[DB_BLOB_VAL_MAX];
	struct db_pincount *pc = NULL, key, *hit;
	struct db_blob b, old;
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	const unsigned char *p;
	size_t npc = 0, i, j, m;
	uint32_t want;
	int err, diffs = 0, rc = -1;

	if (db_txn_begin(db, repair ? 0 : MDB_RDONLY, &txn) == -1)
		return -1;
	if ((err = mdb_cursor_open(txn, db->pins, &cur)) != 0) {
		db_log(db, "walk pins in", db->dir, err);
		goto out;
	}
	while ((err = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (v.mv_size < 5)
			continue;
		p = v.mv_data;
		m = (v.mv_size - 5) / DIGEST_LEN;
		pc = xreallocarray(pc, npc + m, sizeof *pc);
		for (i = 0; i < m; i++) {
			memcpy(pc[npc + i].d.b, p + 5 + i * DIGEST_LEN,
			    DIGEST_LEN);
			pc[npc + i].n = 1;
		}
		npc += m;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	if (npc > 0) {
		/* one entry per digest, counting the lists that name it */
		qsort(pc, npc, sizeof *pc, db_pincount_cmp);
		for (i = 0, j = 0; i < npc; i++) {
			if (j > 0 && digest_equal(&pc[j - 1].d, &pc[i].d))
				pc[j - 1].n++;
			else
				pc[j++] = pc[i];
		}
		npc = j;
	}
	if ((err = mdb_cursor_open(txn, db->blobs, &cur)) != 0) {
		db_log(db, "walk blob records in", db->dir, err);
		goto out;
	}
	while ((err = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (k.mv_size != DIGEST_LEN || db_blob_decode(&v, &b) == -1)
			continue;
		memcpy(key.d.b, k.mv_data, DIGEST_LEN);
		hit = npc > 0
		    ? bsearch(&key, pc, npc, sizeof *pc, db_pincount_cmp)
		    : NULL;
		want = hit != NULL ? hit->n : 0;
		if (b.pins == want)
			continue;
		diffs++;
		if (fn != NULL)
			fn(arg, &key.d, b.pins, want);
		if (!repair)
			continue;
		old = b;
		b.pins = want;
		v = db_val(buf, db_blob_encode(&b, buf));
		if ((err = mdb_cursor_put(cur, &k, &v, MDB_CURRENT)) != 0) {
			db_log(db, "update pin count in", db->dir, err);
			goto out;
		}
		db_totals_change(db, &old, &b);
	}
	if (err != MDB_NOTFOUND) {
		db_log(db, "walk blob records in", db->dir, err);
		goto out;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	if (repair &&
	    db_txn_commit(db, &txn, "update pin counts in", db->dir) == -1)
		goto out;
	rc = diffs;
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	db_txn_abort(&txn);
	free(pc);
	return rc;
}

/* Job records: opaque bytes the caller encodes (fixed layout, versioned). */

int
db_job_put(struct db *db, const char *id, const void *val, size_t len)
{
	return db_put1(db, db->jobs, db_val(id, strlen(id)), db_val(val, len),
	    "write job", id);
}

int
db_job_del(struct db *db, const char *id)
{
	/* an absent job is already deleted */
	if (db_del1(db, db->jobs, db_val(id, strlen(id)), "delete job", id) ==
	    -1)
		return -1;
	return 0;
}

/* Copies out every record of dbi, then calls fn for each, outside any
 * transaction (fn may write). */
static int
db_walk(struct db *db, MDB_dbi dbi, const char *what,
    void (*fn)(void *, const char *, const void *, size_t), void *arg)
{
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	struct db_job_rec {
		char *id;
		void *val;
		size_t len;
	} *recs = NULL;
	size_t n = 0, i;
	int err, rc = -1;

	/* Copy out first: fn may write, and no transaction spans a callback. */
	if (db_txn_begin(db, MDB_RDONLY, &txn) == -1)
		return -1;
	if ((err = mdb_cursor_open(txn, dbi, &cur)) != 0) {
		db_log(db, what, db->dir, err);
		goto out;
	}
	while ((err = mdb_cursor_get(
		    cur, &k, &v, n == 0 ? MDB_FIRST : MDB_NEXT)) == 0) {
		recs = xreallocarray(recs, n + 1, sizeof *recs);
		recs[n].id = xstrndup(k.mv_data, k.mv_size);
		recs[n].val = xmalloc(v.mv_size);
		memcpy(recs[n].val, v.mv_data, v.mv_size);
		recs[n].len = v.mv_size;
		n++;
	}
	mdb_cursor_close(cur);
	db_txn_abort(&txn);
	for (i = 0; i < n; i++)
		fn(arg, recs[i].id, recs[i].val, recs[i].len);
	rc = 0;
out:
	db_txn_abort(&txn);
	for (i = 0; i < n; i++) {
		free(recs[i].id);
		free(recs[i].val);
	}
	free(recs);
	return rc;
}

int
db_job_list(struct db *db,
    void (*fn)(void *, const char *, const void *, size_t), void *arg)
{
	return db_walk(db, db->jobs, "walk jobs in", fn, arg);
}

/* Run records: opaque bytes the caller encodes (versioned), by run name. */

int
db_run_put(struct db *db, const char *name, const void *val, size_t len)
{
	return db_put1(db, db->runs, db_val(name, strlen(name)),
	    db_val(val, len), "write run", name);
}

/* A value copied out of its transaction (db_get1's decoder). */
struct db_bytes {
	void *p;
	size_t len;
};

static int
db_bytes_decode_cb(const MDB_val *v, void *out)
{
	struct db_bytes *b = out;

	b->p = xmalloc(v->mv_size > 0 ? v->mv_size : 1);
	memcpy(b->p, v->mv_data, v->mv_size);
	b->len = v->mv_size;
	return 0;
}

int
db_run_get(struct db *db, const char *name, void **val, size_t *len)
{
	struct db_bytes b = {NULL, 0};
	int rc;

	rc = db_get1(db, db->runs, db_val(name, strlen(name)),
	    db_bytes_decode_cb, &b, "run", name);
	*val = b.p;
	*len = b.len;
	return rc;
}

int
db_run_del(struct db *db, const char *name)
{
	return db_del1(
	    db, db->runs, db_val(name, strlen(name)), "delete run", name);
}

int
db_run_list(struct db *db,
    void (*fn)(void *, const char *, const void *, size_t), void *arg)
{
	return db_walk(db, db->runs, "walk runs in", fn, arg);
}

/* The baseline run's name, in "meta" (run names never clash with it). */
#define DB_RUNS_BASELINE "runs.baseline"

int
db_run_baseline_set(struct db *db, const char *name)
{
	return db_put1(db, db->meta,
	    db_val(DB_RUNS_BASELINE, strlen(DB_RUNS_BASELINE)),
	    db_val(name, strlen(name)), "write baseline", name);
}

int
db_run_baseline_get(struct db *db, char *buf, size_t len)
{
	struct db_bytes b = {NULL, 0};
	int rc;

	buf[0] = '\0';
	rc = db_get1(db, db->meta,
	    db_val(DB_RUNS_BASELINE, strlen(DB_RUNS_BASELINE)),
	    db_bytes_decode_cb, &b, "baseline", DB_RUNS_BASELINE);
	if (rc == 0) {
		if (b.len >= len)
			b.len = len - 1;
		memcpy(buf, b.p, b.len);
		buf[b.len] = '\0';
	}
	free(b.p);
	return rc;
}
