/*
 * registry/oci.c: the distribution spec's vocabulary: error codes and their
 * statuses (a table), media types, and the only reader of manifest JSON.
 * json_t never leaves this file.
 */
#include <string.h>

#include <jansson.h>

#include "../common/common.h"
#include "registry.h"

static const struct oci_err_def {
	const char *code;
	int status;
	const char *message;
} oci_errs[] = {
	[OCI_ERR_BLOB_UNKNOWN] = { "BLOB_UNKNOWN", 404, "blob unknown to registry" },
	[OCI_ERR_DIGEST_INVALID] = { "DIGEST_INVALID", 400, "provided digest did not match uploaded content" },
	[OCI_ERR_MANIFEST_INVALID] = { "MANIFEST_INVALID", 400, "manifest invalid" },
	[OCI_ERR_MANIFEST_UNKNOWN] = { "MANIFEST_UNKNOWN", 404, "manifest unknown" },
	[OCI_ERR_NAME_INVALID] = { "NAME_INVALID", 400, "invalid repository name" },
	[OCI_ERR_NAME_UNKNOWN] = { "NAME_UNKNOWN", 404, "repository name not known to registry" },
	[OCI_ERR_TAG_INVALID] = { "TAG_INVALID", 400, "manifest tag did not match URI" },
	[OCI_ERR_UNAUTHORIZED] = { "UNAUTHORIZED", 401, "authentication required" },
	[OCI_ERR_DENIED] = { "DENIED", 403, "requested access to the resource is denied" },
	[OCI_ERR_UNSUPPORTED] = { "UNSUPPORTED", 405, "the operation is unsupported" },
	[OCI_ERR_TOOMANYREQUESTS] = { "TOOMANYREQUESTS", 429, "too many requests" },
	/* Not in the spec's table; the spec only says 416. */
	[OCI_ERR_RANGE_INVALID] = { "RANGE_INVALID", 416, "requested range not satisfiable" },
	[OCI_ERR_UNAVAILABLE] = { "UNAVAILABLE", 503, "upstream registry unavailable" },
	[OCI_ERR_NOT_FOUND] = { "NOT_FOUND", 404, "not found" },
	[OCI_ERR_INTERNAL] = { "UNKNOWN", 500, "unknown error" },
};

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
