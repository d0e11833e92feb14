/*
 * storage/blobstore.c: verified content under <dir>/blobs/sha256/ab/<hex>
 * and in-progress fills under <dir>/tmp/<random>.  A temp file becomes
 * visible only once its sha256 matches: fsync, rename, fsync of the
 * directory.  The open fd survives the rename, so readers keep the inode.
 */
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/common.h"
#include "storage.h"

/* Start writeback every so often so that the fsync at commit is short. */
/* Per-digest partial fills, kept across restarts for this long. */
#define BLOBSTORE_PARTIAL "partial-"
#define BLOBSTORE_PARTIAL_TTL (24 * 3600)

struct blobstore {
	char *dir;
	char *shadir; /* <dir>/blobs/sha256 */
	char *tmpdir; /* <dir>/tmp */
	int lockfd;   /* flock on <dir>/lock: one owner per store */
};

enum blobstore_tmp_state {
	BLOBSTORE_TMP_WRITING,	 /* accepting writes, path under tmp/ */
	BLOBSTORE_TMP_VERIFIED,	 /* digest matched; not yet in blobs/ */
	BLOBSTORE_TMP_COMMITTED, /* renamed into blobs/, fd still open */
	BLOBSTORE_TMP_DISCARDED, /* failed or gave up; temp path gone */
};

struct blobstore_tmp {
	struct blobstore *bs; /* borrowed; outlives the temp file */
	enum blobstore_tmp_state state;
	int fd;
	char *path;
	uint64_t size;
	struct digest_ctx *hash;
	int partial; /* per-digest, kept for resuming if not finished */
	struct digest digest; /* once verified */
	int complete;	      /* resumed file already hashes to its digest */
	int nospace;	      /* a write failed with ENOSPC or EDQUOT */
};

static int
blobstore_mkdir(const char *path, int *created)
{
	if (created != NULL)
		*created = 0;
	if (mkdir(path, 0755) == 0) {
		if (created != NULL)
			*created = 1;
		return 0;
	}
	if (errno == EEXIST)
		return 0;
	log_error("cannot create directory '%s': %s", path, strerror(errno));
	return -1;
}

static int
blobstore_fsync_dir(const char *path)
{
	int fd, rc = -1;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		log_error(
		    "cannot open directory '%s': %s", path, strerror(errno));
		return -1;
	}
	if (fsync(fd) == -1) {
		log_error(
		    "cannot fsync directory '%s': %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

/*
 * Removes what an earlier run left in tmp/, except recent per-digest
 * partial files, which the next fill of that digest resumes (never served
 * as cached: they are verified like any fill before they are stored).
 */
static int
blobstore_clean_tmp(struct blobstore *bs)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir(bs->tmpdir)) == NULL) {
		log_error("cannot open directory '%s': %s", bs->tmpdir,
		    strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (strncmp(de->d_name, BLOBSTORE_PARTIAL,
			sizeof BLOBSTORE_PARTIAL - 1) == 0 &&
		    fstatat(dirfd(d), de->d_name, &st, 0) == 0 &&
		    st.st_mtime > time(NULL) - BLOBSTORE_PARTIAL_TTL)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == -1) {
			log_warn("cannot remove leftover '%s/%s': %s",
			    bs->tmpdir, de->d_name, strerror(errno));
			continue;
		}
		n++;
	}
	closedir(d);
	if (n > 0)
		log_info(
		    "removed %d leftover temp files from '%s'", n, bs->tmpdir);
	return 0;
}

/*
 * One process owns a store at a time: the daemon, or an offline gc or
 * verify.  A second one would remove the first one's temp files.
 */
static int
blobstore_lock(struct blobstore *bs)
{
	char *path = NULL;
	int rc = -1;

	xasprintf(&path, "%s/lock", bs->dir);
	if ((bs->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) ==
	    -1) {
		log_error("cannot open '%s': %s", path, strerror(errno));
		goto out;
	}
	if (flock(bs->lockfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			log_error(
			    "store '%s' is in use by another ccprewarm (a running server: use --server)",
			    bs->dir);
		else
			log_error(
			    "cannot lock '%s': %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(path);
	return rc;
}

static struct blobstore *blobstore_open1(const char *dir, int clean);

struct blobstore *
blobstore_open(const char *dir)
{
	return blobstore_open1(dir, 1);
}

struct blobstore *
blobstore_open_keep_tmp(const char *dir)
{
	return blobstore_open1(dir, 0);
}

static struct blobstore *
blobstore_open1(const char *dir, int clean)
{
	struct blobstore *bs;
	char *blobsdir = NULL;
	int rc = -1;

	bs = xcalloc(1, sizeof *bs);
	bs->lockfd = -1;
	bs->dir = xstrdup(dir);
	xasprintf(&blobsdir, "%s/blobs", dir);
	xasprintf(&bs->shadir, "%s/sha256", blobsdir);
	xasprintf(&bs->tmpdir, "%s/tmp", dir);

	/* "/ab/<64 hex>" must fit in a path buffer for every digest. */
	if (strlen(bs->shadir) + 4 + 2 * DIGEST_LEN >= PATH_MAX) {
		log_error("data directory path too long: '%s'", dir);
		goto out;
	}
	if (blobstore_mkdir(dir, NULL) == -1 ||
	    blobstore_mkdir(blobsdir, NULL) == -1 ||
	    blobstore_mkdir(bs->shadir, NULL) == -1 ||
	    blobstore_mkdir(bs->tmpdir, NULL) == -1)
		goto out;
	if (blobstore_lock(bs) == -1)
		goto out;
	if (clean && blobstore_clean_tmp(bs) == -1)
		goto out;
	rc = 0;
out:
	free(blobsdir);
	if (rc == -1) {
		blobstore_free(bs);
		return NULL;
	}
	return bs;
}

void
blobstore_free(struct blobstore *bs)
{
	if (bs == NULL)
		return;
	if (bs->lockfd != -1)
		close(bs->lockfd);
	free(bs->tmpdir);
	free(bs->shadir);
	free(bs->dir);
	free(bs);
}

int
blobstore_path(
    struct blobstore *bs, const struct digest *d, char *buf, size_t len)
{
	char s[DIGEST_STRLEN];
	const char *hex = s + sizeof("sha256:") - 1;
	int n;

	digest_format(d, s);
	n = snprintf(buf, len, "%s/%.2s/%s", bs->shadir, hex, hex);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return 0;
}

int
blobstore_open_blob(struct blobstore *bs, const struct digest *d, off_t *size)
{
	char path[PATH_MAX];
	struct stat st;
	int fd, saved;

	if (blobstore_path(bs, d, path, sizeof path) == -1) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	*size = st.st_size;
	return fd;
}

int
blobstore_has(struct blobstore *bs, const struct digest *d)
{
	char path[PATH_MAX];
	struct stat st;

	if (blobstore_path(bs, d, path, sizeof path) == -1)
		return 0;
	return stat(path, &st) == 0;
}

int
blobstore_remove(struct blobstore *bs, const struct digest *d)
{
	char path[PATH_MAX];

	if (blobstore_path(bs, d, path, sizeof path) == -1) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return unlink(path);
}

struct blobstore_tmp *
blobstore_tmp_resume(struct blobstore *bs, const struct digest *d)
{
	struct blobstore_tmp *t;
	unsigned char buf[65536];
	char ds[DIGEST_STRLEN];
	ssize_t n;

	digest_format(d, ds);
	t = xcalloc(1, sizeof *t);
	t->bs = bs;
	t->state = BLOBSTORE_TMP_WRITING;
	t->partial = 1;
	xasprintf(&t->path, "%s/%s%s", bs->tmpdir, BLOBSTORE_PARTIAL,
	    ds + sizeof "sha256:" - 1);
	if ((t->fd = open(t->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) == -1) {
		int saved = errno;

		log_error("cannot create temp file '%s': %s", t->path,
		    strerror(errno));
		free(t->path);
		free(t);
		errno = saved; /* ENOSPC tells the caller what to answer */
		return NULL;
	}
	t->hash = digest_ctx_new();
	/* What an interrupted fill left: hash it and carry on from there. */
	while ((n = pread(t->fd, buf, sizeof buf, (off_t)t->size)) > 0) {
		digest_ctx_update(t->hash, buf, (size_t)n);
		t->size += (uint64_t)n;
	}
	if (n == -1 && blobstore_tmp_reset(t) == -1) {
		blobstore_tmp_free(t);
		return NULL;
	}
	if (t->size > 0) {
		struct digest have;

		/* stopped between the last byte and the rename? */
		digest_ctx_peek(t->hash, &have);
		t->complete = digest_equal(&have, d);
		log_info("resuming '%s' from byte %llu%s", ds,
		    (unsigned long long)t->size,
		    t->complete ? " (complete)" : "");
	}
	return t;
}

int
blobstore_tmp_complete(const struct blobstore_tmp *t)
{
	return t->complete;
}

struct blobstore_tmp *
blobstore_tmp_new(struct blobstore *bs)
{
	struct blobstore_tmp *t;

	t = xcalloc(1, sizeof *t);
	t->bs = bs;
	t->state = BLOBSTORE_TMP_WRITING;
	xasprintf(&t->path, "%s/fill-XXXXXX", bs->tmpdir);
	if ((t->fd = mkostemp(t->path, O_CLOEXEC)) == -1) {
		log_error("cannot create temp file in '%s': %s", bs->tmpdir,
		    strerror(errno));
		free(t->path);
		free(t);
		return NULL;
	}
	/* mkostemp creates 0600; stored blobs are world-readable. */
	if (fchmod(t->fd, 0644) == -1)
		log_warn("cannot chmod '%s': %s", t->path, strerror(errno));
	t->hash = digest_ctx_new();
	return t;
}

int
blobstore_tmp_write(struct blobstore_tmp *t, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	ssize_t n;

	if (t->state != BLOBSTORE_TMP_WRITING) {
		log_error(
		    "cannot write '%s': temp file already finished", t->path);
		return -1;
	}
	while (len > 0) {
		/* pwrite: a reader sharing the open file cannot move us. */
		n = pwrite(t->fd, p, len, (off_t)t->size);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == ENOSPC || errno == EDQUOT)
				t->nospace = 1;
			log_error(
			    "cannot write '%s': %s", t->path, strerror(errno));
			return -1;
		}
		digest_ctx_update(t->hash, p, (size_t)n);
		t->size += (uint64_t)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
blobstore_tmp_reset(struct blobstore_tmp *t)
{
	if (t->state != BLOBSTORE_TMP_WRITING) {
		log_error(
		    "cannot reset '%s': temp file already finished", t->path);
		return -1;
	}
	if (ftruncate(t->fd, 0) == -1) {
		log_error("cannot truncate '%s': %s", t->path, strerror(errno));
		return -1;
	}
	digest_ctx_reset(t->hash);
	t->size = 0;
	return 0;
}

void
blobstore_tmp_reserve(struct blobstore_tmp *t, uint64_t total)
{
	if (t->state != BLOBSTORE_TMP_WRITING || total <= t->size ||
	    total > (uint64_t)INT64_MAX)
		return;
	/*
	 * Extents allocated up front: the writes then fill allocated blocks
	 * instead of reserving each one (ext4 delayed allocation).  On
	 * failure (no space, no support) any blocks past the end are freed
	 * again; the writes then meet ENOSPC as without it.
	 */
	if (fallocate(t->fd, FALLOC_FL_KEEP_SIZE, (off_t)t->size,
		(off_t)(total - t->size)) == -1 &&
	    errno != EOPNOTSUPP)
		(void)!ftruncate(t->fd, (off_t)t->size);
}

int
blobstore_tmp_fd(const struct blobstore_tmp *t)
{
	return t->fd;
}

uint64_t
blobstore_tmp_size(const struct blobstore_tmp *t)
{
	return t->size;
}

static void
blobstore_tmp_discard(struct blobstore_tmp *t)
{
	if (unlink(t->path) == -1)
		log_warn("cannot remove '%s': %s", t->path, strerror(errno));
	t->state = BLOBSTORE_TMP_DISCARDED;
}

int
blobstore_tmp_verify(
    struct blobstore_tmp *t, const struct digest *want, struct digest *got)
{
	char ws[DIGEST_STRLEN], gs[DIGEST_STRLEN];

	memset(got, 0, sizeof *got);
	if (t->state != BLOBSTORE_TMP_WRITING) {
		log_error(
		    "cannot verify '%s': temp file already finished", t->path);
		return -1;
	}
	digest_ctx_final(t->hash, got);
	if (!digest_equal(got, want)) {
		digest_format(want, ws);
		digest_format(got, gs);
		/* debug: the caller logs it with the upstream and name */
		log_debug("digest mismatch for '%s': got '%s' after %llu bytes",
		    ws, gs, (unsigned long long)t->size);
		blobstore_tmp_discard(t);
		return -1;
	}
	t->digest = *want;
	t->state = BLOBSTORE_TMP_VERIFIED;
	return 0;
}

int
blobstore_tmp_persist(struct blobstore_tmp *t)
{
	char path[PATH_MAX], dir[PATH_MAX];
	int created;

	if (t->state != BLOBSTORE_TMP_VERIFIED) {
		log_error("cannot store '%s': not verified", t->path);
		return -1;
	}
	/* The path fits: blobstore_open checked the directory's length. */
	blobstore_path(t->bs, &t->digest, path, sizeof path);
	xstrlcpy(dir, path, sizeof dir);
	*strrchr(dir, '/') = '\0';

	if (fsync(t->fd) == -1) {
		log_error("cannot fsync '%s': %s", t->path, strerror(errno));
		goto fail;
	}
	if (blobstore_mkdir(dir, &created) == -1)
		goto fail;
	if (created && blobstore_fsync_dir(t->bs->shadir) == -1)
		goto fail;
	if (rename(t->path, path) == -1) {
		log_error("cannot rename '%s' to '%s': %s", t->path, path,
		    strerror(errno));
		goto fail;
	}
	/*
	 * From here the temp name is gone and may be reused by another fill:
	 * never unlink it again.  If the directory fsync fails the content is
	 * still verified, so it is left in place; the caller does not index it
	 * and a later fill of the same digest replaces it.
	 */
	t->state = BLOBSTORE_TMP_DISCARDED;
	if (blobstore_fsync_dir(dir) == -1)
		return -1;
	t->state = BLOBSTORE_TMP_COMMITTED;
	return 0;
fail:
	blobstore_tmp_discard(t);
	return -1;
}

int
blobstore_tmp_commit(
    struct blobstore_tmp *t, const struct digest *want, struct digest *got)
{
	if (blobstore_tmp_verify(t, want, got) == -1)
		return -1;
	if (blobstore_tmp_persist(t) == -1) {
		memset(got, 0, sizeof *got);
		return -1;
	}
	return 0;
}

void
blobstore_tmp_free(struct blobstore_tmp *t)
{
	if (t == NULL)
		return;
	/*
	 * An unfinished per-digest fill stays for the next one to resume,
	 * unless the disk is full: then its bytes are what is needed most.
	 */
	if ((t->state == BLOBSTORE_TMP_WRITING &&
		!(t->partial && t->size > 0 && !t->nospace)) ||
	    t->state == BLOBSTORE_TMP_VERIFIED)
		blobstore_tmp_discard(t);
	else if (t->state == BLOBSTORE_TMP_WRITING)
		/* a partial kept for resuming: no reserved blocks past it */
		(void)!ftruncate(t->fd, (off_t)t->size);
	close(t->fd);
	digest_ctx_free(t->hash);
	free(t->path);
	free(t);
}

int
blobstore_tmp_nospace(const struct blobstore_tmp *t)
{
	return t->nospace;
}

/* Store lifecycle ---------------------------------------------------------- */

int
blobstore_statfs(struct blobstore *bs, uint64_t *total, uint64_t *avail)
{
	struct statvfs sv;

	if (statvfs(bs->dir, &sv) == -1) {
		log_error("cannot statvfs '%s': %s", bs->dir, strerror(errno));
		return -1;
	}
	*total = (uint64_t)sv.f_blocks * sv.f_frsize;
	*avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
}

int
blobstore_partials(
    struct blobstore *bs, struct blobstore_partial **out, size_t *n)
{
	struct blobstore_partial *p = NULL;
	struct dirent *de;
	struct stat st;
	size_t len = sizeof BLOBSTORE_PARTIAL - 1;
	DIR *d;

	*out = NULL;
	*n = 0;
	if ((d = opendir(bs->tmpdir)) == NULL) {
		log_error("cannot open directory '%s': %s", bs->tmpdir,
		    strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		struct digest dg;
		char ds[DIGEST_STRLEN];

		if (strncmp(de->d_name, BLOBSTORE_PARTIAL, len) != 0 ||
		    strlen(de->d_name + len) != 2 * DIGEST_LEN)
			continue;
		memcpy(ds, "sha256:", 7);
		memcpy(ds + 7, de->d_name + len, 2 * DIGEST_LEN + 1);
		if (digest_parse(&dg, ds) == -1 ||
		    fstatat(dirfd(d), de->d_name, &st, 0) == -1)
			continue;
		p = xreallocarray(p, *n + 1, sizeof *p);
		p[*n].digest = dg;
		/* what it occupies: a sparse or short file counts less */
		p[*n].size = (uint64_t)st.st_blocks * 512;
		if ((uint64_t)st.st_size < p[*n].size)
			p[*n].size = (uint64_t)st.st_size;
		p[*n].mtime = st.st_mtime;
		(*n)++;
	}
	closedir(d);
	*out = p;
	return 0;
}

int
blobstore_partial_remove(struct blobstore *bs, const struct digest *d)
{
	char ds[DIGEST_STRLEN], *path = NULL;
	int rc;

	digest_format(d, ds);
	xasprintf(&path, "%s/%s%s", bs->tmpdir, BLOBSTORE_PARTIAL,
	    ds + sizeof "sha256:" - 1);
	rc = unlink(path);
	free(path);
	return rc;
}

int
blobstore_walk(struct blobstore *bs,
    void (*fn)(void *, const struct digest *, const char *), void *arg)
{
	char sub[PATH_MAX], path[PATH_MAX], ds[DIGEST_STRLEN];
	struct dirent *de, *fe;
	struct digest dg;
	DIR *top, *d;

	if ((top = opendir(bs->shadir)) == NULL) {
		log_error("cannot open directory '%s': %s", bs->shadir,
		    strerror(errno));
		return -1;
	}
	while ((de = readdir(top)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (snprintf(sub, sizeof sub, "%s/%s", bs->shadir,
			de->d_name) >= (int)sizeof sub)
			continue;
		if ((d = opendir(sub)) == NULL) {
			fn(arg, NULL, sub); /* a stray file at the top */
			continue;
		}
		while ((fe = readdir(d)) != NULL) {
			if (strcmp(fe->d_name, ".") == 0 ||
			    strcmp(fe->d_name, "..") == 0)
				continue;
			if (snprintf(path, sizeof path, "%s/%s", sub,
				fe->d_name) >= (int)sizeof path)
				continue;
			if (strlen(fe->d_name) == 2 * DIGEST_LEN &&
			    snprintf(ds, sizeof ds, "sha256:%s", fe->d_name) ==
				(int)sizeof ds - 1 &&
			    strncmp(fe->d_name, de->d_name, 2) == 0 &&
			    digest_parse(&dg, ds) == 0)
				fn(arg, &dg, path);
			else
				fn(arg, NULL, path);
		}
		closedir(d);
	}
	closedir(top);
	return 0;
}

int
blobstore_walk_tmp(
    struct blobstore *bs, void (*fn)(void *, const char *), void *arg)
{
	char path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;

	if ((d = opendir(bs->tmpdir)) == NULL) {
		log_error("cannot open directory '%s': %s", bs->tmpdir,
		    strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (strncmp(de->d_name, BLOBSTORE_PARTIAL,
			sizeof BLOBSTORE_PARTIAL - 1) == 0 &&
		    fstatat(dirfd(d), de->d_name, &st, 0) == 0 &&
		    st.st_mtime > time(NULL) - BLOBSTORE_PARTIAL_TTL)
			continue;
		if (snprintf(path, sizeof path, "%s/%s", bs->tmpdir,
			de->d_name) < (int)sizeof path)
			fn(arg, path);
	}
	closedir(d);
	return 0;
}

int
blobstore_quarantine(struct blobstore *bs, const char *path)
{
	char *qdir = NULL, *to = NULL;
	const char *base = strrchr(path, '/');
	int rc = -1;

	xasprintf(&qdir, "%s/quarantine", bs->dir);
	if (blobstore_mkdir(qdir, NULL) == -1)
		goto out;
	xasprintf(&to, "%s/%s.%lld", qdir, base != NULL ? base + 1 : path,
	    (long long)time(NULL));
	if (rename(path, to) == -1) {
		log_error(
		    "cannot move '%s' to '%s': %s", path, to, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(to);
	free(qdir);
	return rc;
}

int
blobstore_hash(struct blobstore *bs, const struct digest *d, struct digest *out)
{
	unsigned char buf[65536];
	char path[PATH_MAX];
	struct digest_ctx *h;
	ssize_t n;
	int fd;

	if (blobstore_path(bs, d, path, sizeof path) == -1 ||
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		log_error("cannot open '%s': %s", path, strerror(errno));
		return -1;
	}
	h = digest_ctx_new();
	while ((n = read(fd, buf, sizeof buf)) > 0)
		digest_ctx_update(h, buf, (size_t)n);
	if (n == -1)
		log_error("cannot read '%s': %s", path, strerror(errno));
	else
		digest_ctx_final(h, out);
	digest_ctx_free(h);
	close(fd);
	return n == -1 ? -1 : 0;
}
