/*
 * tests/fuzz/fuzz_range.c: libFuzzer target for range_parse()
 * (registry/range.c).  Input: 8 bytes of size (little-endian), then the
 * Range header value.  A partial answer must be a non-empty span inside
 * the representation; anything else leaves the whole of it.
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
	char h[FUZZ_MAX_LEN + 1];
	uint64_t len = 0, start, end;
	enum range_result rr;
	size_t i;

	if (size < 8 || size > FUZZ_MAX_LEN)
		return 0;
	for (i = 0; i < 8; i++)
		len |= (uint64_t)data[i] << (8 * i);
	/* Small sizes are where the edges are; keep some of them. */
	if (data[0] & 1)
		len %= 4096;
	memcpy(h, data + 8, size - 8);
	h[size - 8] = '\0';
	rr = range_parse(h, len, &start, &end);
	switch (rr) {
	case RANGE_PARTIAL:
		if (start >= end || end > len)
			abort();
		break;
	case RANGE_WHOLE:
	case RANGE_UNSATISFIABLE:
		if (start != 0 || end != len)
			abort();
		break;
	default:
		abort();
	}
	/* Only "bytes=" (any case) can give anything but the whole. */
	if (rr != RANGE_WHOLE && strcasestr(h, "bytes=") == NULL)
		abort();
	return 0;
}
