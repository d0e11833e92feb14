/*
 * tests/unit/test_version.c: prewarm/version.c.  Co-op Cloud version tags,
 * semver precedence of the recipe part, and the window of the newest
 * releases (pre-releases and other tags never in it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../prewarm/prewarm.h"
#include "unit.h"

static void
test_version_parse(void)
{
	struct version v;

	CHECK(version_parse("0.5.0+v5.7.0", &v) == 0);
	CHECK(v.major == 0 && v.minor == 5 && v.patch == 0 && v.pre[0] == 0);
	CHECK(version_parse("10.1.0+2025.8.4", &v) == 0 && v.major == 10);
	CHECK(version_parse("2.0.0-rc.1+1.0.5-social", &v) == 0);
	CHECK_STR(v.pre, "rc.1");
	CHECK(version_parse("1.0.0", &v) == -1);  /* no upstream part */
	CHECK(version_parse("1.0.0+", &v) == -1); /* empty upstream part */
	CHECK(version_parse("1.0+2", &v) == -1);
	CHECK(version_parse("v1.0.0+2", &v) == -1);
	CHECK(version_parse("1.0.0-+2", &v) == -1);
	CHECK(version_parse("1.0.0-a_b+2", &v) == -1);
	CHECK(version_parse("1.0.0+2+3", &v) == -1);
	CHECK(version_parse("", &v) == -1);
	CHECK(version_is_release("1.2.3+4"));
	CHECK(!version_is_release("1.2.3-rc1+4"));
	CHECK(!version_is_release("latest"));
}

static void
test_version_order(void)
{
	/* ascending, each strictly below the next */
	static const char *const asc[] = {"not-a-version", "0.1.0+1.0",
	    "0.2.0-alpha+1.1", "0.2.0-alpha.1+1.1", "0.2.0-alpha.beta+1.1",
	    "0.2.0-beta.2+1.1", "0.2.0-beta.11+1.1", "0.2.0-rc.1+1.1",
	    "0.2.0+1.1", "0.10.0+0.9", "1.0.0+0.1", "1.0.0+0.2", "10.0.0+0"};
	size_t i;

	for (i = 0; i + 1 < nitems(asc); i++) {
		CHECK(version_cmp(asc[i], asc[i + 1]) < 0);
		CHECK(version_cmp(asc[i + 1], asc[i]) > 0);
		CHECK(version_cmp(asc[i], asc[i]) == 0);
	}
}

static void
test_version_window(void)
{
	char t0[] = "0.1.0+1.0", t1[] = "0.3.0-rc1+1.2", t2[] = "0.2.0+1.1";
	char t3[] = "junk", t4[] = "0.10.0+2.0", t5[] = "0.2.1+1.1";
	char *tags[] = {t0, t1, t2, t3, t4, t5};
	char *out[4];
	size_t n;

	n = version_window(tags, nitems(tags), 2, out);
	CHECK(n == 2);
	CHECK_STR(out[0], "0.10.0+2.0");
	CHECK_STR(out[1], "0.2.1+1.1");
	CHECK_STR(tags[0], "0.10.0+2.0"); /* sorted newest first */
	CHECK_STR(tags[1], "0.3.0-rc1+1.2");
	n = version_window(tags, nitems(tags), 4, out);
	CHECK(n == 4);
	CHECK_STR(out[3], "0.1.0+1.0");
	CHECK(version_window(tags, nitems(tags), 9, out) == 4);
	CHECK(version_window(tags, 0, 2, out) == 0);
}

static const struct unit_test test_version_tests[] = {
    {"parse", test_version_parse},
    {"order", test_version_order},
    {"window", test_version_window},
};

UNIT_MAIN("version", test_version_tests)
