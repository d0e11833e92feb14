/*
 * registry/oci.c: the distribution spec's vocabulary: error codes and their
 * statuses (a table), media types, and the only reader of manifest JSON.
 * json_t never leaves this file.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/common.h"
#include "registry.h"

static const struct oci_err_def {
	const char *code;
	int status;
	const char *message;
} oci_errs[] = {
    [OCI_ERR_BLOB_UNKNOWN] = {"BLOB_UNKNOWN", 404, "blob unknown to registry"},
    [OCI_ERR_DIGEST_INVALID] = {"DIGEST_INVALID", 400,
	"provided digest did not match uploaded content"},
    [OCI_ERR_MANIFEST_INVALID] = {"MANIFEST_INVALID", 400, "manifest invalid"},
    [OCI_ERR_MANIFEST_UNKNOWN] = {"MANIFEST_UNKNOWN", 404, "manifest unknown"},
    [OCI_ERR_NAME_INVALID] = {"NAME_INVALID", 400, "invalid repository name"},
    [OCI_ERR_NAME_UNKNOWN] = {"NAME_UNKNOWN", 404,
	"repository name not known to registry"},
    [OCI_ERR_TAG_INVALID] = {"TAG_INVALID", 400,
	"manifest tag did not match URI"},
    [OCI_ERR_UNAUTHORIZED] = {"UNAUTHORIZED", 401, "authentication required"},
    [OCI_ERR_DENIED] = {"DENIED", 403,
	"requested access to the resource is denied"},
    [OCI_ERR_UNSUPPORTED] = {"UNSUPPORTED", 405,
	"the operation is unsupported"},
    [OCI_ERR_TOOMANYREQUESTS] = {"TOOMANYREQUESTS", 429, "too many requests"},
    /* Not in the spec's table; the spec only says 416. */
    [OCI_ERR_RANGE_INVALID] = {"RANGE_INVALID", 416,
	"requested range not satisfiable"},
    [OCI_ERR_SIZE_INVALID] = {"SIZE_INVALID", 400,
	"provided length did not match content length"},
    [OCI_ERR_UNAVAILABLE] = {"UNAVAILABLE", 503,
	"upstream registry unavailable"},
    [OCI_ERR_NOT_FOUND] = {"NOT_FOUND", 404, "not found"},
    [OCI_ERR_INTERNAL] = {"UNKNOWN", 500, "unknown error"},
};

/* An upstream's refusal, as the client hears it; the rest is UNAVAILABLE. */
static const struct oci_status_def {
	long status;
	enum oci_err blob, manifest;
} oci_statuses[] = {
    {401, OCI_ERR_UNAUTHORIZED, OCI_ERR_UNAUTHORIZED},
    {403, OCI_ERR_DENIED, OCI_ERR_DENIED},
    {404, OCI_ERR_BLOB_UNKNOWN, OCI_ERR_MANIFEST_UNKNOWN},
    {429, OCI_ERR_TOOMANYREQUESTS, OCI_ERR_TOOMANYREQUESTS},
};

enum oci_err
oci_err_from_status(long status, int blob)
{
	size_t i;

	for (i = 0; i < nitems(oci_statuses); i++)
		if (oci_statuses[i].status == status)
			return blob ? oci_statuses[i].blob
				    : oci_statuses[i].manifest;
	return OCI_ERR_UNAVAILABLE;
}

int
oci_err_status(enum oci_err e)
{
	return oci_errs[e].status;
}

const char *
oci_err_code(enum oci_err e)
{
	return oci_errs[e].code;
}

char *
oci_err_body(enum oci_err e, const char *detail)
{
	json_t *root;
	char *s;

	root = json_pack("{s:[{s:s,s:s,s:s*}]}", "errors", "code",
	    oci_errs[e].code, "message", oci_errs[e].message, "detail", detail);
	if (root == NULL || (s = json_dumps(root, JSON_COMPACT)) == NULL)
		fatal("out of memory building an error body");
	json_decref(root);
	return s;
}

static const char oci_accept_list[] =
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

const char *
oci_accept_all(void)
{
	return oci_accept_list;
}

int
oci_accepts(const char *accept, const char *mt)
{
	const char *p = accept;
	size_t mtlen = strlen(mt);

	if (accept == NULL || accept[0] == '\0' || mt[0] == '\0')
		return 1;
	while (*p != '\0') {
		size_t n;

		p += strspn(p, " \t,");
		n = strcspn(p, ",;");
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if ((n == mtlen && strncmp(p, mt, n) == 0) ||
		    (n == 3 && strncmp(p, "*/*", 3) == 0))
			return 1;
		p += strcspn(p, ",");
	}
	return 0;
}

int
oci_accepts_indexes(const char *accept)
{
	return oci_accepts(accept, "application/vnd.oci.image.index.v1+json") &&
	    oci_accepts(accept,
		"application/vnd.docker.distribution.manifest.list.v2+json");
}

int
oci_manifest_media_type(const void *buf, size_t len, char *out, size_t outlen)
{
	json_t *root, *mt;
	int rc = -1;

	out[0] = '\0';
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (root == NULL || !json_is_object(root))
		goto out;
	mt = json_object_get(root, "mediaType");
	if (json_is_string(mt) && json_string_length(mt) < outlen)
		xstrlcpy(out, json_string_value(mt), outlen);
	rc = 0;
out:
	json_decref(root);
	return rc;
}

static int
oci_desc_parse(json_t *o, struct oci_desc *d)
{
	json_t *plat, *urls;
	const char *s;

	memset(d, 0, sizeof *d);
	s = json_string_value(json_object_get(o, "digest"));
	if (s == NULL || digest_parse(&d->digest, s) == -1)
		return -1;
	d->size = json_is_integer(json_object_get(o, "size"))
	    ? json_integer_value(json_object_get(o, "size"))
	    : -1;
	/* image-spec: size is the number of bytes, an int64 >= 0. */
	if (d->size < -1 ||
	    (d->size == -1 && json_object_get(o, "size") != NULL))
		return -1;
	if ((s = json_string_value(json_object_get(o, "mediaType"))) != NULL)
		xstrlcpy(d->media_type, s, sizeof d->media_type);
	if ((plat = json_object_get(o, "platform")) != NULL) {
		if ((s = json_string_value(json_object_get(plat, "os"))) !=
		    NULL)
			xstrlcpy(d->os, s, sizeof d->os);
		if ((s = json_string_value(
			 json_object_get(plat, "architecture"))) != NULL)
			xstrlcpy(d->arch, s, sizeof d->arch);
		if ((s = json_string_value(json_object_get(plat, "variant"))) !=
		    NULL)
			xstrlcpy(d->variant, s, sizeof d->variant);
	}
	/* Non-distributable layers live elsewhere; registries don't serve them.
	 */
	urls = json_object_get(o, "urls");
	d->foreign = json_is_array(urls) && json_array_size(urls) > 0;
	return 0;
}

int
oci_manifest_parse(
    const void *buf, size_t len, struct oci_manifest *m, const char **why)
{
	json_t *root, *arr, *cfg;
	size_t i, n;
	int rc = -1;

	memset(m, 0, sizeof *m);
	*why = "manifest is not a JSON object";
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (root == NULL || !json_is_object(root))
		goto out;
	if (json_is_string(json_object_get(root, "mediaType")))
		xstrlcpy(m->media_type,
		    json_string_value(json_object_get(root, "mediaType")),
		    sizeof m->media_type);
	if ((arr = json_object_get(root, "manifests")) != NULL) {
		m->kind = OCI_KIND_INDEX;
	} else if ((arr = json_object_get(root, "layers")) != NULL) {
		m->kind = OCI_KIND_IMAGE;
		cfg = json_object_get(root, "config");
		*why = "image manifest without a valid config";
		if (!json_is_object(cfg) ||
		    oci_desc_parse(cfg, &m->config) == -1)
			goto out;
	} else {
		*why = "unsupported manifest (schema1 or unknown)";
		goto out;
	}
	*why = "manifest's descriptor list is not an array";
	if (!json_is_array(arr))
		goto out;
	n = json_array_size(arr);
	m->descs = xcalloc(n == 0 ? 1 : n, sizeof *m->descs);
	*why = "manifest has an invalid descriptor";
	for (i = 0; i < n; i++) {
		if (!json_is_object(json_array_get(arr, i)) ||
		    oci_desc_parse(json_array_get(arr, i), &m->descs[i]) == -1)
			goto out;
		m->ndescs++;
	}
	*why = NULL;
	rc = 0;
out:
	if (rc == -1)
		oci_manifest_release(m);
	json_decref(root);
	return rc;
}

void
oci_manifest_release(struct oci_manifest *m)
{
	free(m->descs);
	m->descs = NULL;
	m->ndescs = 0;
}
