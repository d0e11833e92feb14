/*
 * storage/digest.c: sha256 digests: parsing and formatting "sha256:<hex>",
 * one-shot and incremental hashing through OpenSSL EVP.  OpenSSL's
 * 1-is-success convention stays in this file; its failures here can only
 * mean out of memory or a broken library, so they are fatal.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "../common/common.h"
#include "storage.h"

#define DIGEST_PREFIX "sha256:"
#define DIGEST_PREFIX_LEN (sizeof(DIGEST_PREFIX) - 1)

struct digest_ctx {
	EVP_MD_CTX *md;
};

static int
digest_hexval(char c)
{
	/* distribution-spec: the encoded part is lowercase hex only. */
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
digest_parsen(struct digest *d, const char *s, size_t len)
{
	struct digest tmp;
	size_t i;
	int hi, lo;

	if (len != DIGEST_PREFIX_LEN + 2 * DIGEST_LEN ||
	    memcmp(s, DIGEST_PREFIX, DIGEST_PREFIX_LEN) != 0)
		return -1;
	s += DIGEST_PREFIX_LEN;
	for (i = 0; i < DIGEST_LEN; i++) {
		if ((hi = digest_hexval(s[2 * i])) < 0 ||
		    (lo = digest_hexval(s[2 * i + 1])) < 0)
			return -1;
		tmp.b[i] = (unsigned char)(hi << 4 | lo);
	}
	*d = tmp;
	return 0;
}

int
digest_parse(struct digest *d, const char *s)
{
	return digest_parsen(d, s, strlen(s));
}

void
digest_format(const struct digest *d, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	memcpy(out, DIGEST_PREFIX, DIGEST_PREFIX_LEN);
	out += DIGEST_PREFIX_LEN;
	for (i = 0; i < DIGEST_LEN; i++) {
		*out++ = hex[d->b[i] >> 4];
		*out++ = hex[d->b[i] & 0xf];
	}
	*out = '\0';
}

int
digest_equal(const struct digest *a, const struct digest *b)
{
	return memcmp(a->b, b->b, DIGEST_LEN) == 0;
}

void
digest_buf(const void *buf, size_t len, struct digest *out)
{
	unsigned int n = 0;

	if (EVP_Digest(buf, len, out->b, &n, EVP_sha256(), NULL) != 1 ||
	    n != DIGEST_LEN)
		fatal("cannot compute sha256: openssl failure");
}

struct digest_ctx *
digest_ctx_new(void)
{
	struct digest_ctx *ctx;

	ctx = xcalloc(1, sizeof *ctx);
	if ((ctx->md = EVP_MD_CTX_new()) == NULL)
		fatal("out of memory allocating a sha256 context");
	digest_ctx_reset(ctx);
	return ctx;
}

void
digest_ctx_update(struct digest_ctx *ctx, const void *buf, size_t len)
{
	if (EVP_DigestUpdate(ctx->md, buf, len) != 1)
		fatal("cannot update sha256: openssl failure");
}

void
digest_ctx_final(struct digest_ctx *ctx, struct digest *out)
{
	unsigned int n = 0;

	if (EVP_DigestFinal_ex(ctx->md, out->b, &n) != 1 || n != DIGEST_LEN)
		fatal("cannot finish sha256: openssl failure");
}

void
digest_ctx_peek(const struct digest_ctx *ctx, struct digest *out)
{
	EVP_MD_CTX *copy;
	unsigned int n = 0;

	if ((copy = EVP_MD_CTX_new()) == NULL ||
	    EVP_MD_CTX_copy_ex(copy, ctx->md) != 1 ||
	    EVP_DigestFinal_ex(copy, out->b, &n) != 1 || n != DIGEST_LEN)
		fatal("cannot copy sha256 state: openssl failure");
	EVP_MD_CTX_free(copy);
}

void
digest_ctx_reset(struct digest_ctx *ctx)
{
	if (EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1)
		fatal("cannot start sha256: openssl failure");
}

void
digest_ctx_free(struct digest_ctx *ctx)
{
	if (ctx == NULL)
		return;
	EVP_MD_CTX_free(ctx->md);
	free(ctx);
}
