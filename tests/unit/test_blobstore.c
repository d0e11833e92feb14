/*
 * tests/unit/test_blobstore.c: storage/blobstore.c: a fill becomes visible
 * only once its digest verifies, a mismatch leaves nothing behind, readers
 * of the temp inode see the committed content, leftovers go at open.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/common.h"
#include "../../storage/storage.h"
#include "unit.h"

static int
test_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
test_rmrf(const char *dir)
{
	nftw(dir, test_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *
test_mkdtemp(void)
{
	char *dir = xstrdup("/tmp/ccprewarm-test-XXXXXX");

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	return dir;
}

/* Number of entries in dir, or -1. */
static int
test_count(const char *dir)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* Reads the whole file at path into buf; its length, or -1. */
static ssize_t
test_slurp(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY)) == -1)
		return -1;
	n = read(fd, buf, len);
	close(fd);
	return n;
}

static void
test_commit(void)
{
	static const char body[] = "hello, content-addressed world\n";
	char *dir = test_mkdtemp(), path[PATH_MAX], want_path[PATH_MAX];
	char tmpdir[PATH_MAX], s[DIGEST_STRLEN], buf[128];
	struct blobstore_tmp *t = NULL;
	struct blobstore *bs;
	struct digest want, got;
	off_t size;
	int fd;

	digest_buf(body, sizeof body - 1, &want);
	bs = blobstore_open(dir);
	CHECK(bs != NULL);
	snprintf(tmpdir, sizeof tmpdir, "%s/tmp", dir);
	CHECK(!blobstore_has(bs, &want));

	t = blobstore_tmp_new(bs);
	CHECK(t != NULL);
	CHECK(test_count(tmpdir) == 1);
	CHECK(blobstore_tmp_write(t, body, 5) == 0);
	CHECK(blobstore_tmp_write(t, body + 5, 0) == 0);
	CHECK(blobstore_tmp_write(t, body + 5, sizeof body - 1 - 5) == 0);
	CHECK(blobstore_tmp_size(t) == sizeof body - 1);
	CHECK(!blobstore_has(bs, &want));
	CHECK(blobstore_tmp_commit(t, &want, &got) == 0);
	CHECK(digest_equal(&got, &want));
	/* nothing more once committed */
	CHECK(blobstore_tmp_write(t, "x", 1) == -1);
	blobstore_tmp_free(t);
	CHECK(test_count(tmpdir) == 0);

	digest_format(&want, s);
	snprintf(want_path, sizeof want_path, "%s/blobs/sha256/%.2s/%s", dir,
	    s + 7, s + 7);
	CHECK(blobstore_path(bs, &want, path, sizeof path) == 0);
	CHECK_STR(path, want_path);
	CHECK(blobstore_path(bs, &want, path, 10) == -1);
	CHECK(
	    test_slurp(want_path, buf, sizeof buf) == (ssize_t)sizeof body - 1);
	CHECK(memcmp(buf, body, sizeof body - 1) == 0);
	CHECK(blobstore_has(bs, &want));

	fd = blobstore_open_blob(bs, &want, &size);
	CHECK(fd >= 0);
	CHECK(size == (off_t)sizeof body - 1);
	close(fd);

	CHECK(blobstore_remove(bs, &want) == 0);
	CHECK(!blobstore_has(bs, &want));
	CHECK(blobstore_open_blob(bs, &want, &size) == -1 && errno == ENOENT);
	CHECK(blobstore_remove(bs, &want) == -1 && errno == ENOENT);

	blobstore_free(bs);
	test_rmrf(dir);
	free(dir);
}

static void
test_mismatch(void)
{
	char *dir = test_mkdtemp(), path[PATH_MAX];
	struct blobstore_tmp *t;
	struct blobstore *bs;
	struct digest want, got, real;

	digest_buf("expected", 8, &want);
	digest_buf("arrived", 7, &real);
	bs = blobstore_open(dir);
	CHECK(bs != NULL);
	t = blobstore_tmp_new(bs);
	CHECK(t != NULL);
	CHECK(blobstore_tmp_write(t, "arrived", 7) == 0);
	CHECK(blobstore_tmp_commit(t, &want, &got) == -1);
	CHECK(digest_equal(&got, &real));
	CHECK(!blobstore_has(bs, &want));
	CHECK(!blobstore_has(bs, &real));
	blobstore_tmp_free(t);

	snprintf(path, sizeof path, "%s/tmp", dir);
	CHECK(test_count(path) == 0);
	snprintf(path, sizeof path, "%s/blobs/sha256", dir);
	CHECK(test_count(path) == 0);

	/* freed without commit: the temp file goes too */
	t = blobstore_tmp_new(bs);
	CHECK(t != NULL);
	CHECK(blobstore_tmp_write(t, "partial", 7) == 0);
	blobstore_tmp_free(t);
	blobstore_tmp_free(NULL);
	snprintf(path, sizeof path, "%s/tmp", dir);
	CHECK(test_count(path) == 0);

	blobstore_free(bs);
	test_rmrf(dir);
	free(dir);
}

static void
test_reset(void)
{
	char *dir = test_mkdtemp(), path[PATH_MAX], buf[32];
	struct blobstore_tmp *t;
	struct blobstore *bs;
	struct digest want, got;

	digest_buf("second", 6, &want);
	bs = blobstore_open(dir);
	CHECK(bs != NULL);
	t = blobstore_tmp_new(bs);
	CHECK(t != NULL);
	CHECK(blobstore_tmp_write(t, "first try, longer", 17) == 0);
	CHECK(blobstore_tmp_reset(t) == 0);
	CHECK(blobstore_tmp_size(t) == 0);
	CHECK(blobstore_tmp_write(t, "second", 6) == 0);
	CHECK(blobstore_tmp_commit(t, &want, &got) == 0);
	blobstore_tmp_free(t);
	CHECK(blobstore_path(bs, &want, path, sizeof path) == 0);
	CHECK(test_slurp(path, buf, sizeof buf) == 6);
	CHECK(memcmp(buf, "second", 6) == 0);

	blobstore_free(bs);
	test_rmrf(dir);
	free(dir);
}

/* A reader that opened the temp inode keeps reading it after the rename. */
static void
test_reader(void)
{
	char *dir = test_mkdtemp(), proc[64], buf[32];
	struct blobstore_tmp *t;
	struct blobstore *bs;
	struct digest want, got;
	struct stat a, b;
	char path[PATH_MAX];
	int rfd;

	digest_buf("0123456789", 10, &want);
	bs = blobstore_open(dir);
	CHECK(bs != NULL);
	t = blobstore_tmp_new(bs);
	CHECK(t != NULL);
	CHECK(blobstore_tmp_write(t, "01234", 5) == 0);

	snprintf(proc, sizeof proc, "/proc/self/fd/%d", blobstore_tmp_fd(t));
	rfd = open(proc, O_RDONLY | O_CLOEXEC);
	CHECK(rfd >= 0);
	CHECK(pread(rfd, buf, sizeof buf, 0) == 5);

	CHECK(blobstore_tmp_write(t, "56789", 5) == 0);
	CHECK(blobstore_tmp_commit(t, &want, &got) == 0);
	blobstore_tmp_free(t);
	CHECK(pread(rfd, buf, sizeof buf, 0) == 10);
	CHECK(memcmp(buf, "0123456789", 10) == 0);

	/* the reader's inode is the stored file */
	CHECK(blobstore_path(bs, &want, path, sizeof path) == 0);
	CHECK(fstat(rfd, &a) == 0 && stat(path, &b) == 0);
	CHECK(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
	CHECK((b.st_mode & 0777) == 0644);
	close(rfd);

	blobstore_free(bs);
	test_rmrf(dir);
	free(dir);
}

/* Past the 8 MiB writeback threshold, in uneven pieces. */
static void
test_large(void)
{
	char *dir = test_mkdtemp();
	struct blobstore_tmp *t;
	struct blobstore *bs;
	struct digest want, got;
	size_t len = (9u << 20) + 123, off, n;
	unsigned char *data;
	off_t size;
	int fd;

	data = xmalloc(len);
	for (off = 0; off < len; off++)
		data[off] = (unsigned char)(off * 7 + (off >> 13));
	digest_buf(data, len, &want);
	bs = blobstore_open(dir);
	CHECK(bs != NULL);
	t = blobstore_tmp_new(bs);
	CHECK(t != NULL);
	for (off = 0; off < len; off += n) {
		n = len - off < 777777 ? len - off : 777777;
		CHECK(blobstore_tmp_write(t, data + off, n) == 0);
	}
	CHECK(blobstore_tmp_commit(t, &want, &got) == 0);
	blobstore_tmp_free(t);
	fd = blobstore_open_blob(bs, &want, &size);
	CHECK(fd >= 0 && size == (off_t)len);
	close(fd);

	free(data);
	blobstore_free(bs);
	test_rmrf(dir);
	free(dir);
}

static void
test_leftovers(void)
{
	char *dir = test_mkdtemp(), path[PATH_MAX];
	struct blobstore *bs;
	FILE *f;

	bs = blobstore_open(dir);
	CHECK(bs != NULL);
	blobstore_free(bs);

	snprintf(path, sizeof path, "%s/tmp/fill-stale1", dir);
	CHECK((f = fopen(path, "w")) != NULL);
	fputs("partial", f);
	fclose(f);
	snprintf(path, sizeof path, "%s/tmp/fill-stale2", dir);
	CHECK((f = fopen(path, "w")) != NULL);
	fclose(f);

	log_init(LOG_LEVEL_WARN, NULL); /* quiet the "removed" line */
	bs = blobstore_open(dir);
	log_init(LOG_LEVEL_INFO, NULL);
	CHECK(bs != NULL);
	snprintf(path, sizeof path, "%s/tmp", dir);
	CHECK(test_count(path) == 0);
	blobstore_free(bs);

	/* an unusable data directory fails with a reason, not a crash */
	CHECK(blobstore_open("/nonexistent/ccprewarm/x") == NULL);

	test_rmrf(dir);
	free(dir);
}

static const struct unit_test tests[] = {
    {"commit", test_commit},
    {"mismatch", test_mismatch},
    {"reset", test_reset},
    {"reader", test_reader},
    {"large", test_large},
    {"leftovers", test_leftovers},
};

UNIT_MAIN("blobstore", tests)
