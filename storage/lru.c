/*
 * storage/lru.c: the eviction policy as plain data.  Given what the store
 * holds and what it may hold, how many bytes to give back; given the
 * candidates, which ones and in which order.  No I/O: the daemon
 * (registry/evict.c) and the offline `gc` both run it, and its unit test
 * pins the order down.  lru_collect is the one walk that gathers the
 * candidates.
 */
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "storage.h"

#define LRU_LOW_DEFAULT 90

int
lru_budget_on(const struct lru_budget *b)
{
	return b->max_bytes > 0 || b->min_free_bytes > 0 ||
	    b->min_free_percent > 0;
}

uint64_t
lru_floor(const struct lru_budget *b, uint64_t fs_total)
{
	uint64_t pct = fs_total / 100 * b->min_free_percent;

	return pct > b->min_free_bytes ? pct : b->min_free_bytes;
}

static unsigned
lru_low(const struct lru_budget *b)
{
	if (b->low_water_percent == 0 || b->low_water_percent > 100)
		return LRU_LOW_DEFAULT;
	return b->low_water_percent;
}

uint64_t
lru_need(const struct lru_budget *b, const struct lru_usage *u,
    uint64_t incoming, int force)
{
	uint64_t floor, used = u->used + incoming, need = 0, low, target;
	uint64_t avail = u->fs_avail > incoming ? u->fs_avail - incoming : 0;
	int crossed = force;

	if (b->max_bytes > 0 && used > b->max_bytes)
		crossed = 1;
	floor = lru_floor(b, u->fs_total);
	if (floor > 0 && avail < floor)
		crossed = 1;
	if (!crossed)
		return 0;
	if (b->max_bytes > 0) {
		low = b->max_bytes / 100 * lru_low(b);
		if (used > low)
			need = used - low;
	}
	if (floor > 0) {
		target = floor + floor / 100 * (100 - lru_low(b));
		if (avail < target && target - avail > need)
			need = target - avail;
	}
	return need;
}

static int
lru_cmp(const void *pa, const void *pb)
{
	const struct lru_item *a = pa, *b = pb;
	int ap = a->kind == LRU_PARTIAL, bp = b->kind == LRU_PARTIAL;

	if (ap != bp)
		return ap ? -1 : 1;
	if ((a->pins > 0) != (b->pins > 0))
		return a->pins > 0 ? 1 : -1;
	if (a->last_access != b->last_access)
		return a->last_access < b->last_access ? -1 : 1;
	if (a->stored_at != b->stored_at)
		return a->stored_at < b->stored_at ? -1 : 1;
	return memcmp(a->digest.b, b->digest.b, DIGEST_LEN);
}

void
lru_sort(struct lru_item *items, size_t n)
{
	if (n > 1)
		qsort(items, n, sizeof *items, lru_cmp);
}

uint64_t
lru_plan(struct lru_item *items, size_t n, uint64_t need, int all_partials)
{
	uint64_t freed = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		struct lru_item *it = &items[i];

		it->chosen = 0;
		if (it->busy || it->pins > 0)
			continue;
		if (freed >= need && !(all_partials && it->kind == LRU_PARTIAL))
			continue;
		it->chosen = 1;
		freed += it->size;
	}
	return freed;
}

int
lru_collect(struct blobstore *bs, struct db *db, struct lru_item **items,
    size_t *n, uint64_t *pinned_bytes)
{
	struct blobstore_partial *p = NULL;
	struct db_entry *ents = NULL;
	struct lru_item *it;
	size_t np = 0, ne = 0, i, k = 0;

	*items = NULL;
	*n = 0;
	*pinned_bytes = 0;
	if (blobstore_partials(bs, &p, &np) == -1)
		return -1;
	if (db_blob_list(db, &ents, &ne) == -1) {
		free(p);
		return -1;
	}
	it = xcalloc(np + ne + 1, sizeof *it);
	for (i = 0; i < np; i++, k++) {
		it[k].kind = LRU_PARTIAL;
		it[k].digest = p[i].digest;
		it[k].size = p[i].size;
		it[k].last_access = p[i].mtime;
	}
	for (i = 0; i < ne; i++, k++) {
		it[k].kind =
		    ents[i].b.media_type[0] != '\0' ? LRU_MANIFEST : LRU_BLOB;
		it[k].digest = ents[i].digest;
		it[k].size = ents[i].b.size;
		it[k].last_access = ents[i].b.last_access;
		it[k].stored_at = ents[i].b.stored_at;
		it[k].pins = ents[i].b.pins;
		if (it[k].pins > 0)
			*pinned_bytes += it[k].size;
	}
	lru_sort(it, k);
	*items = it;
	*n = k;
	free(p);
	free(ents);
	return 0;
}
