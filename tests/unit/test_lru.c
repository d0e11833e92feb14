/*
 * tests/unit/test_lru.c: the eviction policy (storage/lru.c): the order
 * (partials oldest first, then least recently used, pinned never), the
 * plan's stopping point, and the water marks.
 */
#include <string.h>

#include "../../storage/storage.h"
#include "unit.h"

static struct lru_item
item(enum lru_kind kind, int id, uint64_t size, int64_t la, int64_t st,
    uint32_t pins)
{
	struct lru_item it;

	memset(&it, 0, sizeof it);
	it.kind = kind;
	it.digest.b[0] = (unsigned char)id;
	it.size = size;
	it.last_access = la;
	it.stored_at = st;
	it.pins = pins;
	return it;
}

static void
test_order(void)
{
	struct lru_item it[7];
	static const int want[] = {5, 6, 3, 4, 1, 2, 7};
	size_t i;

	it[0] = item(LRU_BLOB, 1, 10, 300, 100, 0);
	it[1] = item(LRU_MANIFEST, 2, 10, 300, 200, 0); /* tie: stored later */
	it[2] = item(LRU_BLOB, 3, 10, 100, 100, 0);
	it[3] = item(LRU_BLOB, 4, 10, 200, 100, 0);
	it[4] = item(LRU_PARTIAL, 5, 10, 500, 0, 0); /* partials first */
	it[5] = item(LRU_PARTIAL, 6, 10, 600, 0, 0);
	it[6] = item(LRU_BLOB, 7, 10, 1, 1, 2); /* pinned: last */
	lru_sort(it, 7);
	for (i = 0; i < 7; i++)
		CHECK(it[i].digest.b[0] == want[i]);
}

static void
test_plan_stops(void)
{
	struct lru_item it[4];

	it[0] = item(LRU_BLOB, 1, 100, 1, 1, 0);
	it[1] = item(LRU_BLOB, 2, 100, 2, 2, 0);
	it[2] = item(LRU_BLOB, 3, 100, 3, 3, 0);
	it[3] = item(LRU_BLOB, 4, 100, 4, 4, 0);
	CHECK(lru_plan(it, 4, 150, 0) == 200);
	CHECK(it[0].chosen && it[1].chosen && !it[2].chosen && !it[3].chosen);
	CHECK(lru_plan(it, 4, 0, 0) == 0);
	CHECK(!it[0].chosen);
}

static void
test_plan_never_pinned_or_busy(void)
{
	struct lru_item it[4];

	it[0] = item(LRU_BLOB, 1, 100, 1, 1, 1); /* pinned */
	it[1] = item(LRU_BLOB, 2, 100, 2, 2, 0);
	it[1].busy = 1; /* being sent */
	it[2] = item(LRU_BLOB, 3, 100, 3, 3, 0);
	it[3] = item(LRU_BLOB, 4, 100, 4, 4, 3);
	CHECK(lru_plan(it, 4, 1000, 1) == 100);
	CHECK(!it[0].chosen && !it[1].chosen && it[2].chosen && !it[3].chosen);
}

static void
test_plan_all_partials(void)
{
	struct lru_item it[3];

	it[0] = item(LRU_PARTIAL, 1, 100, 1, 0, 0);
	it[1] = item(LRU_PARTIAL, 2, 100, 2, 0, 0);
	it[2] = item(LRU_BLOB, 3, 100, 3, 3, 0);
	CHECK(lru_plan(it, 3, 0, 1) == 200);
	CHECK(it[0].chosen && it[1].chosen && !it[2].chosen);
	CHECK(lru_plan(it, 3, 50, 0) == 100);
	CHECK(it[0].chosen && !it[1].chosen);
}

static void
test_need(void)
{
	struct lru_budget b;
	struct lru_usage u;

	memset(&b, 0, sizeof b);
	memset(&u, 0, sizeof u);
	u.fs_total = 1000000;
	u.fs_avail = 500000;
	u.used = 900;
	CHECK(!lru_budget_on(&b));
	CHECK(lru_need(&b, &u, 0, 0) == 0);
	b.max_bytes = 1000;
	CHECK(lru_budget_on(&b));
	CHECK(lru_need(&b, &u, 0, 0) == 0);   /* under max */
	CHECK(lru_need(&b, &u, 100, 0) == 0); /* exactly max */
	/* crossing: down to the low mark (default 90%) with incoming */
	CHECK(lru_need(&b, &u, 200, 0) == 1100 - 900);
	/* gc: the low mark even when nothing is crossed */
	CHECK(lru_need(&b, &u, 0, 1) == 0);
	u.used = 950;
	CHECK(lru_need(&b, &u, 0, 1) == 50);
	b.low_water_percent = 50;
	CHECK(lru_need(&b, &u, 0, 1) == 450);
	/* the floor: 60% free wanted, 50% free */
	memset(&b, 0, sizeof b);
	b.min_free_percent = 60;
	CHECK(lru_floor(&b, u.fs_total) == 600000);
	/* to the floor plus 10% of it */
	CHECK(lru_need(&b, &u, 0, 0) == 660000 - 500000);
	b.min_free_bytes = 700000; /* the larger of the two */
	CHECK(lru_floor(&b, u.fs_total) == 700000);
	/* incoming bytes count against free space */
	b.min_free_bytes = 0;
	b.min_free_percent = 40;
	CHECK(lru_need(&b, &u, 0, 0) == 0);
	CHECK(lru_need(&b, &u, 150000, 0) == 440000 - 350000);
}

static const struct unit_test tests[] = {
    {"order", test_order},
    {"plan_stops", test_plan_stops},
    {"plan_never_pinned_or_busy", test_plan_never_pinned_or_busy},
    {"plan_all_partials", test_plan_all_partials},
    {"need", test_need},
};

UNIT_MAIN("lru", tests)
