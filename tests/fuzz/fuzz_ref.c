/*
 * tests/fuzz/fuzz_ref.c: libFuzzer target for ref_parse() (registry/ref.c).
 * Besides not crashing, a parsed reference must format to a canonical
 * string that parses back to itself, with valid name and tag components.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../registry/registry.h"

#define FUZZ_MAX_LEN 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[FUZZ_MAX_LEN + 1], a[REF_STRLEN], b[REF_STRLEN];
	struct ref ref, again;
	const char *why;

	if (size > FUZZ_MAX_LEN)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (ref_parse(&ref, s, &why) == -1) {
		if (why == NULL || ref.host[0] != '\0')
			abort();
		return 0;
	}
	if (!ref_valid_name(ref.repo, strlen(ref.repo)) ||
	    (ref.tag[0] != '\0' && !ref_valid_tag(ref.tag, strlen(ref.tag))))
		abort();
	ref_format(&ref, a, sizeof(a));
	if (ref_parse(&again, a, &why) == -1)
		abort();
	ref_format(&again, b, sizeof(b));
	if (strcmp(a, b) != 0)
		abort();
	return 0;
}
