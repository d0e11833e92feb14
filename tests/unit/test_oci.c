/*
 * tests/unit/test_oci.c: registry/oci.c manifest decoding.  A table of
 * manifests and what oci_manifest_parse must say; then every former
 * fuzzer crasher under tests/fuzz/crashers/fuzz_oci/ must parse or be
 * refused without harm.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../registry/registry.h"
#include "unit.h"

#define D0 \
	"sha256:" \
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const struct test_oci_case {
	const char *json;
	int ok;	       /* 0 parses, -1 refused */
	size_t ndescs; /* when it parses */
	int64_t size0; /* first descriptor's size */
} test_oci_cases[] = {
    {"{\"manifests\":[{\"digest\":\"" D0 "\",\"size\":5}]}", 0, 1, 5},
    {"{\"manifests\":[{\"digest\":\"" D0 "\"}]}", 0, 1, -1},
    {"{\"config\":{\"digest\":\"" D0 "\",\"size\":1},\"layers\":[]}", 0, 0, 0},
    /* image-spec: size is an int64 >= 0 (fuzz_oci's invariant) */
    {"{\"manifests\":[{\"digest\":\"" D0 "\",\"size\":-5}]}", -1, 0, 0},
    {"{\"manifests\":[{\"digest\":\"" D0 "\",\"size\":-1}]}", -1, 0, 0},
    {"{\"manifests\":[{\"digest\":\"" D0 "\",\"size\":\"5\"}]}", -1, 0, 0},
    {"{\"config\":{\"digest\":\"" D0
     "\",\"size\":-9223372036854775808},\"layers\":[]}",
	-1, 0, 0},
    {"{\"schemaVersion\":1,\"fsLayers\":[]}", -1, 0, 0},
    {"[]", -1, 0, 0},
    {"{\"manifests\":{}}", -1, 0, 0},
    {"{\"manifests\":[{\"digest\":\"sha256:00\"}]}", -1, 0, 0},
};

/* What oci.out has for a manifest: its kind, type, config and each
 * descriptor, or the reason it is refused. */
static void
test_oci_eval(const char *in, char *out, size_t len)
{
	static const char *const kinds[] = {
	    [OCI_KIND_INDEX] = "index", [OCI_KIND_IMAGE] = "image"};
	char hex[DIGEST_STRLEN];
	struct oci_manifest m;
	const struct oci_desc *d;
	const char *why = NULL;
	size_t i, n;

	if (oci_manifest_parse(in, strlen(in), &m, &why) == -1) {
		snprintf(out, len, "error: %s", why != NULL ? why : "(none)");
		return;
	}
	n = (size_t)snprintf(
	    out, len, "%s type=[%s]", kinds[m.kind], m.media_type);
	if (m.kind == OCI_KIND_IMAGE && n < len) {
		digest_format(&m.config.digest, hex);
		n += (size_t)snprintf(out + n, len - n, " config=%.15s/%lld",
		    hex, (long long)m.config.size);
	}
	for (i = 0; i < m.ndescs && n < len; i++) {
		d = &m.descs[i];
		digest_format(&d->digest, hex);
		n += (size_t)snprintf(out + n, len - n,
		    " | %.15s/%lld [%s] %s/%s/%s%s", hex, (long long)d->size,
		    d->media_type, d->os, d->arch, d->variant,
		    d->foreign ? " foreign" : "");
	}
	oci_manifest_release(&m);
}

static void
test_oci_golden(void)
{
	unit_golden("oci", test_oci_eval);
}

/* An upstream's refusal, as the client hears it (oci_err_from_status). */
static void
test_oci_status(void)
{
	CHECK(oci_err_from_status(401, 1) == OCI_ERR_UNAUTHORIZED);
	CHECK(oci_err_from_status(403, 0) == OCI_ERR_DENIED);
	CHECK(oci_err_from_status(404, 1) == OCI_ERR_BLOB_UNKNOWN);
	CHECK(oci_err_from_status(404, 0) == OCI_ERR_MANIFEST_UNKNOWN);
	CHECK(oci_err_from_status(429, 1) == OCI_ERR_TOOMANYREQUESTS);
	CHECK(oci_err_from_status(500, 0) == OCI_ERR_UNAVAILABLE);
	CHECK(oci_err_from_status(418, 1) == OCI_ERR_UNAVAILABLE);
}

static void
test_oci_table(void)
{
	struct oci_manifest m;
	const char *why;
	size_t i;
	int rc;

	for (i = 0; i < nitems(test_oci_cases); i++) {
		const struct test_oci_case *c = &test_oci_cases[i];

		rc = oci_manifest_parse(c->json, strlen(c->json), &m, &why);
		if (rc != c->ok) {
			fprintf(stderr, "case %zu: rc %d, want %d (%s)\n", i,
			    rc, c->ok, why ? why : "");
			unit_failed = 1;
		} else if (rc == 0 &&
		    (m.ndescs != c->ndescs ||
			(m.ndescs > 0 && m.descs[0].size != c->size0))) {
			fprintf(
			    stderr, "case %zu: %zu descriptors\n", i, m.ndescs);
			unit_failed = 1;
		} else if (rc == -1 && (why == NULL || m.descs != NULL)) {
			fprintf(
			    stderr, "case %zu: refused without a reason\n", i);
			unit_failed = 1;
		}
		if (rc == 0)
			oci_manifest_release(&m);
	}
}

static void
test_oci_crashers(void)
{
	const char *dir = "tests/fuzz/crashers/fuzz_oci";
	char path[1024], *buf;
	struct oci_manifest m;
	struct dirent *de;
	const char *why;
	size_t len;
	FILE *f;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return;
	buf = xmalloc(OCI_MANIFEST_MAX);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if ((f = fopen(path, "rb")) == NULL)
			continue;
		len = fread(buf, 1, OCI_MANIFEST_MAX, f);
		fclose(f);
		if (oci_manifest_parse(buf, len, &m, &why) == 0) {
			for (size_t i = 0; i < m.ndescs; i++)
				if (m.descs[i].size < -1)
					unit_failed = 1;
			oci_manifest_release(&m);
		}
	}
	free(buf);
	closedir(d);
}

static const struct unit_test tests[] = {
    {"table", test_oci_table},
    {"crashers", test_oci_crashers},
    {"golden", test_oci_golden},
    {"status", test_oci_status},
};

UNIT_MAIN("oci", tests)
