/*
 * registry/alog.c: the access log's buffer, as nginx's `buffer=`/`flush=`.
 * Whole lines are appended to one buffer under a lock held only for the
 * copy; it goes out with one write(2) when full, on a short timer and at
 * exit.  Safe to append from several event loops (threads).  A crash loses
 * at most what the buffer held (one buffer, one flush interval).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/common.h"
#include "internal.h"

struct alog {
	int fd;
	int own_fd;
	/* not a regular file (a pipe, a terminal, a socket): writes go in
	 * pieces of whole lines of at most PIPE_BUF, which the kernel never
	 * interleaves with another writer's */
	int small_writes;
	pthread_mutex_t mu; /* buf, len: held only to append or swap */
	char *buf;
	size_t len, cap;
	pthread_mutex_t wmu; /* spare and the fd: one writer, in order */
	char *spare;
	struct event *timer;
	uint64_t lost; /* bytes a failed write dropped */
};

/* Writes all of [p, p+n), whole lines at a time; under wmu. */
static void
alog_write(struct alog *a, const char *p, size_t n)
{
	size_t piece;
	ssize_t w;

	while (n > 0) {
		piece = n;
		if (a->small_writes && piece > PIPE_BUF) {
			const char *nl = memrchr(p, '\n', PIPE_BUF);

			/* a single line longer than PIPE_BUF: that line */
			if (nl == NULL)
				nl = memchr(p + PIPE_BUF, '\n', n - PIPE_BUF);
			piece = nl != NULL ? (size_t)(nl - p) + 1 : n;
		}
		w = write(a->fd, p, piece);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (a->lost == 0)
				log_warn("cannot write the access log: %s",
				    w == -1 ? strerror(errno) : "short write");
			a->lost += n;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

void
alog_flush(struct alog *a)
{
	char *out;
	size_t n;

	if (a == NULL)
		return;
	pthread_mutex_lock(&a->wmu);
	pthread_mutex_lock(&a->mu);
	out = a->buf;
	n = a->len;
	a->buf = a->spare;
	a->len = 0;
	pthread_mutex_unlock(&a->mu);
	a->spare = out;
	if (n > 0)
		alog_write(a, out, n);
	pthread_mutex_unlock(&a->wmu);
}

void
alog_line(struct alog *a, const char *line, size_t n)
{
	for (;;) {
		pthread_mutex_lock(&a->mu);
		if (a->len + n <= a->cap) {
			memcpy(a->buf + a->len, line, n);
			a->len += n;
			pthread_mutex_unlock(&a->mu);
			return;
		}
		pthread_mutex_unlock(&a->mu);
		alog_flush(a);
		if (n > a->cap)
			break;
	}
	/* larger than the buffer (or unbuffered): on its own, in order */
	pthread_mutex_lock(&a->wmu);
	alog_write(a, line, n);
	pthread_mutex_unlock(&a->wmu);
}

static void
alog_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	alog_flush(arg);
}

struct alog *
alog_open(struct event_base *base, const char *path, size_t buffer_bytes,
    int64_t flush_ms)
{
	struct alog *a;
	struct stat st;
	int fd;

	if (path == NULL || path[0] == '\0')
		return NULL;
	if (strcmp(path, "-") == 0)
		fd = STDERR_FILENO;
	else if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
		      0666)) == -1) {
		log_error(
		    "cannot open access log '%s': %s", path, strerror(errno));
		return NULL;
	}
	a = xcalloc(1, sizeof *a);
	a->fd = fd;
	a->own_fd = fd != STDERR_FILENO;
	a->small_writes = fstat(fd, &st) == -1 || !S_ISREG(st.st_mode);
	pthread_mutex_init(&a->mu, NULL);
	pthread_mutex_init(&a->wmu, NULL);
	a->cap = buffer_bytes;
	if (a->cap > 0) {
		a->buf = xmalloc(a->cap);
		a->spare = xmalloc(a->cap);
	}
	if (a->cap > 0 && flush_ms > 0) {
		a->timer = event_new(base, -1, EV_PERSIST, alog_timer_cb, a);
		if (a->timer == NULL)
			fatal("out of memory creating the access log timer");
		event_add(a->timer,
		    &(struct timeval){
			flush_ms / 1000, (flush_ms % 1000) * 1000});
	}
	return a;
}

void
alog_close(struct alog *a)
{
	if (a == NULL)
		return;
	if (a->timer != NULL)
		event_free(a->timer);
	alog_flush(a);
	if (a->own_fd)
		close(a->fd);
	pthread_mutex_destroy(&a->mu);
	pthread_mutex_destroy(&a->wmu);
	free(a->buf);
	free(a->spare);
	free(a);
}
