/*
 * tests/unit/test_dbtotals.c: storage/db.c's store totals (blobs, bytes,
 * pinned blobs, pinned bytes) behind /metrics: they match a walk of the
 * records after puts, replaces, pins, unpins, evictions, deletions, a pin
 * repair and a reopen, and reading them walks nothing (the index walks its
 * blob records once, at open).
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

static struct digest
test_digest(unsigned char n)
{
	struct digest d;

	memset(&d, 0, sizeof d);
	d.b[0] = n;
	d.b[DIGEST_LEN - 1] = 0x5a;
	return d;
}

/* The totals from a walk of every record: what /metrics must show. */
static int
test_truth(struct db *db, struct db_totals *t)
{
	struct db_entry *all;
	size_t i, n;

	memset(t, 0, sizeof *t);
	if (db_blob_list(db, &all, &n) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		t->blobs++;
		t->bytes += all[i].b.size;
		if (all[i].b.pins > 0) {
			t->pinned_blobs++;
			t->pinned_bytes += all[i].b.size;
		}
	}
	free(all);
	return 0;
}

static int
test_same(struct db *db)
{
	struct db_totals got, want;
	uint64_t count, bytes;

	if (db_totals(db, &got) == -1 || test_truth(db, &want) == -1 ||
	    db_blob_totals(db, &count, &bytes) == -1)
		return 0;
	if (got.blobs != want.blobs || got.bytes != want.bytes ||
	    got.pinned_blobs != want.pinned_blobs ||
	    got.pinned_bytes != want.pinned_bytes || count != want.blobs ||
	    bytes != want.bytes) {
		fprintf(stderr,
		    "totals %llu/%llu pinned %llu/%llu, walk %llu/%llu pinned "
		    "%llu/%llu\n",
		    (unsigned long long)got.blobs,
		    (unsigned long long)got.bytes,
		    (unsigned long long)got.pinned_blobs,
		    (unsigned long long)got.pinned_bytes,
		    (unsigned long long)want.blobs,
		    (unsigned long long)want.bytes,
		    (unsigned long long)want.pinned_blobs,
		    (unsigned long long)want.pinned_bytes);
		return 0;
	}
	return 1;
}

static void
test_put(struct db *db, unsigned char n, uint64_t size)
{
	struct db_blob b;
	struct digest d = test_digest(n);

	memset(&b, 0, sizeof b);
	b.size = size;
	b.stored_at = 1700000000;
	b.last_access = 1700000000;
	xstrlcpy(b.upstream, "docker.io", sizeof b.upstream);
	if (db_blob_put(db, &d, &b) == -1)
		unit_failed = 1;
}

static void
test_totals(void)
{
	char *index, *dir = xstrdup("/tmp/ccprewarm-test-XXXXXX");
	struct digest pin[3], d;
	struct db_totals t;
	struct db_blob out;
	struct db *db;
	int i;

	CHECK(mkdtemp(dir) != NULL);
	xasprintf(&index, "%s/index", dir);
	db = db_open(index);
	CHECK(db != NULL);
	CHECK(test_same(db));

	/* pulls */
	for (i = 1; i <= 6; i++)
		test_put(db, (unsigned char)i, 1000u * (unsigned)i);
	CHECK(test_same(db));
	/* a pin list naming a stored blob twice over two versions, and one
	 * not stored yet */
	pin[0] = test_digest(1);
	pin[1] = test_digest(2);
	pin[2] = test_digest(9);
	CHECK(db_pins_set(db, "r", "1", pin, 3) == 0);
	CHECK(db_pins_set(db, "r", "2", pin, 1) == 0);
	CHECK(test_same(db));
	CHECK(db_totals(db, &t) == 0);
	CHECK(t.pinned_blobs == 2 && t.pinned_bytes == 3000);
	/* the pinned-but-absent blob arrives: it counts as pinned */
	test_put(db, 9, 9000);
	CHECK(test_same(db));
	/* a replace with another size, pinned and not */
	test_put(db, 1, 1500);
	test_put(db, 3, 3500);
	CHECK(test_same(db));
	/* unpin one version, then the other */
	CHECK(db_pins_unset(db, "r", "1") == 0);
	CHECK(test_same(db));
	CHECK(db_pins_del(db, "r") == 0);
	CHECK(test_same(db));
	CHECK(db_totals(db, &t) == 0);
	CHECK(t.pinned_blobs == 0 && t.pinned_bytes == 0);
	/* eviction (kept when pinned) and deletion */
	CHECK(db_pins_set(db, "r", "3", pin, 1) == 0);
	d = test_digest(1);
	CHECK(db_blob_evict(db, &d, 1700000001, &out) == 1);
	d = test_digest(4);
	CHECK(db_blob_evict(db, &d, 1700000001, &out) == 0);
	d = test_digest(5);
	CHECK(db_blob_del(db, &d) == 0);
	CHECK(db_blob_del(db, &d) == 1);
	CHECK(test_same(db));
	/* a repair of pin counts that are already right changes nothing */
	CHECK(db_pins_check(db, 1, NULL, NULL) == 0);
	CHECK(test_same(db));

	/* reading the totals walks nothing, however often */
	CHECK(db_walks(db) == 1);
	for (i = 0; i < 1000; i++)
		CHECK(db_totals(db, &t) == 0);
	CHECK(db_walks(db) == 1);

	/* restart */
	db_free(db);
	db = db_open(index);
	CHECK(db != NULL);
	CHECK(test_same(db));
	CHECK(db_totals(db, &t) == 0);
	CHECK(t.pinned_blobs == 1 && t.pinned_bytes == 1500);
	CHECK(t.blobs == 5);
	db_free(db);
	test_rmrf(dir);
	free(index);
	free(dir);
}

static const struct unit_test tests[] = {
    {"maintained", test_totals},
};

UNIT_MAIN("dbtotals", tests)
