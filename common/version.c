/*
 * common/version.c: the build's version string.  make compiles
 * CCPREWARM_VERSION into this object alone and rebuilds it whenever the
 * string changes, so --version, the User-Agent and build_info never go
 * stale after a partial rebuild.
 */
#include "common.h"

#ifndef CCPREWARM_VERSION
#define CCPREWARM_VERSION "unknown"
#endif

const char *
version_string(void)
{
	return CCPREWARM_VERSION;
}
