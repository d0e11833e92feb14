/*
 * tests/unit/test_shared.c: registry/shared.c's pure parts: the node name
 * check and reading a tag mapping published to the bucket (strictly: what
 * is not exactly one mapping is refused, never half used).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../common/common.h"
#include "../../registry/registry.h"
#include "unit.h"

#define TEST_SHARED_DG \
	"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define TEST_SHARED_MT "application/vnd.oci.image.index.v1+json"

static int
test_shared_parse(const char *text, struct db_tag *t)
{
	return shared_tag_parse(text, strlen(text), t);
}

static void
test_tag_good(void)
{
	struct db_tag t;
	char d[DIGEST_STRLEN];

	CHECK(
	    test_shared_parse(
		TEST_SHARED_DG "\n1796007892\n" TEST_SHARED_MT "\n", &t) == 0);
	digest_format(&t.digest, d);
	CHECK_STR(d, TEST_SHARED_DG);
	CHECK(t.confirmed_at == 1796007892);
	CHECK_STR(t.media_type, TEST_SHARED_MT);
}

static void
test_tag_bad(void)
{
	static const char *const bad[] = {
	    "",
	    "\n",
	    TEST_SHARED_DG,
	    TEST_SHARED_DG "\n",
	    TEST_SHARED_DG "\n1796007892\n",
	    TEST_SHARED_DG "\n1796007892\n" TEST_SHARED_MT,
	    TEST_SHARED_DG "\n1796007892\n\n",
	    TEST_SHARED_DG "\nsoon\n" TEST_SHARED_MT "\n",
	    TEST_SHARED_DG "\n-5\n" TEST_SHARED_MT "\n",
	    TEST_SHARED_DG "\n17x\n" TEST_SHARED_MT "\n",
	    TEST_SHARED_DG "\n1796007892\n" TEST_SHARED_MT "\nmore\n",
	    "sha256:0123\n1796007892\n" TEST_SHARED_MT "\n",
	    "md5:0123456789abcdef0123456789abcdef\n1\n" TEST_SHARED_MT "\n",
	};
	struct db_tag t;
	size_t i;

	for (i = 0; i < nitems(bad); i++)
		CHECK(test_shared_parse(bad[i], &t) == -1);
	/* longer than any mapping */
	{
		char big[4096];

		memset(big, 'a', sizeof big);
		CHECK(shared_tag_parse(big, sizeof big, &t) == -1);
	}
}

static void
test_node_name(void)
{
	CHECK(shared_node_valid("runner-1.ci_x"));
	CHECK(!shared_node_valid(""));
	CHECK(!shared_node_valid(".hidden"));
	CHECK(!shared_node_valid("a/b"));
}

static const struct unit_test tests[] = {
    {"tag_good", test_tag_good},
    {"tag_bad", test_tag_bad},
    {"node_name", test_node_name},
};

UNIT_MAIN("shared", tests)
