/*
 * common/log.c: operator-facing log lines on stderr, one line each, lower
 * case, problem first.  The level and program name are the process's only
 * logging state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

static struct {
	enum log_level level;
	const char *progname;
} log_state = {LOG_LEVEL_INFO, "ccprewarm"};

static const char *const log_names[] = {"debug", "info", "warn", "error"};

void
log_init(enum log_level level, const char *progname)
{
	log_state.level = level;
	if (progname != NULL)
		log_state.progname = progname;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < nitems(log_names); i++) {
		if (strcmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

enum log_level
log_level_get(void)
{
	return log_state.level;
}

static void
log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	if (level < log_state.level)
		return;
	n = snprintf(line, sizeof line, "%s: %s: ", log_state.progname,
	    log_names[level]);
	if (n < 0 || (size_t)n >= sizeof line)
		return;
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	fprintf(stderr, "%s\n", line);
}

#define LOG_FN(name, level) \
	void name(const char *fmt, ...) \
	{ \
		va_list ap; \
		va_start(ap, fmt); \
		log_vwrite(level, fmt, ap); \
		va_end(ap); \
	}

LOG_FN(log_debug, LOG_LEVEL_DEBUG)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_warn, LOG_LEVEL_WARN)
LOG_FN(log_error, LOG_LEVEL_ERROR)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}
