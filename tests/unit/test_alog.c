/*
 * tests/unit/test_alog.c: registry/alog.c.  Four threads (as several event
 * loops would) append numbered lines of varying length to one log through
 * a small buffer; after alog_close() the file holds every line exactly
 * once, each whole.  The same through a pipe (pieces of whole lines of at
 * most PIPE_BUF), and unbuffered.
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/common.h"
#include "../../registry/registry.h"
#include "unit.h"

#define TEST_ALOG_THREADS 4
#define TEST_ALOG_LINES 3000

struct test_alog_thread {
	struct alog *a;
	int id;
};

/* "t<id> n<k> xxxx...x\n": the length varies with k, up to ~5 KiB. */
static size_t
test_alog_format(char *buf, size_t len, int id, int k)
{
	int pad = (k * 37) % (k % 100 == 0 ? 5000 : 300);
	int n = snprintf(buf, len, "t%d n%d ", id, k);

	memset(buf + n, 'x', (size_t)pad);
	buf[n + pad] = '\n';
	return (size_t)n + (size_t)pad + 1;
}

static void *
test_alog_worker(void *arg)
{
	struct test_alog_thread *t = arg;
	char line[6000];
	size_t n;
	int k;

	for (k = 0; k < TEST_ALOG_LINES; k++) {
		n = test_alog_format(line, sizeof line, t->id, k);
		alog_line(t->a, line, n);
	}
	return NULL;
}

/* Every line of path whole and present once; 0 or -1. */
static int
test_alog_verify(const char *path)
{
	static unsigned char seen[TEST_ALOG_THREADS][TEST_ALOG_LINES];
	char want[6000], *line = NULL;
	size_t cap = 0, n;
	ssize_t got;
	int id, k, rc = 0;
	FILE *f;

	memset(seen, 0, sizeof seen);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while ((got = getline(&line, &cap, f)) != -1) {
		if (sscanf(line, "t%d n%d ", &id, &k) != 2 || id < 0 ||
		    id >= TEST_ALOG_THREADS || k < 0 || k >= TEST_ALOG_LINES) {
			rc = -1;
			break;
		}
		n = test_alog_format(want, sizeof want, id, k);
		if ((size_t)got != n || memcmp(line, want, n) != 0 ||
		    seen[id][k]++) {
			rc = -1;
			break;
		}
	}
	free(line);
	fclose(f);
	for (id = 0; rc == 0 && id < TEST_ALOG_THREADS; id++)
		for (k = 0; k < TEST_ALOG_LINES; k++)
			if (!seen[id][k])
				rc = -1;
	return rc;
}

static int
test_alog_run(const char *path, size_t buffer)
{
	struct test_alog_thread t[TEST_ALOG_THREADS];
	pthread_t th[TEST_ALOG_THREADS];
	struct alog *a;
	int i;

	if ((a = alog_open(NULL, path, buffer, 0)) == NULL)
		return -1;
	for (i = 0; i < TEST_ALOG_THREADS; i++) {
		t[i].a = a;
		t[i].id = i;
		if (pthread_create(&th[i], NULL, test_alog_worker, &t[i]) != 0)
			return -1;
	}
	for (i = 0; i < TEST_ALOG_THREADS; i++)
		pthread_join(th[i], NULL);
	alog_close(a);
	return 0;
}

static void
test_alog_file(void)
{
	char path[] = "/tmp/test_alog.XXXXXX";
	int fd = mkstemp(path);

	CHECK(fd != -1);
	close(fd);
	CHECK(test_alog_run(path, 16 * 1024) == 0);
	CHECK(test_alog_verify(path) == 0);
	unlink(path);
}

static void
test_alog_unbuffered(void)
{
	char path[] = "/tmp/test_alog.XXXXXX";
	int fd = mkstemp(path);

	CHECK(fd != -1);
	close(fd);
	CHECK(test_alog_run(path, 0) == 0);
	CHECK(test_alog_verify(path) == 0);
	unlink(path);
}

/* A FIFO read by a thread into a file: the pipe path of alog_write. */
struct test_alog_reader {
	const char *fifo, *out;
};

static void *
test_alog_reader(void *arg)
{
	struct test_alog_reader *r = arg;
	char buf[65536];
	ssize_t n;
	int in, out;

	in = open(r->fifo, O_RDONLY);
	out = open(r->out, O_WRONLY | O_TRUNC);
	while (in != -1 && out != -1 && (n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n)
			break;
	if (in != -1)
		close(in);
	if (out != -1)
		close(out);
	return NULL;
}

static void
test_alog_pipe(void)
{
	char dir[] = "/tmp/test_alog.XXXXXX";
	char fifo[64], out[64];
	struct test_alog_reader r;
	pthread_t th;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	snprintf(out, sizeof out, "%s/out", dir);
	CHECK(mkfifo(fifo, 0600) == 0);
	CHECK(close(open(out, O_WRONLY | O_CREAT, 0600)) == 0);
	r.fifo = fifo;
	r.out = out;
	CHECK(pthread_create(&th, NULL, test_alog_reader, &r) == 0);
	CHECK(test_alog_run(fifo, 64 * 1024) == 0);
	pthread_join(th, NULL);
	CHECK(test_alog_verify(out) == 0);
	unlink(fifo);
	unlink(out);
	rmdir(dir);
}

static const struct unit_test tests[] = {
    {"file", test_alog_file},
    {"unbuffered", test_alog_unbuffered},
    {"pipe", test_alog_pipe},
};

UNIT_MAIN("alog", tests)
