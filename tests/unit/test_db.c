/*
 * tests/unit/test_db.c: storage/db.c: blob and tag records round trip, tags
 * are keyed by upstream, touches reach last_access only through a flush,
 * counters add up, and everything survives close and reopen.
 */
#include <sys/stat.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../storage/storage.h"
#include "unit.h"

static int
test_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
test_rmrf(const char *dir)
{
	nftw(dir, test_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh data directory; the index goes in <it>/index, as in the daemon. */
static char *
test_mkdtemp(char **index)
{
	char *dir = xstrdup("/tmp/ccprewarm-test-XXXXXX");

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	xasprintf(index, "%s/index", dir);
	return dir;
}

static void
test_blob_fill(struct db_blob *b, uint64_t size, const char *mt)
{
	memset(b, 0, sizeof *b);
	b->size = size;
	b->stored_at = 1700000000;
	b->last_access = 1700000001;
	b->pins = 3;
	xstrlcpy(b->media_type, mt, sizeof b->media_type);
	xstrlcpy(b->upstream, "docker.io", sizeof b->upstream);
}

static void
test_blob(void)
{
	char *index, *dir = test_mkdtemp(&index);
	struct db_blob in, out;
	struct digest d, other;
	uint64_t count, bytes;
	struct db *db;

	digest_buf("layer", 5, &d);
	digest_buf("other", 5, &other);
	db = db_open(index);
	CHECK(db != NULL);
	CHECK(db_blob_get(db, &d, &out) == 1);
	CHECK(db_blob_totals(db, &count, &bytes) == 0);
	CHECK(count == 0 && bytes == 0);

	test_blob_fill(
	    &in, 1ull << 33, "application/vnd.oci.image.layer.v1.tar+gzip");
	in.stored_at = -5; /* signed values survive */
	CHECK(db_blob_put(db, &d, &in) == 0);
	memset(&out, 0xaa, sizeof out);
	CHECK(db_blob_get(db, &d, &out) == 0);
	CHECK(out.size == 1ull << 33);
	CHECK(out.stored_at == -5);
	CHECK(out.last_access == 1700000001);
	CHECK(out.pins == 0); /* derived from the pins table, not the caller */
	CHECK_STR(
	    out.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
	CHECK_STR(out.upstream, "docker.io");
	CHECK(db_blob_get(db, &other, &out) == 1);

	/* empty media type (a plain blob), and a replace */
	test_blob_fill(&in, 10, "");
	CHECK(db_blob_put(db, &other, &in) == 0);
	CHECK(db_blob_get(db, &other, &out) == 0);
	CHECK_STR(out.media_type, "");
	CHECK(db_blob_totals(db, &count, &bytes) == 0);
	CHECK(count == 2 && bytes == (1ull << 33) + 10);
	in.size = 11;
	CHECK(db_blob_put(db, &other, &in) == 0);
	CHECK(db_blob_totals(db, &count, &bytes) == 0);
	CHECK(count == 2 && bytes == (1ull << 33) + 11);

	CHECK(db_blob_del(db, &other) == 0);
	CHECK(db_blob_del(db, &other) == 1);
	CHECK(db_blob_get(db, &other, &out) == 1);
	CHECK(db_blob_totals(db, &count, &bytes) == 0);
	CHECK(count == 1 && bytes == 1ull << 33);

	db_free(db);
	db_free(NULL);
	test_rmrf(dir);
	free(index);
	free(dir);
}

static void
test_tag(void)
{
	char *index, *dir = test_mkdtemp(&index);
	struct db_tag a, b, out;
	char longrepo[600];
	struct db *db;

	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	digest_buf("manifest a", 10, &a.digest);
	a.confirmed_at = 1700000100;
	xstrlcpy(a.media_type, "application/vnd.oci.image.index.v1+json",
	    sizeof a.media_type);
	digest_buf("manifest b", 10, &b.digest);
	b.confirmed_at = 1700000200;
	xstrlcpy(b.media_type,
	    "application/vnd.docker.distribution.manifest.v2+json",
	    sizeof b.media_type);

	db = db_open(index);
	CHECK(db != NULL);
	CHECK(db_tag_get(db, "docker.io", "library/alpine", "3.20", &out) == 1);
	CHECK(db_tag_put(db, "docker.io", "library/alpine", "3.20", &a) == 0);
	CHECK(db_tag_put(db, "ghcr.io", "library/alpine", "3.20", &b) == 0);
	CHECK(db_tag_get(db, "docker.io", "library/alpine", "3.20", &out) == 0);
	CHECK(digest_equal(&out.digest, &a.digest));
	CHECK(out.confirmed_at == 1700000100);
	CHECK_STR(out.media_type, a.media_type);
	CHECK(db_tag_get(db, "ghcr.io", "library/alpine", "3.20", &out) == 0);
	CHECK(digest_equal(&out.digest, &b.digest));
	CHECK_STR(out.media_type, b.media_type);

	/* the separators keep ("a", "b/c") and ("a/b", "c") apart */
	CHECK(db_tag_get(db, "docker.io", "library", "alpine", &out) == 1);
	CHECK(db_tag_put(db, "x", "a", "bc", &a) == 0);
	CHECK(db_tag_get(db, "x", "ab", "c", &out) == 1);
	CHECK(db_tag_get(db, "xa", "b", "c", &out) == 1);
	CHECK(db_tag_get(db, "docker.io", "library/alpine", "3.2", &out) == 1);

	/* replace */
	CHECK(db_tag_put(db, "docker.io", "library/alpine", "3.20", &b) == 0);
	CHECK(db_tag_get(db, "docker.io", "library/alpine", "3.20", &out) == 0);
	CHECK(digest_equal(&out.digest, &b.digest));

	/* a key LMDB cannot hold is refused, not truncated */
	memset(longrepo, 'r', sizeof longrepo - 1);
	longrepo[sizeof longrepo - 1] = '\0';
	CHECK(db_tag_put(db, "docker.io", longrepo, "t", &a) == -1);
	CHECK(db_tag_get(db, "docker.io", longrepo, "t", &out) == -1);

	db_free(db);
	test_rmrf(dir);
	free(index);
	free(dir);
}

static void
test_touch(void)
{
	char *index, *dir = test_mkdtemp(&index);
	struct digest d, absent, many;
	struct db_blob in, out;
	struct db *db;
	int i;

	digest_buf("touched", 7, &d);
	digest_buf("absent", 6, &absent);
	test_blob_fill(&in, 42, "");
	db = db_open(index);
	CHECK(db != NULL);
	CHECK(db_blob_put(db, &d, &in) == 0);

	db_touch(db, &d, 1800000000);
	db_touch(db, &d, 1790000000); /* an older touch does not win */
	db_touch(db, &absent, 1800000000);
	CHECK(db_flush(db) == 0);
	CHECK(db_flush(db) == 0); /* nothing pending */
	CHECK(db_blob_get(db, &d, &out) == 0);
	CHECK(out.last_access == 1800000000);
	CHECK(out.size == 42 && out.pins == 0);
	/* touching an unknown digest does not create a record */
	CHECK(db_blob_get(db, &absent, &out) == 1);

	/* a pending touch shows in get and reaches disk at db_free */
	db_touch(db, &d, 1800000500);
	CHECK(db_blob_get(db, &d, &out) == 0);
	CHECK(out.last_access == 1800000500);

	/* more than the table holds: flushed on the way, nothing lost */
	for (i = 0; i < 10000; i++) {
		digest_buf(&i, sizeof i, &many);
		db_touch(db, &many, 1800000000 + i);
	}
	db_touch(db, &d, 1800000600);
	db_free(db);

	db = db_open(index);
	CHECK(db != NULL);
	CHECK(db_blob_get(db, &d, &out) == 0);
	CHECK(out.last_access == 1800000600);
	db_free(db);
	test_rmrf(dir);
	free(index);
	free(dir);
}

static void
test_counters(void)
{
	char *index, *dir = test_mkdtemp(&index);
	struct db *db;
	uint64_t v;

	db = db_open(index);
	CHECK(db != NULL);
	v = 99;
	CHECK(db_counter_get(db, "hits", &v) == 0);
	CHECK(v == 0);
	CHECK(db_counter_add(db, "hits", 1) == 0);
	CHECK(db_counter_add(db, "hits", 41) == 0);
	CHECK(db_counter_add(db, "bytes_saved", 1ull << 40) == 0);
	CHECK(db_counter_get(db, "hits", &v) == 0);
	CHECK(v == 42);
	CHECK(db_counter_get(db, "bytes_saved", &v) == 0);
	CHECK(v == 1ull << 40);
	CHECK(db_counter_get(db, "hit", &v) == 0);
	CHECK(v == 0);
	db_free(db);
	test_rmrf(dir);
	free(index);
	free(dir);
}

static void
test_reopen(void)
{
	char *index, *dir = test_mkdtemp(&index);
	struct db_blob in, out;
	struct db_tag t, tout;
	struct digest d;
	uint64_t v, count, bytes;
	struct db *db;

	digest_buf("kept", 4, &d);
	test_blob_fill(&in, 1234, "application/vnd.oci.image.manifest.v1+json");
	memset(&t, 0, sizeof t);
	t.digest = d;
	t.confirmed_at = 1700000300;
	xstrlcpy(t.media_type, in.media_type, sizeof t.media_type);

	db = db_open(index);
	CHECK(db != NULL);
	CHECK(db_blob_put(db, &d, &in) == 0);
	CHECK(db_tag_put(db, "quay.io", "org/app", "v1", &t) == 0);
	CHECK(db_counter_add(db, "misses", 7) == 0);
	db_free(db);

	db = db_open(index);
	CHECK(db != NULL);
	CHECK(db_blob_get(db, &d, &out) == 0);
	CHECK(out.size == 1234);
	CHECK_STR(out.media_type, in.media_type);
	CHECK(db_tag_get(db, "quay.io", "org/app", "v1", &tout) == 0);
	CHECK(digest_equal(&tout.digest, &d));
	CHECK(tout.confirmed_at == 1700000300);
	CHECK(db_counter_get(db, "misses", &v) == 0);
	CHECK(v == 7);
	CHECK(db_blob_totals(db, &count, &bytes) == 0);
	CHECK(count == 1 && bytes == 1234);
	db_free(db);

	/* a missing parent is an error with a reason, not a crash */
	CHECK(db_open("/nonexistent/ccprewarm/index") == NULL);

	test_rmrf(dir);
	free(index);
	free(dir);
}

/* Two versions of a recipe share a blob: its pin count is 2; unpinning
 * one version leaves 1; the recipe's removal leaves 0; blobs stay. */
static void
test_pins_versions(void)
{
	char *index, *dir = test_mkdtemp(&index);
	struct digest d[3];
	struct db_blob b, out;
	struct db *db;
	size_t i;

	for (i = 0; i < 3; i++)
		digest_buf(&"abc"[i], 1, &d[i]);
	db = db_open(index);
	CHECK(db != NULL);
	test_blob_fill(&b, 10, "");
	b.pins = 0;
	for (i = 0; i < 3; i++)
		CHECK(db_blob_put(db, &d[i], &b) == 0);
	CHECK(db_pins_set(db, "r", "0.1.0+1", &d[0], 2) == 0); /* a, b */
	CHECK(db_pins_set(db, "r", "0.2.0+1", &d[1], 2) == 0); /* b, c */
	CHECK(db_blob_get(db, &d[1], &out) == 0 && out.pins == 2);
	CHECK(db_blob_get(db, &d[0], &out) == 0 && out.pins == 1);
	/* setting the same version again does not count twice */
	CHECK(db_pins_set(db, "r", "0.2.0+1", &d[1], 2) == 0);
	CHECK(db_blob_get(db, &d[1], &out) == 0 && out.pins == 2);
	CHECK(db_pins_unset(db, "r", "0.1.0+1") == 0);
	CHECK(db_blob_get(db, &d[0], &out) == 0 && out.pins == 0);
	CHECK(db_blob_get(db, &d[1], &out) == 0 && out.pins == 1);
	CHECK(db_pins_unset(db, "r", "0.1.0+1") == 1);
	CHECK(db_blob_get(db, &d[1], &out) == 0 && out.pins == 1);
	CHECK(db_pins_unset(db, "rr", "0.2.0+1") == 1);
	CHECK(db_pins_del(db, "r") == 0);
	for (i = 0; i < 3; i++)
		CHECK(db_blob_get(db, &d[i], &out) == 0 && out.pins == 0);
	db_free(db);
	test_rmrf(dir);
	free(index);
	free(dir);
}

/*
 * The store lifecycle's calls: the running total, pin counts derived from
 * the pins table (also for a record written after its pins), eviction only
 * of unpinned records not used since, tags of evicted manifests, and the
 * pin count check and repair.
 */
static void
test_lifecycle(void)
{
	char *index, *dir = test_mkdtemp(&index);
	struct digest a, b, m, late;
	struct db_blob in, out;
	struct db_entry *ents = NULL;
	struct db_tag t;
	size_t n = 0;
	struct db *db;

	digest_buf("a", 1, &a);
	digest_buf("b", 1, &b);
	digest_buf("m", 1, &m);
	digest_buf("late", 4, &late);
	db = db_open(index);
	CHECK(db != NULL);
	test_blob_fill(&in, 100, "");
	CHECK(db_blob_put(db, &a, &in) == 0);
	CHECK(db_blob_put(db, &b, &in) == 0);
	test_blob_fill(&in, 10, "application/vnd.oci.image.manifest.v1+json");
	CHECK(db_blob_put(db, &m, &in) == 0);
	CHECK(db_store_bytes(db) == 210 && db_store_count(db) == 3);

	/* pinned: a and late (not stored yet) */
	{
		struct digest p[2] = {a, late};

		CHECK(db_pins_set(db, "r", "1", p, 2) == 0);
	}
	CHECK(db_blob_get(db, &a, &out) == 0 && out.pins == 1);
	test_blob_fill(&in, 5, "");
	CHECK(db_blob_put(db, &late, &in) == 0);
	CHECK(db_blob_get(db, &late, &out) == 0 && out.pins == 1);
	CHECK(db_store_bytes(db) == 215);

	/* eviction: never pinned, never used after the walk saw it */
	CHECK(db_blob_evict(db, &a, 1700000001, &out) == 1);
	CHECK(db_blob_evict(db, &b, 1700000000, &out) == 1); /* used since */
	db_touch(db, &b, 1800000000);
	CHECK(db_blob_evict(db, &b, 1700000001, &out) == 1); /* pending touch */
	CHECK(db_flush(db) == 0);
	CHECK(db_blob_evict(db, &b, 1800000000, &out) == 0 && out.size == 100);
	CHECK(db_blob_evict(db, &b, 1800000000, &out) == 1); /* gone */
	CHECK(db_store_bytes(db) == 115 && db_store_count(db) == 3);

	/* a tag pointing at an evicted manifest goes with it */
	memset(&t, 0, sizeof t);
	t.digest = m;
	CHECK(db_tag_put(db, "docker.io", "x/y", "v1", &t) == 0);
	t.digest = a;
	CHECK(db_tag_put(db, "docker.io", "x/y", "v2", &t) == 0);
	CHECK(db_blob_evict(db, &m, 1800000000, &out) == 0);
	CHECK(db_tags_drop(db, &m, 1) == 0);
	CHECK(db_tag_get(db, "docker.io", "x/y", "v1", &t) == 1);
	CHECK(db_tag_get(db, "docker.io", "x/y", "v2", &t) == 0);

	CHECK(db_blob_list(db, &ents, &n) == 0);
	CHECK(n == 2);
	free(ents);

	/* pin counts agree with the pins table, before and after unpinning */
	CHECK(db_pins_check(db, 0, NULL, NULL) == 0);
	CHECK(db_pins_del(db, "r") == 0);
	CHECK(db_blob_get(db, &a, &out) == 0 && out.pins == 0);
	CHECK(db_pins_check(db, 0, NULL, NULL) == 0);
	db_free(db);
	db = db_open(index); /* the running total is rebuilt at open */
	CHECK(db != NULL);
	CHECK(db_store_bytes(db) == 105 && db_store_count(db) == 2);
	db_free(db);
	test_rmrf(dir);
	free(index);
	free(dir);
}

static const struct unit_test tests[] = {
    {"lifecycle", test_lifecycle},
    {"blob", test_blob},
    {"tag", test_tag},
    {"touch", test_touch},
    {"counters", test_counters},
    {"reopen", test_reopen},
    {"pins-versions", test_pins_versions},
};

UNIT_MAIN("db", tests)
