/*
 * tests/unit/test_ref.c: registry/ref.c.  Golden file: every line of
 * tests/data/ref.in is parsed and formatted, and the result ("canonical" or
 * "error: reason") must equal the same line of ref.out.  Lines starting
 * with '#' are comments in both.  Run from the repository root, or point
 * CCPREWARM_TESTDATA at tests/data.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../registry/registry.h"
#include "unit.h"

/* What ref.out has for a reference: its canonical form, or the error. */
static void
test_ref_eval(const char *in, char *out, size_t len)
{
	char canon[REF_STRLEN];
	struct ref ref;
	const char *why;

	if (ref_parse(&ref, in, &why) == 0) {
		ref_format(&ref, canon, sizeof(canon));
		snprintf(out, len, "%s", canon);
	} else
		snprintf(out, len, "error: %s", why);
}

static void
test_ref_golden(void)
{
	int n = unit_golden("ref", test_ref_eval);

	if (n < 30) {
		fprintf(stderr, "ref.in: only %d cases\n", n);
		unit_failed = 1;
	}
}

static void
test_ref_fields(void)
{
	struct ref ref;
	const char *why;
	char canon[REF_STRLEN];

	CHECK(ref_parse(&ref, "index.docker.io/library/nginx:1", &why) == 0);
	CHECK_STR(ref.host, "docker.io");
	CHECK_STR(ref.repo, "library/nginx");
	CHECK_STR(ref.tag, "1");
	CHECK(!ref.has_digest);

	CHECK(ref_parse(&ref, "localhost:5000/a/b:c", &why) == 0);
	CHECK_STR(ref.host, "localhost:5000");
	CHECK_STR(ref.repo, "a/b");
	CHECK_STR(ref.tag, "c");

	CHECK(ref_parse(&ref,
		  "ghcr.io/x/y@sha256:"
		  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
		  "cdef",
		  &why) == 0);
	CHECK(ref.has_digest);
	CHECK_STR(ref.tag, "");
	CHECK(ref.digest.b[0] == 0x01 && ref.digest.b[31] == 0xef);
	ref_format(&ref, canon, sizeof(canon));
	CHECK_STR(canon,
	    "ghcr.io/x/y@sha256:"
	    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");

	/* A failed parse still leaves a zeroed struct, and a static reason. */
	CHECK(ref_parse(&ref, "Nginx", &why) == -1);
	CHECK_STR(why, "uppercase in repository name");
	CHECK(ref.host[0] == '\0');
	CHECK(ref_parse(&ref, NULL, &why) == -1);
	CHECK_STR(why, "empty reference");
}

static void
test_ref_floating(void)
{
	static const struct {
		const char *s;
		int floating;
	} cases[] = {
	    {"nginx", 1},
	    {"nginx:latest", 1},
	    {"nginx:Latest", 0},
	    {"nginx:1.27", 0},
	    {"nginx:latest@sha256:0123456789abcdef0123456789abcdef"
	     "0123456789abcdef0123456789abcdef",
		0},
	    {"nginx@sha256:0123456789abcdef0123456789abcdef"
	     "0123456789abcdef0123456789abcdef",
		0},
	};
	struct ref ref;
	const char *why;
	size_t i;

	for (i = 0; i < nitems(cases); i++) {
		CHECK(ref_parse(&ref, cases[i].s, &why) == 0);
		CHECK(ref_is_floating(&ref) == cases[i].floating);
	}
}

static void
test_ref_validators(void)
{
	char tag[REF_TAG_MAX + 2];
	char name[REF_NAME_MAX + 2];

	CHECK(ref_valid_name("library/nginx", 13));
	CHECK(ref_valid_name("a/b__c/d-----e/f.g", 18));
	/* len bounds the check: the '/' after is not looked at */
	CHECK(ref_valid_name("library/nginx/", 13));
	CHECK(!ref_valid_name("library/nginx/", 14));
	CHECK(!ref_valid_name("", 0));
	CHECK(!ref_valid_name("/a", 2));
	CHECK(!ref_valid_name("a//b", 4));
	CHECK(!ref_valid_name("a___b", 5));
	CHECK(!ref_valid_name("a..b", 4));
	CHECK(!ref_valid_name("-a", 2));
	CHECK(!ref_valid_name("a-", 2));
	CHECK(!ref_valid_name("A", 1));
	CHECK(!ref_valid_name("a:b", 3));
	memset(name, 'a', sizeof(name));
	CHECK(ref_valid_name(name, REF_NAME_MAX));
	CHECK(!ref_valid_name(name, REF_NAME_MAX + 1));

	CHECK(ref_valid_tag("v1.2.3-rc_1", 11));
	CHECK(ref_valid_tag("_x", 2));
	CHECK(ref_valid_tag("LATEST", 6));
	CHECK(!ref_valid_tag("", 0));
	CHECK(!ref_valid_tag(".x", 2));
	CHECK(!ref_valid_tag("-x", 2));
	CHECK(!ref_valid_tag("a+b", 3));
	CHECK(!ref_valid_tag("a/b", 3));
	memset(tag, 'a', sizeof(tag));
	CHECK(ref_valid_tag(tag, REF_TAG_MAX));
	CHECK(!ref_valid_tag(tag, REF_TAG_MAX + 1));
}

static const struct unit_test test_ref_tests[] = {
    {"golden", test_ref_golden},
    {"fields", test_ref_fields},
    {"floating", test_ref_floating},
    {"validators", test_ref_validators},
};

UNIT_MAIN("ref", test_ref_tests)
