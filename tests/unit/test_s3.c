/*
 * tests/unit/test_s3.c: registry/s3.c's pure parts: reading a
 * ListObjectsV2 answer (keys, sizes, LastModified, continuation token).
 * The requests themselves are tested against radosgw in
 * tests/integration/test_shared.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../common/common.h"
#include "../../registry/registry.h"
#include "unit.h"

struct test_s3_seen {
	char keys[4][128];
	int64_t sizes[4], mtimes[4];
	int n;
	int stop_at; /* return -1 at this key (-1: never) */
};

static int
test_s3_key_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
	struct test_s3_seen *s = arg;

	if (s->n == s->stop_at)
		return -1;
	if (s->n < 4) {
		xstrlcpy(s->keys[s->n], key, sizeof s->keys[0]);
		s->sizes[s->n] = size;
		s->mtimes[s->n] = mtime;
	}
	s->n++;
	return 0;
}

static const char test_s3_page[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<Name>b</Name><Prefix>ci/blobs/sha256/</Prefix><KeyCount>2</KeyCount>"
    "<MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
    "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
    "</NextContinuationToken>"
    "<Contents><Key>ci/blobs/sha256/aa</Key>"
    "<LastModified>2026-11-30T03:04:52.920Z</LastModified>"
    "<ETag>&quot;x&quot;</ETag><Size>1234</Size></Contents>"
    "<Contents><Key>ci/blobs/sha256/bb</Key>"
    "<LastModified>1970-01-01T00:01:00.000Z</LastModified>"
    "<Size>0</Size></Contents>"
    "</ListBucketResult>";

static void
test_list(void)
{
	struct test_s3_seen s;
	char token[256];

	memset(&s, 0, sizeof s);
	s.stop_at = -1;
	CHECK(s3_list_each(
		  test_s3_page, test_s3_key_cb, &s, token, sizeof token) == 0);
	CHECK(s.n == 2);
	CHECK_STR(s.keys[0], "ci/blobs/sha256/aa");
	CHECK(s.sizes[0] == 1234);
	CHECK(s.mtimes[0] == 1796007892); /* date -d 2026-11-30T03:04:52Z +%s */
	CHECK_STR(s.keys[1], "ci/blobs/sha256/bb");
	CHECK(s.sizes[1] == 0);
	CHECK(s.mtimes[1] == 60);
	CHECK_STR(token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
}

static void
test_list_last_page(void)
{
	struct test_s3_seen s;
	char token[256];

	memset(&s, 0, sizeof s);
	s.stop_at = -1;
	CHECK(s3_list_each("<ListBucketResult><IsTruncated>false</IsTruncated>"
			   "</ListBucketResult>",
		  test_s3_key_cb, &s, token, sizeof token) == 0);
	CHECK(s.n == 0);
	CHECK_STR(token, "");
	CHECK(s3_list_each(NULL, test_s3_key_cb, &s, token, sizeof token) == 0);
	CHECK_STR(token, "");
}

static void
test_list_stop(void)
{
	struct test_s3_seen s;
	char token[256];

	memset(&s, 0, sizeof s);
	s.stop_at = 1;
	CHECK(s3_list_each(
		  test_s3_page, test_s3_key_cb, &s, token, sizeof token) == -1);
	CHECK(s.n == 1);
}

static void
test_bad_time(void)
{
	struct test_s3_seen s;
	char token[256];

	memset(&s, 0, sizeof s);
	s.stop_at = -1;
	CHECK(s3_list_each("<Contents><Key>k</Key><LastModified>yesterday"
			   "</LastModified><Size>7</Size></Contents>",
		  test_s3_key_cb, &s, token, sizeof token) == 0);
	CHECK(s.n == 1);
	CHECK(s.mtimes[0] == 0);
	CHECK(s.sizes[0] == 7);
}

static const struct unit_test tests[] = {
    {"list", test_list},
    {"list_last_page", test_list_last_page},
    {"list_stop", test_list_stop},
    {"bad_time", test_bad_time},
};

UNIT_MAIN("s3", tests)
