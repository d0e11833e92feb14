/*
 * tests/unit/test_route.c: registry/route.c.  Golden file: every line of
 * tests/data/route.in (a raw request path, "?query" optional) goes through
 * route_parse and the result must equal the same line of route.out: the
 * kind and the fields it filled, or "error CODE: why".  '#' lines are
 * comments in both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../registry/registry.h"
#include "unit.h"

#define TEST_ROUTE_LINE 4096

static const char *const test_route_kinds[ROUTE_NKINDS] = {
    [ROUTE_BASE] = "base",
    [ROUTE_MANIFEST] = "manifest",
    [ROUTE_BLOB] = "blob",
    [ROUTE_TAGS] = "tags",
    [ROUTE_UPLOAD] = "upload",
    [ROUTE_CATALOG] = "catalog",
    [ROUTE_METRICS] = "metrics",
    [ROUTE_ADMIN] = "admin",
};

static const char *
test_route_datadir(void)
{
	const char *d = getenv("CCPREWARM_TESTDATA");

	return d != NULL ? d : "tests/data";
}

static char *
test_route_next(FILE *f, char *buf, size_t len)
{
	while (fgets(buf, (int)len, f) != NULL) {
		buf[strcspn(buf, "\n")] = '\0';
		if (buf[0] != '#')
			return buf;
	}
	return NULL;
}

/* What route_parse says about a path and query, as route.out has it. */
static void
test_route_eval(const char *path, const char *query, char *out, size_t len)
{
	struct route rt;
	enum oci_err err;
	const char *why = NULL;
	char hex[DIGEST_STRLEN];

	memset(&rt, 0, sizeof rt);
	if (route_parse(path, query, &rt, &err, &why) == -1) {
		snprintf(out, len, "error %s: %s", oci_err_code(err),
		    why != NULL ? why : "(none)");
		return;
	}
	hex[0] = '\0';
	if (rt.by_digest || rt.kind == ROUTE_BLOB)
		digest_format(&rt.digest, hex);
	snprintf(out, len, "%s name=%s host=%s tag=%s digest=%s admin=%s",
	    (size_t)rt.kind < ROUTE_NKINDS ? test_route_kinds[rt.kind] : "?",
	    rt.name, rt.host, rt.tag, hex, rt.admin);
}

static void
test_route_golden(void)
{
	char in[TEST_ROUTE_LINE], want[TEST_ROUTE_LINE], got[TEST_ROUTE_LINE];
	char path[1024], *q;
	FILE *fin = NULL, *fout = NULL;
	int n = 0, bad = 0;

	snprintf(path, sizeof(path), "%s/route.in", test_route_datadir());
	fin = fopen(path, "r");
	snprintf(path, sizeof(path), "%s/route.out", test_route_datadir());
	fout = fopen(path, "r");
	if (fin == NULL || fout == NULL) {
		fprintf(stderr, "cannot open golden files under '%s'\n",
		    test_route_datadir());
		unit_failed = 1;
		goto out;
	}
	while (test_route_next(fin, in, sizeof(in)) != NULL) {
		n++;
		if (test_route_next(fout, want, sizeof(want)) == NULL) {
			fprintf(stderr, "route.out ends before line %d\n", n);
			unit_failed = 1;
			goto out;
		}
		if ((q = strchr(in, '?')) != NULL)
			*q++ = '\0';
		test_route_eval(in, q, got, sizeof(got));
		if (strcmp(got, want) != 0) {
			fprintf(stderr,
			    "case %d: '%s%s%s': got '%s', want '%s'\n", n, in,
			    q != NULL ? "?" : "", q != NULL ? q : "", got,
			    want);
			bad = 1;
		}
	}
	if (test_route_next(fout, want, sizeof(want)) != NULL) {
		fprintf(stderr, "route.out has more lines than route.in\n");
		bad = 1;
	}
	if (bad)
		unit_failed = 1;
out:
	if (fin != NULL)
		fclose(fin);
	if (fout != NULL)
		fclose(fout);
}

/* Every route kind has a label here (the table is kept by hand). */
static void
test_route_kinds_named(void)
{
	size_t i;

	for (i = 0; i < ROUTE_NKINDS; i++)
		CHECK(test_route_kinds[i] != NULL);
}

static const struct unit_test tests[] = {
    {"golden", test_route_golden},
    {"kinds-named", test_route_kinds_named},
};

UNIT_MAIN("route", tests)
