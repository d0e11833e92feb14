/*
 * tests/fuzz/fuzz_oci.c: libFuzzer target for manifest and index decoding,
 * oci_manifest_parse() and oci_manifest_media_type() (registry/oci.c):
 * the bytes an upstream sends for a manifest.  A parsed manifest must have
 * a kind, every descriptor a parsed digest and a size that is either
 * absent (-1) or a real byte count, and strings that fit their buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../registry/registry.h"

#define FUZZ_MAX_LEN (256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_oci_desc(const struct oci_desc *d)
{
	char hex[DIGEST_STRLEN];

	if (d->size < -1)
		abort();
	if (strnlen(d->media_type, sizeof(d->media_type)) ==
		sizeof(d->media_type) ||
	    strnlen(d->os, sizeof(d->os)) == sizeof(d->os) ||
	    strnlen(d->arch, sizeof(d->arch)) == sizeof(d->arch) ||
	    strnlen(d->variant, sizeof(d->variant)) == sizeof(d->variant))
		abort();
	digest_format(&d->digest, hex);
	if (strncmp(hex, "sha256:", 7) != 0 || strlen(hex) != 71)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oci_manifest m;
	char mt[OCI_MEDIA_TYPE_MAX];
	const char *why;
	size_t i;

	if (size > FUZZ_MAX_LEN)
		return 0;
	if (oci_manifest_media_type(data, size, mt, sizeof mt) == 0 &&
	    strnlen(mt, sizeof mt) == sizeof mt)
		abort();
	if (oci_manifest_parse(data, size, &m, &why) == -1) {
		if (why == NULL || m.descs != NULL || m.ndescs != 0)
			abort();
		return 0;
	}
	if (why != NULL ||
	    (m.kind != OCI_KIND_INDEX && m.kind != OCI_KIND_IMAGE))
		abort();
	if (m.kind == OCI_KIND_IMAGE)
		fuzz_oci_desc(&m.config);
	for (i = 0; i < m.ndescs; i++)
		fuzz_oci_desc(&m.descs[i]);
	oci_manifest_release(&m);
	return 0;
}
