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

#define TEST_AUTH_LINE 4096

static const char *const test_auth_schemes[] = {
    [AUTH_NONE] = "none",
    [AUTH_BASIC] = "basic",
    [AUTH_BEARER] = "bearer",
};

static const char *const test_auth_keys[] = {
    "realm", "service", "scope", "error"};

static const char *
test_auth_datadir(void)
{
	const char *d = getenv("CCPREWARM_TESTDATA");

	return d != NULL ? d : "tests/data";
}

static char *
test_auth_next(FILE *f, char *buf, size_t len)
{
	while (fgets(buf, (int)len, f) != NULL) {
		buf[strcspn(buf, "\n")] = '\0';
		if (buf[0] != '#')
			return buf;
	}
	return NULL;
}

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
	char buf[TEST_AUTH_LINE], *tab;

	xstrlcpy(buf, in, sizeof buf);
	if ((tab = strchr(buf, '\t')) == NULL) {
		snprintf(out, len, "no tab");
		return;
	}
	*tab = '\0';
	snprintf(out, len, "%s",
	    auth_realm_check(tab + 1, buf) == 0 ? "ok" : "refused");
}

/* Runs each line of NAME.in through fn and compares with NAME.out. */
static void
test_auth_golden(const char *name, void (*fn)(const char *, char *, size_t))
{
	char in[TEST_AUTH_LINE], want[TEST_AUTH_LINE], got[TEST_AUTH_LINE];
	char path[1024];
	FILE *fin = NULL, *fout = NULL;
	int n = 0, bad = 0;

	snprintf(path, sizeof(path), "%s/%s.in", test_auth_datadir(), name);
	fin = fopen(path, "r");
	snprintf(path, sizeof(path), "%s/%s.out", test_auth_datadir(), name);
	fout = fopen(path, "r");
	if (fin == NULL || fout == NULL) {
		fprintf(stderr, "cannot open %s golden files under '%s'\n",
		    name, test_auth_datadir());
		unit_failed = 1;
		goto out;
	}
	while (test_auth_next(fin, in, sizeof(in)) != NULL) {
		n++;
		if (test_auth_next(fout, want, sizeof(want)) == NULL) {
			fprintf(
			    stderr, "%s.out ends before line %d\n", name, n);
			unit_failed = 1;
			goto out;
		}
		fn(in, got, sizeof(got));
		if (strcmp(got, want) != 0) {
			fprintf(stderr, "case %d: '%s': got '%s', want '%s'\n",
			    n, in, got, want);
			bad = 1;
		}
	}
	if (test_auth_next(fout, want, sizeof(want)) != NULL) {
		fprintf(
		    stderr, "%s.out has more lines than %s.in\n", name, name);
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

static void
test_auth_challenges(void)
{
	test_auth_golden("auth", test_auth_challenge);
}

static void
test_auth_realms(void)
{
	test_auth_golden("realm", test_auth_realm);
}

static const struct unit_test tests[] = {
    {"challenges", test_auth_challenges},
    {"realms", test_auth_realms},
};

UNIT_MAIN("auth", tests)
