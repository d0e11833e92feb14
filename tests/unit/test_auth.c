/*
 * tests/unit/test_auth.c: registry/auth.c's pure parsers.  Golden files:
 * every line of tests/data/auth.in (a WWW-Authenticate value) goes through
 * auth_scheme_parse and auth_challenge_param (realm, service, scope, error)
 * and the result must equal the same line of auth.out; every line of
 * tests/data/realm.in ("UPSTREAM_URL<TAB>realm") through auth_realm_check
 * against realm.out ("ok" or "refused").  '#' lines are comments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../registry/registry.h"
#include "unit.h"

static const char *const test_auth_schemes[] = {
    [AUTH_NONE] = "none",
    [AUTH_BASIC] = "basic",
    [AUTH_BEARER] = "bearer",
};

static const char *const test_auth_keys[] = {
    "realm", "service", "scope", "error"};

/* A challenge as auth.out has it: the scheme, then each parameter found. */
static void
test_auth_challenge(const char *in, char *out, size_t len)
{
	size_t i, n;
	char *v;

	n = (size_t)snprintf(
	    out, len, "%s", test_auth_schemes[auth_scheme_parse(in)]);
	for (i = 0; i < nitems(test_auth_keys) && n < len; i++) {
		if ((v = auth_challenge_param(in, test_auth_keys[i])) == NULL)
			continue;
		n += (size_t)snprintf(
		    out + n, len - n, " %s=[%s]", test_auth_keys[i], v);
		free(v);
	}
}

static void
test_auth_realm(const char *in, char *out, size_t len)
{
	char buf[UNIT_GOLDEN_LINE], *tab;

	xstrlcpy(buf, in, sizeof buf);
	if ((tab = strchr(buf, '\t')) == NULL) {
		snprintf(out, len, "no tab");
		return;
	}
	*tab = '\0';
	snprintf(out, len, "%s",
	    auth_realm_check(tab + 1, buf) == 0 ? "ok" : "refused");
}

static void
test_auth_challenges(void)
{
	unit_golden("auth", test_auth_challenge);
}

static void
test_auth_realms(void)
{
	unit_golden("realm", test_auth_realm);
}

static const struct unit_test tests[] = {
    {"challenges", test_auth_challenges},
    {"realms", test_auth_realms},
};

UNIT_MAIN("auth", tests)
