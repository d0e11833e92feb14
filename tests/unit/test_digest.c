/*
 * tests/unit/test_digest.c: storage/digest.c: known SHA-256 vectors, the
 * strict "sha256:<64 lowercase hex>" parser, formatting round trips and
 * incremental hashing.
 */
#include <string.h>

#include "../../storage/storage.h"
#include "unit.h"

#define HEX_EMPTY \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define HEX_ABC \
	"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static void
test_vectors(void)
{
	char s[DIGEST_STRLEN];
	struct digest d;

	digest_buf("", 0, &d);
	digest_format(&d, s);
	CHECK_STR(s, "sha256:" HEX_EMPTY);
	digest_buf("abc", 3, &d);
	digest_format(&d, s);
	CHECK_STR(s, "sha256:" HEX_ABC);
}

static void
test_incremental(void)
{
	struct digest_ctx *ctx;
	struct digest a, b;

	ctx = digest_ctx_new();
	digest_ctx_update(ctx, "a", 1);
	digest_ctx_update(ctx, "", 0);
	digest_ctx_update(ctx, "bc", 2);
	digest_ctx_final(ctx, &a);
	digest_buf("abc", 3, &b);
	CHECK(digest_equal(&a, &b));

	/* reset after final starts over */
	digest_ctx_reset(ctx);
	digest_ctx_update(ctx, "junk", 4);
	digest_ctx_reset(ctx);
	digest_ctx_final(ctx, &a);
	digest_buf("", 0, &b);
	digest_ctx_free(ctx);
	digest_ctx_free(NULL);
	CHECK(digest_equal(&a, &b));
}

static void
test_parse_accepts(void)
{
	char s[DIGEST_STRLEN];
	struct digest d, e;

	CHECK(digest_parse(&d, "sha256:" HEX_ABC) == 0);
	digest_buf("abc", 3, &e);
	CHECK(digest_equal(&d, &e));
	digest_format(&d, s);
	CHECK_STR(s, "sha256:" HEX_ABC);
	CHECK(strlen(s) + 1 == DIGEST_STRLEN);

	/* parsen stops at len: what follows does not matter */
	CHECK(digest_parsen(&d, "sha256:" HEX_EMPTY "/junk",
		  strlen("sha256:" HEX_EMPTY)) == 0);
	digest_buf("", 0, &e);
	CHECK(digest_equal(&d, &e));
}

static void
test_parse_rejects(void)
{
	static const char *const bad[] = {
	    "",
	    "sha256:",
	    "sha256",
	    HEX_ABC,
	    "sha256:" HEX_ABC "0", /* 65 hex */
	    "sha256:" HEX_ABC " ", /* trailing junk */
	    "sha256:" HEX_ABC "\n",
	    "sha512:" HEX_ABC,
	    "SHA256:" HEX_ABC,
	    "sha256:"
	    "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
	    "sha256:"
	    "Ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	    " sha256:" HEX_ABC,
	};
	char h63[DIGEST_STRLEN], s[DIGEST_STRLEN];
	struct digest d, keep;
	size_t i;

	digest_buf("keep", 4, &keep);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		d = keep;
		if (digest_parse(&d, bad[i]) != -1) {
			fprintf(stderr, "accepted '%s'\n", bad[i]);
			CHECK(0);
		}
		CHECK(digest_equal(&d, &keep)); /* untouched on failure */
	}
	/* 63 hex */
	snprintf(h63, sizeof h63, "sha256:%.63s", HEX_ABC);
	CHECK(digest_parse(&d, h63) == -1);
	/* right length, one non-hex character at either end */
	snprintf(s, sizeof s, "sha256:%s", HEX_ABC);
	s[7] = 'g';
	CHECK(digest_parse(&d, s) == -1);
	snprintf(s, sizeof s, "sha256:%s", HEX_ABC);
	s[DIGEST_STRLEN - 2] = ':';
	CHECK(digest_parse(&d, s) == -1);
	/* parsen: one byte short, one byte long, embedded NUL */
	CHECK(digest_parsen(
		  &d, "sha256:" HEX_ABC, strlen("sha256:" HEX_ABC) - 1) == -1);
	CHECK(digest_parsen(&d, "sha256:" HEX_ABC "0",
		  strlen("sha256:" HEX_ABC "0")) == -1);
	CHECK(digest_parsen(&d, "sha256:\0" HEX_ABC, 71) == -1);
	CHECK(digest_parsen(&d, "", 0) == -1);
}

static void
test_roundtrip(void)
{
	char s[DIGEST_STRLEN];
	struct digest d, e;
	unsigned char buf[64];
	size_t i;

	for (i = 0; i < sizeof buf; i++) {
		buf[i] = (unsigned char)(i * 37);
		digest_buf(buf, i, &d);
		digest_format(&d, s);
		CHECK(digest_parse(&e, s) == 0);
		CHECK(digest_equal(&d, &e));
	}
	memset(d.b, 0xff, sizeof d.b);
	digest_format(&d, s);
	CHECK(digest_parse(&e, s) == 0 && digest_equal(&d, &e));
	memset(d.b, 0, sizeof d.b);
	digest_format(&d, s);
	CHECK(digest_parse(&e, s) == 0 && digest_equal(&d, &e));
}

static const struct unit_test tests[] = {
    {"vectors", test_vectors},
    {"incremental", test_incremental},
    {"parse_accepts", test_parse_accepts},
    {"parse_rejects", test_parse_rejects},
    {"roundtrip", test_roundtrip},
};

UNIT_MAIN("digest", tests)
