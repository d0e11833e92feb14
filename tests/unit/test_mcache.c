/*
 * tests/unit/test_mcache.c: registry/mcache.c.  Bytes by digest and tag
 * mappings round-trip; the byte budget holds, least recently used first;
 * dropping a digest takes its tag mappings; a reference outlives eviction
 * and the cache itself; several threads hammering one cache see only whole,
 * matching entries.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../registry/registry.h"
#include "unit.h"

static void
test_mcache_digest(struct digest *d, unsigned n)
{
	char s[32];

	snprintf(s, sizeof s, "manifest-%u", n);
	digest_buf(s, strlen(s), d);
}

static void
test_mcache_roundtrip(void)
{
	struct mcache *mc = mcache_new(1 << 20);
	struct mcache_blob *b;
	struct mcache_stats st;
	struct digest d, other;
	struct db_tag t, got;
	const char *p;
	size_t len;

	CHECK(mcache_new(0) == NULL);
	CHECK(mcache_get(NULL, &d) == NULL); /* off: every call is a no-op */
	test_mcache_digest(&d, 1);
	test_mcache_digest(&other, 2);
	CHECK(mcache_get(mc, &d) == NULL);
	mcache_blob_unref(mcache_put(mc, &d, "application/x-test", "{}", 2));
	b = mcache_get(mc, &d);
	CHECK(b != NULL);
	p = mcache_blob_bytes(b, &len);
	CHECK(len == 2 && memcmp(p, "{}", 2) == 0);
	CHECK_STR(mcache_blob_type(b), "application/x-test");
	mcache_blob_unref(b);
	CHECK(mcache_get(mc, &other) == NULL);

	memset(&t, 0, sizeof t);
	t.digest = d;
	t.confirmed_at = 1234;
	xstrlcpy(t.media_type, "application/x-test", sizeof t.media_type);
	mcache_tag_put(mc, "docker.io", "library/alpine", "3.19", &t);
	CHECK(mcache_tag_get(mc, "docker.io", "library/alpine", "3.19", &got) ==
	    0);
	CHECK(digest_equal(&got.digest, &d) && got.confirmed_at == 1234);
	/* the key's parts are separate: no prefix confusion */
	CHECK(mcache_tag_get(mc, "docker.io", "library/alpine3", ".19", &got) ==
	    1);
	CHECK(
	    mcache_tag_get(mc, "ghcr.io", "library/alpine", "3.19", &got) == 1);
	/* a newer mapping replaces the old */
	t.digest = other;
	t.confirmed_at = 99;
	mcache_tag_put(mc, "docker.io", "library/alpine", "3.19", &t);
	CHECK(mcache_tag_get(mc, "docker.io", "library/alpine", "3.19", &got) ==
	    0);
	CHECK(digest_equal(&got.digest, &other) && got.confirmed_at == 99);
	mcache_stats(mc, &st);
	CHECK(st.hits == 1 && st.misses == 2 && st.entries == 2);
	CHECK(st.bytes > 2 && st.max_bytes == 1 << 20);
	mcache_free(mc);
}

static void
test_mcache_budget(void)
{
	/* room for a few 1 KiB manifests (each plus its overhead) */
	struct mcache *mc = mcache_new(8 * 1024);
	struct mcache_stats st;
	struct digest d[16];
	char body[1025];
	struct mcache_blob *b;
	unsigned i;

	memset(body, 'x', sizeof body);
	for (i = 0; i < 16; i++) {
		test_mcache_digest(&d[i], i);
		mcache_blob_unref(mcache_put(mc, &d[i], "t", body, 1024));
		/* keep 0 recently used: it must survive */
		mcache_blob_unref(mcache_get(mc, &d[0]));
		mcache_stats(mc, &st);
		CHECK(st.bytes <= 8 * 1024);
	}
	CHECK((b = mcache_get(mc, &d[0])) != NULL);
	mcache_blob_unref(b);
	CHECK(mcache_get(mc, &d[1]) == NULL); /* least recently used: out */
	CHECK((b = mcache_get(mc, &d[15])) != NULL); /* newest: in */
	mcache_blob_unref(b);
	mcache_stats(mc, &st);
	CHECK(st.evictions > 0 && st.entries < 16);
	/* larger than an eighth of the budget: never kept */
	CHECK(!mcache_fits(mc, 1025) && mcache_fits(mc, 1024));
	CHECK(mcache_put(mc, &d[1], "t", body, 1025) == NULL);
	CHECK(!mcache_fits(NULL, 1));
	mcache_free(mc);
}

static void
test_mcache_drop(void)
{
	struct mcache *mc = mcache_new(1 << 20);
	struct digest d, keep;
	struct db_tag t, got;

	test_mcache_digest(&d, 1);
	test_mcache_digest(&keep, 2);
	mcache_blob_unref(mcache_put(mc, &d, "t", "abc", 3));
	mcache_blob_unref(mcache_put(mc, &keep, "t", "def", 3));
	memset(&t, 0, sizeof t);
	t.digest = d;
	mcache_tag_put(mc, "u", "r", "a", &t);
	mcache_tag_put(mc, "u", "r", "b", &t);
	t.digest = keep;
	mcache_tag_put(mc, "u", "r", "c", &t);
	mcache_drop(mc, &d);
	CHECK(mcache_get(mc, &d) == NULL);
	CHECK(mcache_tag_get(mc, "u", "r", "a", &got) == 1);
	CHECK(mcache_tag_get(mc, "u", "r", "b", &got) == 1);
	CHECK(mcache_tag_get(mc, "u", "r", "c", &got) == 0);
	mcache_blob_unref(mcache_get(mc, &keep));
	mcache_clear(mc);
	CHECK(mcache_get(mc, &keep) == NULL);
	CHECK(mcache_tag_get(mc, "u", "r", "c", &got) == 1);
	mcache_free(mc);
}

/* A reply holds its reference while the entry is evicted, and after. */
static void
test_mcache_ref_outlives(void)
{
	struct mcache *mc = mcache_new(1 << 20);
	struct mcache_blob *b;
	struct digest d;
	const char *p;
	size_t len;

	test_mcache_digest(&d, 7);
	b = mcache_put(mc, &d, "t", "hello", 5);
	CHECK(b != NULL);
	mcache_drop(mc, &d);
	mcache_blob_unref(mcache_put(mc, &d, "t", "hello", 5)); /* replaced */
	mcache_free(mc);
	p = mcache_blob_bytes(b, &len);
	CHECK(len == 5 && memcmp(p, "hello", 5) == 0);
	mcache_blob_unref(b);
}

/* Several loops: puts, gets, tag lookups and drops at once. */
struct test_mcache_thread {
	struct mcache *mc;
	unsigned seed;
	int bad;
};

static void *
test_mcache_worker(void *arg)
{
	struct test_mcache_thread *t = arg;
	char body[600], tag[16];
	struct mcache_blob *b;
	struct digest d;
	struct db_tag dt, got;
	const char *p;
	size_t len;
	unsigned i, n;

	for (i = 0; i < 20000; i++) {
		n = (t->seed + i * 7) % 64;
		test_mcache_digest(&d, n);
		snprintf(tag, sizeof tag, "t%u", n);
		switch (i % 5) {
		case 0:
			memset(body, 'a' + (int)(n % 26), 100 + n);
			mcache_blob_unref(
			    mcache_put(t->mc, &d, "t", body, 100 + n));
			memset(&dt, 0, sizeof dt);
			dt.digest = d;
			dt.confirmed_at = n;
			mcache_tag_put(t->mc, "u", "r", tag, &dt);
			break;
		case 4:
			if (n % 8 == 0)
				mcache_drop(t->mc, &d);
			break;
		default:
			if ((b = mcache_get(t->mc, &d)) != NULL) {
				p = mcache_blob_bytes(b, &len);
				if (len != 100 + n ||
				    p[len - 1] != 'a' + (int)(n % 26))
					t->bad = 1;
				mcache_blob_unref(b);
			}
			if (mcache_tag_get(t->mc, "u", "r", tag, &got) == 0 &&
			    (!digest_equal(&got.digest, &d) ||
				got.confirmed_at != n))
				t->bad = 1;
		}
	}
	return NULL;
}

static void
test_mcache_threads(void)
{
	struct mcache *mc = mcache_new(16 * 1024); /* small: eviction too */
	struct test_mcache_thread t[4];
	pthread_t th[4];
	struct mcache_stats st;
	unsigned i;

	for (i = 0; i < 4; i++) {
		t[i].mc = mc;
		t[i].seed = i * 13;
		t[i].bad = 0;
		CHECK(pthread_create(&th[i], NULL, test_mcache_worker, &t[i]) ==
		    0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(!t[i].bad);
	}
	mcache_stats(mc, &st);
	CHECK(st.bytes <= 16 * 1024 && st.hits > 0);
	mcache_free(mc);
}

static const struct unit_test tests[] = {
    {"roundtrip", test_mcache_roundtrip},
    {"budget", test_mcache_budget},
    {"drop", test_mcache_drop},
    {"ref-outlives", test_mcache_ref_outlives},
    {"threads", test_mcache_threads},
};

UNIT_MAIN("mcache", tests)
