/*
 * cmd/human.c: numbers as people read them, for the CLI's text output.
 */
#include <inttypes.h>
#include <stdio.h>

#include "../common/common.h"
#include "cmd.h"

/* Binary units, one decimal: "512 B", "1.5 MiB", "3.0 GiB". */
const char *
human_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < nitems(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}
