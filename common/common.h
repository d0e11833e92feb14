/*
 * common/common.h: the few things every layer shares: logging, allocation
 * wrappers that never return NULL, and time.  Nothing here knows about HTTP,
 * registries or LMDB.
 */
#ifndef COMMON_H
#define COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

/* log.c */
enum log_level {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR
};

void log_init(enum log_level, const char *progname);
int log_level_parse(const char *, enum log_level *);
enum log_level log_level_get(void);
void log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

/* xmalloc.c: out of memory is fatal, so these never return NULL. */
void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xreallocarray(void *, size_t, size_t);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);
int xasprintf(char **, const char *, ...) __attribute__((format(printf, 2, 3)));
/* strlcpy-alike: copies at most size-1 bytes, returns strlen(src) */
size_t xstrlcpy(char *, const char *, size_t);

/* version.c: the build's version ("git describe", or "unknown") */
const char *version_string(void);

/* clock.c */
int64_t clock_now_ms(void); /* CLOCK_MONOTONIC, milliseconds */
int64_t clock_wall_s(void); /* CLOCK_REALTIME, seconds since the epoch */

#endif
