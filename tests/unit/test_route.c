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

/* What route_parse says about "path[?query]", as route.out has it. */
static void
test_route_eval(const char *line, char *out, size_t len)
{
	char path[UNIT_GOLDEN_LINE], *query;
	struct route rt;
	enum oci_err err;
	const char *why = NULL;
	char hex[DIGEST_STRLEN];

	snprintf(path, sizeof path, "%s", line);
	if ((query = strchr(path, '?')) != NULL)
		*query++ = '\0';
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
	    route_kind_name(rt.kind), rt.name, rt.host, rt.tag, hex, rt.admin);
}

static void
test_route_golden(void)
{
	unit_golden("route", test_route_eval);
}

/* Every route kind has a name of its own (the /metrics label). */
static void
test_route_kinds_named(void)
{
	size_t i, j;

	for (i = 0; i < ROUTE_NKINDS; i++) {
		CHECK(strcmp(route_kind_name((enum route_kind)i), "unknown") !=
		    0);
		for (j = 0; j < i; j++)
			CHECK(strcmp(route_kind_name((enum route_kind)i),
				  route_kind_name((enum route_kind)j)) != 0);
	}
	CHECK_STR(route_kind_name(ROUTE_NKINDS), "unknown");
}

static const struct unit_test tests[] = {
    {"golden", test_route_golden},
    {"kinds-named", test_route_kinds_named},
};

UNIT_MAIN("route", tests)
